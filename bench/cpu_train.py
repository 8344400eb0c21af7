#!/usr/bin/env python3
"""Side-by-side CPU training benchmark: frugal vs the PyTorch reference.

    python bench/cpu_train.py --frugal target/release/frugal \
        [--sizes 1m,5m,30m] [--repeats 3] [--threads 1,2] [--out results.json]

For every size and thread count it alternates the two implementations
(frugal, torch, frugal, torch, ...) so that slow drifts of the machine (the two
vCPUs here are sometimes worth about one) hit both alike, records each
process's peak RSS and CPU time, and prints a markdown table of median
tokens/s.  Both programs take the same flags and print one JSON line
(bench/torch_llama.py and `frugal bench train`).

Peak RSS comes from `/usr/bin/time -v` ("Maximum resident set size") when it
exists, else from os.wait4's rusage of that one child (not the
RUSAGE_CHILDREN deltas, which are a maximum over all children so far).

This script uses only the standard library; the torch runs use --python
(default: the repo's .venv built by scripts/setup-python-ref.sh).  Without
--frugal only the torch side runs.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_SCRIPT = os.path.join(REPO, "bench", "torch_llama.py")

# Shapes with an 8192-token vocabulary (a small BPE trained on the project's
# text).  Parameter counts count the tied embedding once.  Steps are chosen so
# that the default set (3 sizes x 2 thread counts x 3 repeats x 2 programs)
# takes about 10 minutes on the 2-vCPU machine when it is otherwise idle.
SIZES = {
    #        vocab  d    L  heads ffn   warmup steps
    "1m":  dict(vocab=8192, d_model=96, layers=2, heads=3, ffn=256, warmup=3, steps=10),
    "5m":  dict(vocab=8192, d_model=192, layers=8, heads=6, ffn=512, warmup=2, steps=5),
    "30m": dict(vocab=8192, d_model=512, layers=8, heads=8, ffn=1536, warmup=1, steps=3),
}
BATCH, SEQ = 8, 256


def param_count(vocab, d_model, layers, heads, ffn, kv_heads=None, **_):
    kv = (kv_heads or heads) * (d_model // heads)
    per_layer = 2 * d_model * d_model + 2 * d_model * kv + 3 * d_model * ffn + 2 * d_model
    return vocab * d_model + layers * per_layer + d_model


def default_python():
    venv_py = os.path.join(REPO, ".venv", "bin", "python")
    return venv_py if os.path.exists(venv_py) else sys.executable


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frugal", default=None, help="path to the frugal binary (omit: torch only)")
    p.add_argument("--python", default=default_python(), help="interpreter for bench/torch_llama.py")
    p.add_argument("--sizes", default="1m,5m,30m", help="comma list of " + ",".join(SIZES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", default="1,2", help="comma list of thread counts")
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--seq", type=int, default=SEQ)
    p.add_argument("--steps", type=int, default=None, help="override the timed steps of every size")
    p.add_argument("--warmup", type=int, default=None, help="override the warmup steps of every size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--out", default=None, help="write every run and the summary as JSON")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    a = p.parse_args(argv)
    a.sizes = [s.strip().lower() for s in a.sizes.split(",") if s.strip()]
    for s in a.sizes:
        if s not in SIZES:
            p.error(f"unknown size {s!r}; known: {', '.join(SIZES)}")
    a.threads = [int(t) for t in a.threads.split(",") if t.strip()]
    if a.frugal is not None:
        a.frugal = os.path.abspath(a.frugal)
        if not a.dry_run and not os.access(a.frugal, os.X_OK):
            p.error(f"--frugal {a.frugal} is not an executable file")
    return a


def bench_flags(cfg, threads, args):
    f = [
        "--vocab", cfg["vocab"], "--d-model", cfg["d_model"], "--layers", cfg["layers"],
        "--heads", cfg["heads"], "--ffn", cfg["ffn"],
        "--batch", args.batch, "--seq", args.seq,
        "--steps", args.steps if args.steps is not None else cfg["steps"],
        "--warmup", args.warmup if args.warmup is not None else cfg["warmup"],
        "--threads", threads, "--seed", args.seed,
    ]
    if cfg.get("kv_heads"):
        f += ["--kv-heads", cfg["kv_heads"]]
    return [str(x) for x in f]


def command(impl, cfg, threads, args):
    if impl == "frugal":
        return [args.frugal, "bench", "train"] + bench_flags(cfg, threads, args)
    return [args.python, TORCH_SCRIPT] + bench_flags(cfg, threads, args)


def child_env(threads):
    env = dict(os.environ)
    # Same thread settings for both programs; PASSIVE keeps idle OpenMP
    # threads from spinning (docs/data-and-gpu.md on the 2 vCPUs).
    env["OMP_NUM_THREADS"] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["RAYON_NUM_THREADS"] = str(threads)
    return env


def _parse_time_v(text):
    """Fields of GNU time -v output that we keep."""
    out = {}
    pats = {
        "peak_rss_kb": r"Maximum resident set size \(kbytes\):\s*(\d+)",
        "user_s": r"User time \(seconds\):\s*([\d.]+)",
        "sys_s": r"System time \(seconds\):\s*([\d.]+)",
    }
    for k, pat in pats.items():
        m = re.search(pat, text)
        if m:
            out[k] = float(m.group(1))
    return out


def run_one(cmd, env, timeout):
    """Runs cmd under /usr/bin/time -v; returns (json result or None, measurements, stderr tail)."""
    use_time = True
    with tempfile.TemporaryDirectory() as tmp:
        tv = os.path.join(tmp, "time-v.txt")
        full = (["/usr/bin/time", "-v", "-o", tv] + cmd) if use_time else cmd
        t0 = time.monotonic()
        proc = subprocess.Popen(full, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            timed_out = True
        wall = time.monotonic() - t0
        meas = {"wall_s": wall, "rc": proc.returncode, "timed_out": timed_out}
        if use_time and os.path.exists(tv):
            meas.update(_parse_time_v(open(tv).read()))
            meas["rss_source"] = "/usr/bin/time -v"
    result = None
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "tokens_per_s" in obj:
                result = obj
                break
    return result, meas, (stderr or "")[-2000:]


def run_one_wait4(cmd, env, timeout):
    """Like run_one without /usr/bin/time: rusage of this child via os.wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        deadline = t0 + timeout
        timed_out = False
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                timed_out = True
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    meas = {"wall_s": wall, "rc": proc.returncode, "timed_out": timed_out,
            "peak_rss_kb": float(ru.ru_maxrss), "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
            "rss_source": "os.wait4 rusage"}
    result = None
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "tokens_per_s" in obj:
                result = obj
                break
    return result, meas, stderr[-2000:]


