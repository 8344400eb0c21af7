#!/usr/bin/env python3
"""Runs frugal's GGUF export in llama.cpp itself (through its Python
binding, llama-cpp-python) and compares with the fixture of
crates/cli/tests/gguf_export.rs, whose logits are transformers' (and
frugal's, within 5e-7).

    pip install llama-cpp-python==0.3.36      # builds llama.cpp from source (~10 min on 2 cores)
    python scripts/gguf_export_llama_cpp.py target/debug/frugal crates/cli/tests/fixtures/gguf_export

For each of f32 and q8_0: `frugal export gguf` of the fixture's run, then
llama.cpp tokenizes the fixture's text (no BOS, special tokens parsed) and
evaluates it with all logits kept. Prints, per file, whether its token ids
are the fixture's, the largest logit gap to the fixture and the share of
positions whose top token agrees; exits non-zero when the ids differ or a
gap exceeds its bound: 1e-3 for f32, 5e-2 for q8_0, where llama.cpp's CPU
matmul also rounds the activations to 8 bits (transformers and frugal
dequantise the weights and multiply in f32).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def expected(fixture):
    from safetensors import safe_open

    with safe_open(os.path.join(fixture, "expected.safetensors"), "np") as f:
        meta = json.loads(f.metadata()["made_by"])
        return meta["text"], {k: f.get_tensor(k) for k in f.keys()}


def llama_cpp_logits(path, text, n_vocab):
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=128, n_batch=128, logits_all=True,
                n_threads=1, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    llm.eval(ids)
    return ids, np.array(llm.scores[: len(ids), :n_vocab])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frugal")
    ap.add_argument("fixture")
    a = ap.parse_args()
    import llama_cpp
    import numpy as np

    text, want = expected(a.fixture)
    ids_want = want["input_ids"][0].tolist()
    ok = True
    print(f"llama-cpp-python {llama_cpp.__version__}; {len(ids_want)} tokens")
    with tempfile.TemporaryDirectory() as work:
        for dtype, key, bound in [("f32", "logits", 1e-3), ("q8_0", "logits_q8_0", 5e-2)]:
            path = os.path.join(work, f"model-{dtype}.gguf")
            subprocess.run([a.frugal, "export", "gguf", "--dtype", dtype, "--checkpoint",
                            os.path.join(a.fixture, "run"), "--out", path],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            logits_want = want[key][0]
            ids, logits = llama_cpp_logits(path, text, logits_want.shape[-1])
            same_ids = ids == ids_want
            gap = float(np.abs(logits - logits_want).max()) if same_ids else float("nan")
            top = float((logits.argmax(-1) == logits_want.argmax(-1)).mean()) if same_ids else 0.0
            print(f"{dtype}: ids {'equal' if same_ids else 'DIFFER'}, max |logit gap| {gap:.2e}, "
                  f"top-1 agreement {top:.3f}")
            ok &= same_ids and gap <= bound
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
