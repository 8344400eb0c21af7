#!/usr/bin/env python3
"""Logits of a Hugging Face causal LM on a text, saved as a parity fixture.

    python scripts/hf_parity_fixture.py --hf-dir DIR --text FILE \
        [--max-tokens 64] --out FIXTURE.safetensors

Loads DIR with transformers' AutoModelForCausalLM (f32) and DIR/tokenizer.json
with the `tokenizers` library, tokenises FILE without adding special tokens,
keeps the first --max-tokens ids, runs the model in eval mode and writes a
safetensors file with

    input_ids  i64 [1, T]
    logits     f32 [1, T, V]

and metadata (string -> string): transformers and torch versions, the command
line, the model directory, the text's sha256, T and V, the attention
implementation.  frugal's tests load a frugal export in DIR and compare their
own logits on input_ids with these.

Run it from the venv built by scripts/setup-python-ref.sh (it re-executes
itself with the CUDA stub libraries on LD_LIBRARY_PATH when needed).

To try it without a real model:

    python scripts/hf_parity_fixture.py --make-test-model /tmp/tiny --text FILE

writes a tiny randomly initialised LlamaForCausalLM in frugal's layout (tied
embedding, SiLU, RMSNorm eps 1e-5, RoPE theta 10000, no biases) with
save_pretrained(safe_serialization=True), and a byte-level BPE tokenizer.json
trained on FILE with the `tokenizers` library.
"""

import argparse
import hashlib
import os
import shlex
import sys

import cuda_stubs  # scripts/cuda_stubs.py


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hf-dir", help="directory with config.json, model.safetensors, tokenizer.json")
    p.add_argument("--text", required=True, help="UTF-8 text file to tokenise")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--out", help="fixture .safetensors to write")
    p.add_argument("--attn", default="eager", choices=["eager", "sdpa"],
                   help="transformers attention implementation (default eager: the plain formula)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default OMP_NUM_THREADS or 2)")
    p.add_argument("--make-test-model", metavar="DIR",
                   help="write a tiny random Llama + a tokenizer trained on --text to DIR and exit")
    p.add_argument("--test-vocab", type=int, default=384, help="tokenizer vocabulary for --make-test-model")
    p.add_argument("--seed", type=int, default=0, help="init seed for --make-test-model")
    a = p.parse_args(argv)
    if not a.make_test_model and not (a.hf_dir and a.out):
        p.error("--hf-dir and --out are required (or --make-test-model DIR)")
    if a.max_tokens < 1:
        p.error("--max-tokens must be >= 1")
    return a


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def make_test_model(out_dir, text_path, vocab_size, seed):
    """A tiny LlamaForCausalLM in frugal's layout and a BPE tokenizer.json."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    os.makedirs(out_dir, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([text_path], trainer)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    vocab = tok.get_vocab_size()

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, hidden_act="silu",
        max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
        initializer_range=0.02, bos_token_id=None, eos_token_id=0, pad_token_id=None)
    model = LlamaForCausalLM(cfg)
    # Randomise the norm weights too, so that a wrong RMSNorm scale shows up.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model.save_pretrained(out_dir, safe_serialization=True)
    print(f"wrote test model to {out_dir}: vocab {vocab}, "
          f"{sum(p.numel() for p in model.parameters()):,} params", file=sys.stderr)


def main(args):
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "2") or 2)
    import torch

    torch.set_num_threads(threads)
    if args.make_test_model:
        make_test_model(args.make_test_model, args.text, args.test_vocab, args.seed)
        return 0

    import safetensors
    import tokenizers
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    tok = tokenizers.Tokenizer.from_file(os.path.join(args.hf_dir, "tokenizer.json"))
    raw = read_text(args.text)
    ids = tok.encode(raw, add_special_tokens=False).ids[: args.max_tokens]
    if not ids:
        raise SystemExit(f"{args.text}: no tokens")

    model = AutoModelForCausalLM.from_pretrained(
        args.hf_dir, dtype=torch.float32, attn_implementation=args.attn)  # dtype: torch_dtype renamed in 4.56
    model.eval()
    vocab = model.config.vocab_size
    if max(ids) >= vocab:
        raise SystemExit(f"token id {max(ids)} >= model vocab {vocab}: tokenizer and model disagree")

    input_ids = torch.tensor([ids], dtype=torch.int64)
    with torch.no_grad():
        logits = model(input_ids=input_ids, use_cache=False).logits.float().contiguous()
    assert logits.shape == (1, len(ids), vocab), logits.shape

    meta = {
        "format": "frugal-hf-parity-fixture-v1",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
        "safetensors_version": safetensors.__version__,
        "command": shlex.join([os.path.basename(sys.executable)] + sys.argv),
        "hf_dir": os.path.abspath(args.hf_dir),
        "model_type": str(getattr(model.config, "model_type", "")),
        "attn_implementation": str(getattr(model.config, "_attn_implementation", args.attn)),
        "text_file": os.path.abspath(args.text),
        "text_sha256": hashlib.sha256(raw.encode("utf-8")).hexdigest(),
        "add_special_tokens": "false",
        "num_tokens": str(len(ids)),
        "vocab_size": str(vocab),
        "dtype": "float32",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file({"input_ids": input_ids, "logits": logits}, args.out, metadata=meta)
    print(f"wrote {args.out}: input_ids [1, {len(ids)}], logits [1, {len(ids)}, {vocab}]; "
          f"transformers {transformers.__version__}, torch {torch.__version__}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    ARGS = parse_args()
    cuda_stubs.ensure_path()
    sys.exit(main(ARGS))
