#!/usr/bin/env python3
"""Run the ProLong reference scorer (prolong/run.py of a checkout given as an
argument) on real long documents and record what frugal must reproduce.

The reference's own functions are imported from the checkout (nothing of it is
copied here) and run on the CPU in f32 with the SmolLM2 GGUF scorer, without
BOS, with transformers' fast GGUF tokenizer and a pair batch of 32 (see
../shared/docs/data-and-gpu.md). For a `smollm` vocabulary (SmolLM2) the
tokenizer's pre-tokenizer is set to SmolLM2's own (`smollm_pre_tokenizer`):
transformers' GGUF converter gives it GPT-2's, which llama.cpp and SmolLM2's
`tokenizer.json` do not use. Seeds as in run.py: one `set_seed(11)` at the
start, then the reference's `random.sample` calls per document.

The fixture holds, per document: the text, its chunk token ids, the sampled
pairs, the single and pair perplexities, ΔPPL/PPL and the reference's LDS.
`cargo test -p frugal-prolong --test reference` checks frugal against it.

    source .venv/bin/frugal-env
    python scripts/prolong_compare.py /work/prolong-ref \
        --gguf ~/.cache/frugal/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out crates/prolong/tests/fixtures/reference.json
"""

import argparse
import glob
import json
import os
import random
import sys
import time
import types


def stub_missing(name):
    # run.py imports matplotlib (for its heatmaps) and tqdm at module level;
    # the scoring functions use neither.
    try:
        __import__(name)
        return False
    except ImportError:
        mod = types.ModuleType(name)
        sys.modules[name] = mod
        if name == "matplotlib":
            sys.modules["matplotlib.pyplot"] = types.ModuleType("matplotlib.pyplot")
            mod.pyplot = sys.modules["matplotlib.pyplot"]
        if name == "tqdm":
            mod.tqdm = lambda x, **k: x
        return True


def import_reference(checkout):
    """prolong/run.py of the checkout, as a module."""
    import transformers  # noqa: F401  (before the stubs: it probes packages)

    stubs = [m for m in ("matplotlib", "tqdm") if stub_missing(m)]
    sys.path.insert(0, os.path.join(checkout, "prolong"))
    import run as ref

    # Stubs out again: transformers probes optional packages by import spec.
    for m in stubs:
        sys.modules.pop(m, None)
        sys.modules.pop(m + ".pyplot", None)
    return ref


def gguf_pre(path):
    """`tokenizer.ggml.pre` of a GGUF file ('' where absent)."""
    from gguf import GGUFReader

    field = GGUFReader(path).fields.get("tokenizer.ggml.pre")
    return bytes(field.parts[field.data[0]]).decode() if field else ""


def smollm_pre_tokenizer():
    """What SmolLM2's `tokenizer.json` states and llama.cpp runs for
    `tokenizer.ggml.pre = smollm`: every digit its own piece, then GPT-2's
    byte-level split. transformers' GGUF converter keeps only the second, so
    a run of spaces before a digit (indentation, aligned tables) is split
    into one-space tokens SmolLM2 never saw in training."""
    from tokenizers import pre_tokenizers as pt

    return pt.Sequence([
        pt.Digits(individual_digits=True),
        pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])


def gguf_tokenizer(path):
    """transformers' fast tokenizer of a GGUF file as run.py uses it (no
    BOS/EOS; transformers' GGUF loader turns BOS on), with SmolLM2's own
    pre-tokenizer for a `smollm` vocabulary; and `tokenizer.ggml.pre`."""
    from transformers import AutoTokenizer

    gdir, gname = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname, use_fast=True)
    tok.add_bos_token = False
    tok.add_eos_token = False
    pre = gguf_pre(path)
    if pre == "smollm":
        tok.backend_tokenizer.pre_tokenizer = smollm_pre_tokenizer()
    print(f"tokenizer.ggml.pre = {pre!r}", file=sys.stderr, flush=True)
    return tok, pre


def documents(n, max_chars, min_chars):
    """Real long documents: Vim's help files (on every machine with vim),
    each cut at a line boundary to about `max_chars` characters so that the
    reference's cost (~0.5 K forward tokens/s on this CPU) stays affordable."""
    docs = []
    for path in sorted(glob.glob("/usr/share/vim/vim90/doc/*.txt")):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if len(text) < min_chars:
            continue
        cut = text[:max_chars]
        cut = cut[: cut.rfind("\n") + 1] or cut
        docs.append({"id": os.path.basename(path), "text": cut})
        if len(docs) == n:
            break
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref", help="path of a ProLong checkout (contains prolong/run.py)")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-docs", type=int, default=22)
    ap.add_argument("--max-chars", type=int, default=6000)
    ap.add_argument("--sample-size", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUT.tmp, replaying the sampler for its documents")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from transformers import AutoModelForCausalLM

    ref = import_reference(a.ref)

    gdir, gname = os.path.split(os.path.abspath(a.gguf))
    tok, pre = gguf_tokenizer(a.gguf)
    model = AutoModelForCausalLM.from_pretrained(
        gdir, gguf_file=gname, torch_dtype=torch.float32
    )
    model.eval()
    chunk_size, window = 128, 32768
    ref.model = model
    ref.device = torch.device("cpu")
    ref.args = argparse.Namespace(
        chunk_size=chunk_size,
        window_size=window,
        chunk_num=window // chunk_size,
        dlt_ppl_threshold=0.1,
    )
    ref.set_seed(11)

    out = {
        "model": gname,
        "chunk_size": chunk_size,
        "window": window,
        "threshold": 0.1,
        "sample_size": a.sample_size,
        "pair_batch": 32,
        "pre_tokenizer": pre,
        "docs": [],
    }
    done = {}
    if a.resume and os.path.exists(a.out + ".tmp"):
        with open(a.out + ".tmp") as f:
            old = json.load(f)
        done = {d["id"]: d for d in old["docs"]}
    for d in documents(a.n_docs, a.max_chars, a.max_chars):
        if d["id"] in done:
            # Advance Python's generator exactly as compute_pair_ppl did.
            rec = done[d["id"]]
            n = len(rec["chunks"])
            allp = [(i, j) for i in range(n) for j in range(i)]
            if 0 < a.sample_size <= len(allp):
                random.sample(allp, a.sample_size)
            out["docs"].append(rec)
            continue
        t0 = time.time()
        chunks = ref.construct_data(d["text"], tok, chunk_size, ref.args.chunk_num)
        single = ref.compute_single_ppl(chunks, 256)
        pair = ref.compute_pair_ppl(chunks, 32, a.sample_size)
        lds, dlt, dsp = ref.compute_lds(single, pair)
        n = len(chunks)
        pairs = [[i, j] for i in range(n) for j in range(i) if pair[i][j] != float("inf")]
        rec = {
            "id": d["id"],
            "text": d["text"],
            "chunks": chunks,
            "pairs": pairs,
            "single_ppl": single,
            "pair_ppl": [pair[i][j] for i, j in pairs],
            "dst": [dlt[i][j] for i, j in pairs],
            "dsp": [float(x) for x in dsp],
            "lds": float(lds),
            "seconds": time.time() - t0,
        }
        out["docs"].append(rec)
        print(f"{d['id']}: {n} chunks, {len(pairs)} pairs, LDS {lds:.6f}, "
              f"{rec['seconds']:.1f} s", flush=True)
        # Written after every document so a long run can be inspected.
        with open(a.out + ".tmp", "w") as f:
            json.dump(out, f)
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
