#!/usr/bin/env python3
"""A tiny Llama with Llama 3.1's RoPE scaling and Llama 3's tokenizer, as a
Hugging Face directory and as a GGUF made by llama.cpp's own converter, with
transformers' logits: the fixture of crates/prolong/tests/llama3.rs.

    source .venv/bin/frugal-env      # scripts/setup-python-ref.sh (torch, transformers, gguf)
    python scripts/llama3_fixture.py LLAMA_CPP crates/prolong/tests/fixtures/llama3

LLAMA_CPP is a llama.cpp source tree, as for scripts/qwen2_gguf_fixture.py
(the one vendored in llama-cpp-python 0.3.36's sdist on PyPI).

Writes into OUT:

* hf/: `LlamaForCausalLM.save_pretrained` and the tokenizer's
  `save_pretrained`. The model is small and random (tied embedding,
  grouped-query attention, head dim 16, random RMSNorm weights) with
  `rope_scaling = {rope_type: llama3, factor 8, low_freq_factor 1,
  high_freq_factor 4, original_max_position_embeddings 32}`: Llama 3.1's
  factors with the original context shrunk so that at head dim 16 each of the
  three bands (kept, interpolated, stretched) holds some of the 8
  frequencies. The tokenizer is Llama 3's pipeline (its split pattern, byte
  level without its own regex, BPE with ignore_merges), trained on
  scripts/bpe_corpus.md (a frozen copy of this repository's README) to 300 tokens, plus " frugality" as one token that no
  merge builds (so ignore_merges decides how it is split) and two special
  tokens.
* model.gguf: llama.cpp's convert_hf_to_gguf.py of hf/ in f32 (so that its
  logits are the f32 model's), told that the pre-tokenizer is `llama-bpe`.
  It stores the RoPE scaling as the `rope_freqs.weight` tensor.
* expected.safetensors: `input_ids` i64 [1, T] (hf/'s tokenizer on TEXT, T
  past the original context) and `logits` f32 [1, T, V] (transformers, eager
  attention, f32, eval mode).
* tokens.json: [{"text", "ids", "pieces"}] from hf/'s tokenizer for TEXT and
  the probes (pieces: the pre-tokenizer's output).

It also prints how transformers' own GGUF loader tokenizes the probes (its
converter gives Llama 3 vocabularies GPT-2's pattern).
"""

import json
import os
import sys

import cuda_stubs  # scripts/cuda_stubs.py
from qwen2_gguf_fixture import (
    CORPUS, PROBES, byte_level_bpe, convert, save_expected, write_tokens,
)

TEXT = (
    "ProLong scores 1,234,567 documents; the 2024 paper's scorer didn't need more. "
    "Long-range dependencies: a segment of 128 tokens, then another 4096 tokens away.\n"
    "It's what we'll measure (3.5e-4 LR, 12 layers, 50304 vocab).<|end_of_text|>"
)
LLAMA3_PROBES = ["year 2024: 1234567 and 89", "WE'LL SEE, IT'S FINE", "no frugality here"]
# " frugality" in byte-level form, added to the vocabulary without merges.
WHOLE_WORD = "\u0120frugality"


def llama3_tokenizer(corpus):
    """Llama 3's tokenizer pipeline, trained on `corpus`."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    # Llama 3's tokenizer.json pre-tokenizer, written out here.
    split = (
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
    )
    tok = byte_level_bpe(split, corpus, ignore_merges=True)
    # One whole word no merge builds, so that ignore_merges decides its ids.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    assert WHOLE_WORD not in vocab
    vocab[WHOLE_WORD] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(spec))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"
    )
    return fast


def tiny_llama3(vocab_size):
    """The fixture's model (seeded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=256,
        rope_theta=10_000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        initializer_range=0.2,
        torch_dtype="float32",
    )
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
            layer.post_attention_layernorm.weight.uniform_(0.5, 1.5)
    return model


def main(llama_cpp, out):
    import torch
    from transformers import AutoTokenizer

    with open(CORPUS, encoding="utf-8") as f:
        corpus = f.read()
    hf_dir = os.path.join(out, "hf")
    os.makedirs(hf_dir, exist_ok=True)
    tok = llama3_tokenizer(corpus)
    model = tiny_llama3(len(tok))
    model.save_pretrained(hf_dir, safe_serialization=True)
    tok.save_pretrained(hf_dir)
    gen = os.path.join(hf_dir, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    convert(llama_cpp, hf_dir, os.path.join(out, "model.gguf"), pre="llama-bpe",
            outtype="f32", name="frugal-llama3-tiny")

    ids = tok(TEXT, return_tensors="pt").input_ids
    assert ids.shape[1] > 2 * 32, "TEXT must run past the original context"
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    save_expected(out, ids, logits, TEXT)
    print(f"T {ids.shape[1]}, logits spread {float(logits.max() - logits.min()):.2f}",
          file=sys.stderr)
    probes = write_tokens(out, tok, [TEXT] + PROBES + LLAMA3_PROBES)

    # For the record, transformers' GGUF loader on the same file. It
    # prepends BOS, which frugal does not when scoring; compare the rest.
    gtok = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")

    def gguf_ids(t):
        got = gtok(t).input_ids
        return got[1:] if got[:1] == [gtok.bos_token_id] else got

    differ = [p["text"] for p in probes if gguf_ids(p["text"]) != p["ids"]]
    print(f"transformers' GGUF tokenizer (BOS aside) differs from the original on "
          f"{len(differ)} of {len(probes)} strings: {differ}", file=sys.stderr)


if __name__ == "__main__":
    cuda_stubs.ensure_path()
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
