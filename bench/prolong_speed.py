#!/usr/bin/env python3
"""ProLong scoring speed: the reference (prolong/run.py of a checkout given as
an argument, CPU f32, pair batch 32) against `frugal prolong score --compat`,
same scorer GGUF, same documents, same number of pairs per document, run one
after the other in this process' machine state. Prints a Markdown table.

    source .venv/bin/frugal-env
    python bench/prolong_speed.py /work/prolong-ref --frugal target/release/frugal \
        --gguf ~/.cache/frugal/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --docs 4 --max-chars 9000 --sample-pairs 100 --sample-pairs -1

Documents: Vim's help files cut to --max-chars at a line boundary. The
reference's time is its own per-document timer (tokenisation excluded, as in
run.py); frugal's is its summary (model load excluded).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import prolong_compare as pc  # noqa: E402  (document source, reference import)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--frugal", required=True, help="frugal binary")
    ap.add_argument("--docs", type=int, default=4)
    ap.add_argument("--max-chars", type=int, default=9000)
    ap.add_argument("--sample-pairs", type=int, action="append")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    samples = a.sample_pairs or [500, -1]

    import torch

    torch.set_num_threads(a.threads)
    from transformers import AutoModelForCausalLM

    ref = pc.import_reference(a.ref)
    gdir, gname = os.path.split(os.path.abspath(a.gguf))
    tok, _ = pc.gguf_tokenizer(a.gguf)
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, torch_dtype=torch.float32)
    model.eval()
    ref.model, ref.device = model, torch.device("cpu")
    ref.args = argparse.Namespace(chunk_size=128, window_size=32768, chunk_num=256,
                                  dlt_ppl_threshold=0.1)
    docs = pc.documents(a.docs, a.max_chars, a.max_chars)
    tmp = tempfile.mkdtemp()
    inp = os.path.join(tmp, "docs.jsonl")
    with open(inp, "w") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "text": d["text"]}) + "\n")

    rows = []
    for t in samples:
        ref.set_seed(11)
        t_ref, n_tok, n_pairs = 0.0, 0, 0
        for d in docs:
            chunks = ref.construct_data(d["text"], tok, 128, 256)
            n = len(chunks)
            n_pairs += n * (n - 1) // 2 if t < 0 or n * (n - 1) // 2 < t else t
            n_tok += n * 128
            t0 = time.time()
            single = ref.compute_single_ppl(chunks, 256)
            pair = ref.compute_pair_ppl(chunks, 32, t)
            ref.compute_lds(single, pair)
            t_ref += time.time() - t0
        out = os.path.join(tmp, f"out{t}.jsonl")
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
        p = subprocess.run([a.frugal, "prolong", "score", "--model", a.gguf, "--input", inp,
                            "--output", out, "--compat", "--id-field", "id",
                            "--sample-pairs", str(t)],
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(p.stderr)
        m = re.search(r"in ([0-9.]+) s", p.stdout)
        t_fr = float(m.group(1))
        rows.append((t, len(docs), n_tok, n_pairs, t_ref, t_fr))
        print(f"T={t}: reference {t_ref:.1f} s, frugal {t_fr:.1f} s", flush=True)

    print("\n| pairs/doc | docs | chunk tokens | pairs | reference docs/s | frugal docs/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for t, nd, ntok, npairs, tr, tf in rows:
        print(f"| {'all' if t < 0 else t} | {nd} | {ntok} | {npairs} | {nd / tr:.4f} | "
              f"{nd / tf:.4f} | {tr / tf:.1f}× |")


if __name__ == "__main__":
    main()