def loadavg():
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def fmt_rate(xs):
    if not xs:
        return "–"
    med = statistics.median(xs)
    if len(xs) == 1:
        return f"{med:,.0f}"
    return f"{med:,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"


def fmt_mb(xs):
    return f"{max(xs) / 1024:,.0f} MB" if xs else "–"


def main(args):
    impls = (["frugal"] if args.frugal else []) + ["torch"]
    print("# CPU training benchmark", file=sys.stderr)
    print(f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; "
          f"batch {args.batch} x seq {args.seq}; repeats {args.repeats}; impls {impls}", file=sys.stderr)
    for s in args.sizes:
        c = SIZES[s]
        print(f"size {s}: vocab {c['vocab']} d {c['d_model']} layers {c['layers']} heads {c['heads']} "
              f"ffn {c['ffn']} -> {param_count(**c):,} params "
              f"({param_count(**c) - c['vocab'] * c['d_model']:,} non-embedding)", file=sys.stderr)

    load0 = loadavg()
    if load0 is not None and load0 > 0.5:
        print(f"warning: load average {load0:.2f} before starting: other work on this machine "
              f"will slow both programs (compare wall and cpu times per run)", file=sys.stderr)
    runner = run_one if os.access("/usr/bin/time", os.X_OK) else run_one_wait4
    runs = []
    t_start = time.monotonic()
    for s in args.sizes:
        cfg = SIZES[s]
        for th in args.threads:
            for r in range(args.repeats):
                for impl in impls:  # A B A B ...
                    cmd = command(impl, cfg, th, args)
                    if args.dry_run:
                        print(" ".join(cmd))
                        continue
                    res, meas, err = runner(cmd, child_env(th), args.timeout)
                    rec = {"size": s, "threads": th, "repeat": r, "impl": impl, "cmd": cmd,
                           "result": res, **meas}
                    runs.append(rec)
                    if res is None:
                        print(f"[{s} t{th} r{r}] {impl}: FAILED rc={meas['rc']} "
                              f"timed_out={meas['timed_out']}\n{err}", file=sys.stderr)
                    else:
                        cpu = meas.get("user_s", 0) + meas.get("sys_s", 0)
                        print(f"[{s} t{th} r{r}] {impl:6s} {res['tokens_per_s']:9,.0f} tok/s "
                              f"step {res['step_ms_median']:8.1f} ms  loss {res['loss_first']:.3f}->"
                              f"{res['loss_last']:.3f}  rss {meas.get('peak_rss_kb', 0) / 1024:,.0f} MB  "
                              f"wall {meas['wall_s']:.1f}s cpu {cpu:.1f}s", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0

    rows, summary = [], []
    for s in args.sizes:
        n = param_count(**SIZES[s])
        for th in args.threads:
            tok, rss, reported = {}, {}, {}
            for impl in impls:
                sel = [x for x in runs if x["size"] == s and x["threads"] == th
                       and x["impl"] == impl and x["result"]]
                tok[impl] = [x["result"]["tokens_per_s"] for x in sel]
                rss[impl] = [x["peak_rss_kb"] for x in sel if "peak_rss_kb" in x]
                reported[impl] = sorted({x["result"].get("params") for x in sel})
            ratio = "–"
            if tok.get("frugal") and tok.get("torch"):
                ratio = f"{statistics.median(tok['frugal']) / statistics.median(tok['torch']):.2f}"
            for impl in impls:
                if reported[impl] and reported[impl] != [n]:
                    print(f"warning: {impl} reports params {reported[impl]} for size {s}, expected {n}",
                          file=sys.stderr)
            rows.append(f"| {s} | {n:,} | {th} | {fmt_rate(tok.get('frugal', []))} | "
                        f"{fmt_rate(tok['torch'])} | {ratio} | {fmt_mb(rss.get('frugal', []))} | "
                        f"{fmt_mb(rss['torch'])} |")
            summary.append({
                "size": s, "params": n, "threads": th,
                "frugal_tokens_per_s": tok.get("frugal", []), "torch_tokens_per_s": tok["torch"],
                "frugal_peak_rss_kb": rss.get("frugal", []), "torch_peak_rss_kb": rss["torch"],
                "ratio_median": None if ratio == "–" else float(ratio),
            })

    print()
    print(f"Batch {args.batch} x {args.seq} tokens, f32, AdamW; tokens/s: median (min–max) of "
          f"{args.repeats} runs, each the median of its timed steps; peak RSS: largest of the runs.")
    print()
    print("| size | params | threads | frugal tok/s | torch tok/s | frugal/torch | frugal peak RSS | torch peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)
    print(f"\ntotal wall time {time.monotonic() - t_start:.0f} s; load average {load0} before, "
          f"{loadavg()} after", file=sys.stderr)

    if args.out:
        torch_v = next((x["result"].get("torch") for x in runs if x["result"] and x["impl"] == "torch"), None)
        with open(args.out, "w") as f:
            json.dump({"argv": sys.argv, "host": platform.node(), "cpus": os.cpu_count(),
                       "loadavg_before": load0, "loadavg_after": loadavg(),
                       "batch": args.batch, "seq": args.seq, "sizes": {s: SIZES[s] for s in args.sizes},
                       "torch": torch_v, "summary": summary, "runs": runs}, f, indent=1)
        print(f"wrote {args.out}", file=sys.stderr)
    failed = [x for x in runs if not x["result"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
