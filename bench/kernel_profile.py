"""Per-step GPU profile from two kernel traces of the same training bench.

    python3 bench/kernel_profile.py SHORT.csv LONG.csv STEPS [BENCH.json]

SHORT.csv and LONG.csv are bench/cupti/kernel_trace.c's totals for two runs
that differ only in the number of timed steps; their difference divided by
STEPS (the difference in steps) is one training step, with initialisation and
warm-up cancelled out. BENCH.json (frugal bench train's output line of the
long run) adds the wall time of a step, so the GPU's idle share shows.
Prints markdown: totals, time by kind of work, and the top kernels.
"""

import json
import sys


def read(path):
    rows = {}
    with open(path) as f:
        next(f)  # header
        for line in f:
            kind, count, ns, nbytes, name = line.rstrip("\n").split(",", 4)
            rows[(kind, name)] = (int(count), int(ns), int(nbytes))
    return rows


def category(kind, name):
    """Coarse buckets: what a fused kernel could remove or a faster GEMM speed up."""
    n = name.lower()
    if kind != "kernel":
        return f"{kind} {name}"
    if any(k in n for k in ("gemm", "xmma", "cutlass", "sm90_", "nvjet", "cublas")):
        return "matmul (cuBLAS)"
    frugal = ("rms_", "sum_columns", "causal_softmax", "softmax_bwd", "swiglu", "rope", "cross_entropy")
    if n.startswith(frugal):
        return "frugal fused kernels"
    if n.startswith(("fast_sum", "fast_max", "fast_min", "fast_argm", "sum_", "max_", "min_", "softmax", "rmsnorm", "layernorm")):
        return "candle reductions"
    if n.startswith(("cast_",)):
        return "candle dtype casts"
    if n.startswith(("ucopy", "copy2d", "copy_")):
        return "candle copies (contiguous/strided)"
    if n.startswith(("index_select", "gather", "scatter", "index_add", "is_", "where_")):
        return "candle indexing"
    if n.startswith(("affine", "powf", "elu")):
        return "candle elementwise (affine)"
    if n.startswith("b") and n[1:4] in ("add", "sub", "mul", "div", "max", "min"):
        return "candle elementwise (binary)"
    if n.startswith("u"):
        return "candle elementwise (unary)"
    if n.startswith("fill") or n.startswith("const_set"):
        return "candle fills"
    return "other kernels"


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    short, long_, steps = read(sys.argv[1]), read(sys.argv[2]), int(sys.argv[3])
    if steps <= 0:
        sys.exit("STEPS must be positive")
    per_step = {}
    for key, (c, ns, b) in long_.items():
        c0, ns0, b0 = short.get(key, (0, 0, 0))
        if c - c0 > 0:
            per_step[key] = ((c - c0) / steps, (ns - ns0) / steps, (b - b0) / steps)
    total_ns = sum(v[1] for v in per_step.values())
    launches = sum(v[0] for (k, _), v in per_step.items() if k == "kernel")
    if total_ns <= 0:
        sys.exit("the two traces do not differ: no step was recorded")
    print(f"GPU time per step: {total_ns / 1e6:.2f} ms in {launches:.0f} kernel launches "
          f"({total_ns / 1e3 / max(launches, 1):.1f} us per launch on average)")
    if len(sys.argv) == 5:
        bench = json.loads(open(sys.argv[4]).read().strip().splitlines()[-1])
        wall = bench["step_ms_median"]
        print(f"Wall time per step (median): {wall:.2f} ms; the GPU is busy "
              f"{100 * total_ns / 1e6 / wall:.0f} % of it")
    cats = {}
    for (kind, name), (c, ns, b) in per_step.items():
        cat = category(kind, name)
        cc, cns = cats.get(cat, (0, 0))
        cats[cat] = (cc + c, cns + ns)
    print("\n| work | launches/step | ms/step | share |")
    print("| --- | ---: | ---: | ---: |")
    for cat, (c, ns) in sorted(cats.items(), key=lambda kv: -kv[1][1]):
        print(f"| {cat} | {c:.0f} | {ns / 1e6:.3f} | {100 * ns / total_ns:.1f} % |")
    print("\n| kernel | launches/step | us/launch | ms/step | share |")
    print("| --- | ---: | ---: | ---: | ---: |")
    top = sorted(per_step.items(), key=lambda kv: -kv[1][1])[:25]
    for (kind, name), (c, ns, b) in top:
        label = name if len(name) <= 70 else name[:67] + "..."
        label = label.replace("|", "\\|")
        if kind != "kernel":
            label = f"{kind} {label} ({b / 1e6:.1f} MB/step)"
        print(f"| `{label}` | {c:.0f} | {ns / 1e3 / c:.1f} | {ns / 1e6:.3f} | {100 * ns / total_ns:.1f} % |")


if __name__ == "__main__":
    main()
