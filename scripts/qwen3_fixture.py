#!/usr/bin/env python3
"""A tiny random Qwen3 and transformers' logits, as config.json +
model.safetensors and as the f32 GGUF llama.cpp's converter makes of it: the
fixture of crates/model/tests/qwen3_parity.rs.

    source .venv/bin/frugal-env      # scripts/setup-python-ref.sh (torch, transformers, gguf)
    python scripts/qwen3_fixture.py LLAMA_CPP crates/model/tests/fixtures/qwen3

LLAMA_CPP is a llama.cpp source tree, as for scripts/qwen2_gguf_fixture.py.

The model has what sets Qwen3 apart from Qwen2 and Llama: RMSNorm over each
head of q and of k before RoPE (weights drawn away from 1 so that they are
tested), no q/k/v biases, and heads wider than hidden / heads (4 heads of 16
over a width of 32, as Qwen3-0.6B has 16 heads of 128 over 1024), with
grouped-query attention and a tied embedding. The vocabulary is the Llama 3
fixture's tokenizer, which only feeds the converter and the ids.

Writes OUT/hf/config.json and OUT/hf/model.safetensors (`save_pretrained`),
OUT/model.gguf, and OUT/expected.safetensors: `input_ids` i64 [1, 128]
(scripts/rope_scaling_fixture.py's ids) and `logits` f32 [1, 128, V]
(eager attention, f32, eval mode).
"""

import os
import shutil
import sys
import tempfile

import cuda_stubs  # scripts/cuda_stubs.py
from llama3_fixture import TEXT
from qwen2_gguf_fixture import convert, save_tensors
from rope_scaling_fixture import fixture_ids


def tiny_qwen3(vocab_size):
    """The fixture's model (seeded)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        initializer_range=0.2,
        torch_dtype="float32",
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            attn = layer.self_attn
            assert attn.q_proj.bias is None and attn.q_proj.out_features == 64
            for norm in (attn.q_norm, attn.k_norm, layer.input_layernorm,
                         layer.post_attention_layernorm):
                norm.weight.uniform_(0.5, 1.5)
    return model


def main(llama_cpp, out):
    import torch

    os.makedirs(os.path.join(out, "hf"), exist_ok=True)
    tok, ids = fixture_ids()
    model = tiny_qwen3(len(tok))
    with tempfile.TemporaryDirectory() as hf_dir:
        model.save_pretrained(hf_dir, safe_serialization=True)
        tok.save_pretrained(hf_dir)
        for name in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(hf_dir, name), os.path.join(out, "hf"))
        convert(llama_cpp, hf_dir, os.path.join(out, "model.gguf"), pre="qwen2",
                outtype="f32", name="frugal-qwen3-tiny")
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    print(f"logits spread {float(logits.max() - logits.min()):.2f}", file=sys.stderr)
    save_tensors(out, {"input_ids": ids, "logits": logits}, TEXT)


if __name__ == "__main__":
    cuda_stubs.ensure_path()
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
