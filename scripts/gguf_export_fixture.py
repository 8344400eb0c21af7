#!/usr/bin/env python3
"""frugal's GGUF export as transformers reads it: the fixture of
crates/cli/tests/gguf_export.rs.

    source .venv/bin/frugal-env      # scripts/setup-python-ref.sh (torch, transformers, gguf)
    cargo build -p frugal
    python scripts/gguf_export_fixture.py target/debug/frugal crates/cli/tests/fixtures/gguf_export

FRUGAL trains a tiny run (a 384-token byte-level BPE on the Hamlet fixture,
the nano model with its norms, 6 steps on one thread, so the run is the same
every time) and keeps its last checkpoint and tokenizer under OUT/run. Then
`frugal export gguf` writes it as an f32 and a q8_0 GGUF file, and
transformers loads each one the way it loads any GGUF model
(`from_pretrained(..., gguf_file=...)`, tokenizer and model, dequantised by
llama.cpp's gguf-py).

Writes OUT/expected.safetensors: `input_ids` i64 [1, T] (the f32 file's
tokenizer on TEXT, as transformers builds it), `logits` and `logits_q8_0` f32
[1, T, V] (eager attention, eval mode); its metadata holds the SHA-256 of
both GGUF files, which the test's own export must reproduce. The GGUF files
themselves are not kept.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import cuda_stubs  # scripts/cuda_stubs.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "crates/data/tests/fixtures")  # Hamlet and its README

TEXT = (
    "HAMLET. To be, or not to be: that's the question 2 or 3 times in 1601!\n\n"
    "\tEnter OPHELIA — naïve, café<|endoftext|>Act III, Scene 1."
)

CONFIG = """
[model]
preset = "nano"
[data]
dataset = {dataset!r}
[train]
seq_len = 128
batch_size = 2
steps = 6
lr = 3e-3
log_every = 1
[schedule]
kind = "wsd"
warmup_steps = 2
[eval]
every = 6
batches = 1
[checkpoint]
every = 6
"""


def frugal(binary, *args):
    subprocess.run([binary, "--threads", "1", *args], check=True,
                   stdout=subprocess.DEVNULL)


def train(binary, work, out):
    """The tiny run; its checkpoint (without the optimizer state, which
    export does not read) and tokenizer go to OUT/run."""
    tok = os.path.join(work, "tok.json")
    frugal(binary, "tokenizer", "train", "--input", CORPUS, "--vocab", "384", "--out", tok)
    dataset = os.path.join(work, "data")
    frugal(binary, "data", "prepare", "--input", CORPUS, "--tokenizer", tok,
           "--out", dataset, "--val-fraction", "0.2")
    config = os.path.join(work, "tiny.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(dataset=dataset))
    run = os.path.join(work, "run")
    frugal(binary, "train", "--config", config, "--out", run, "--quiet")
    step = "checkpoints/step-0000006"
    keep = os.path.join(out, "run")
    shutil.rmtree(keep, ignore_errors=True)
    os.makedirs(os.path.join(keep, step))
    for f in ["model.safetensors", "state.json"]:
        shutil.copy(os.path.join(run, step, f), os.path.join(keep, step, f))
    shutil.copy(os.path.join(run, "tokenizer.json"), os.path.join(keep, "tokenizer.json"))
    return keep


def export(binary, run, path, dtype):
    frugal(binary, "export", "gguf", "--checkpoint", run, "--dtype", dtype, "--out", path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def transformers_logits(path, ids=None):
    """transformers' ids of TEXT (when `ids` is None) and logits, from the
    GGUF file at `path`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(path)
    if ids is None:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        ids = tok(TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(ids).logits.float().contiguous()
    return ids, logits


def main():
    cuda_stubs.ensure_path()
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, out = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    from qwen2_gguf_fixture import save_tensors

    with tempfile.TemporaryDirectory() as work:
        run = train(binary, work, out)
        hashes, tensors = {}, {}
        for dtype, key in [("f32", "logits"), ("q8_0", "logits_q8_0")]:
            path = os.path.join(work, f"model-{dtype}.gguf")
            hashes[dtype] = export(binary, run, path, dtype)
            ids, logits = transformers_logits(path, tensors.get("input_ids"))
            tensors["input_ids"] = ids
            tensors[key] = logits
    save_tensors(out, tensors, TEXT, {"gguf_sha256": hashes})
    print(f"wrote {out}: {tensors['input_ids'].shape[1]} tokens, sha256 {hashes}")


if __name__ == "__main__":
    main()
