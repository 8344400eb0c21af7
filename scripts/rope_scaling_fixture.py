#!/usr/bin/env python3
"""Linear and YaRN RoPE scaling as transformers computes them, and as
llama.cpp's converter writes them into GGUF files: the fixture of
crates/model/tests/rope_scaling.rs.

    source .venv/bin/frugal-env      # scripts/setup-python-ref.sh (torch, transformers, gguf)
    python scripts/rope_scaling_fixture.py LLAMA_CPP crates/model/tests/fixtures/rope_scaling

LLAMA_CPP is a llama.cpp source tree, as for scripts/qwen2_gguf_fixture.py
(the one vendored in llama-cpp-python 0.3.36's sdist on PyPI).

Writes into OUT:

* frequencies.json: for each of a few configs (Qwen2.5 7B with YaRN switched
  on as its model card says, YaRN without an original length, with
  DeepSeek's mscale pair, with an explicit attention factor and without
  truncation as gpt-oss has it, linear, Llama 3.1, plain) the config.json
  transformers writes and what transformers' own RoPE init function returns
  from it: the inverse frequencies and the factor cos and sin are
  multiplied by.
* linear/ and yarn/: a tiny random model with that scaling, as config.json
  (`save_pretrained`) and model.gguf (llama.cpp's convert_hf_to_gguf.py, f32,
  which stores the scaling as `{arch}.rope.scaling.*` metadata). linear/ is
  a Llama with factor 4. yarn/ is a Qwen2 (random q/k/v biases) with factor
  8, original context 64 = its max_position_embeddings (as Qwen2.5's configs
  keep 32K there) and beta_fast 4, so that at head dim 16 the ramp's three
  parts (kept, ramped, divided) each hold some of the 8 pairs.
* expected.safetensors: `input_ids` i64 [1, T] (scripts/llama3_fixture.py's
  text through the Llama 3 fixture's tokenizer, cut to T = 128, twice yarn/'s
  original context) and `logits_linear`, `logits_yarn` f32 [1, T, V]
  (transformers, eager attention, f32, eval mode).
"""

import json
import os
import shutil
import sys
import tempfile

import cuda_stubs  # scripts/cuda_stubs.py
from llama3_fixture import TEXT
from qwen2_gguf_fixture import convert, save_tensors

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "..", "crates", "prolong", "tests", "fixtures", "llama3", "hf")
T = 128

# name -> (model_type, head dim, rope_theta, max_position_embeddings, rope_scaling)
FREQUENCY_CASES = {
    "qwen2.5-7b-yarn": ("qwen2", 128, 1e6, 32768,
                        {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}),
    "yarn-without-original": ("llama", 64, 10000.0, 4096, {"rope_type": "yarn", "factor": 2.0}),
    "yarn-deepseek-mscale": ("llama", 64, 10000.0, 163840,
                             {"rope_type": "yarn", "factor": 40.0, "mscale": 0.707,
                              "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                              "beta_fast": 32.0, "beta_slow": 1.0}),
    "yarn-attention-factor-untruncated": ("llama", 64, 150000.0, 131072,
                                          {"rope_type": "yarn", "factor": 32.0,
                                           "original_max_position_embeddings": 4096,
                                           "attention_factor": 1.25, "truncate": False}),
    "linear": ("llama", 128, 10000.0, 16384, {"type": "linear", "factor": 8.0}),
    "llama3.1-8b": ("llama", 128, 500000.0, 131072,
                    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "plain": ("llama", 64, 10000.0, 2048, None),
}


def config(model_type, head_dim, theta, max_pos, rope_scaling, **shape):
    from transformers import LlamaConfig, Qwen2Config

    cls = Qwen2Config if model_type == "qwen2" else LlamaConfig
    heads = shape.pop("heads", 2)
    kw = dict(
        vocab_size=shape.pop("vocab_size", 16),
        hidden_size=heads * head_dim,
        intermediate_size=shape.pop("intermediate_size", 32),
        num_hidden_layers=shape.pop("layers", 1),
        num_attention_heads=heads,
        num_key_value_heads=1,
        max_position_embeddings=max_pos,
        rope_theta=theta,
        rope_scaling=rope_scaling,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    if model_type == "qwen2":
        kw["use_sliding_window"] = False
    cfg = cls(**kw, **shape)
    cfg._attn_implementation = "eager"
    return cfg


def frequencies():
    """transformers' inverse frequencies and cos/sin factor for each case."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cases = []
    for name, args in FREQUENCY_CASES.items():
        cfg = config(*args)
        kind = (cfg.rope_scaling or {}).get("rope_type", "default")
        inv_freq, scaling = ROPE_INIT_FUNCTIONS[kind](cfg, "cpu")
        cases.append({
            "name": name,
            "config": json.loads(cfg.to_json_string()),
            "inv_freq": [float(x) for x in inv_freq.float()],
            "attention_scaling": float(scaling),
        })
    return cases


def tiny_model(kind, vocab_size):
    """linear/'s Llama or yarn/'s Qwen2 (seeded), RMSNorm weights (and
    Qwen2's q/k/v biases) drawn away from their initial values."""
    import torch
    from transformers import AutoModelForCausalLM

    if kind == "linear":
        cfg = config("llama", 16, 10000.0, 256, {"rope_type": "linear", "factor": 4.0},
                     vocab_size=vocab_size, intermediate_size=64, layers=2,
                     rms_norm_eps=1e-5, initializer_range=0.2)
    else:
        cfg = config("qwen2", 16, 10000.0, 64,
                     {"rope_type": "yarn", "factor": 8.0,
                      "original_max_position_embeddings": 64, "beta_fast": 4.0},
                     vocab_size=vocab_size, intermediate_size=64, layers=2,
                     rms_norm_eps=1e-6, initializer_range=0.2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
            layer.post_attention_layernorm.weight.uniform_(0.5, 1.5)
            attn = layer.self_attn
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                if proj.bias is not None:
                    proj.bias.normal_(0.0, 0.5)
    return model


def main(llama_cpp, out):
    import torch

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "frequencies.json"), "w", encoding="utf-8") as f:
        json.dump(frequencies(), f, indent=1)
        f.write("\n")

    tok, ids = fixture_ids()
    tensors = {"input_ids": ids}
    for kind, pre in [("linear", "llama-bpe"), ("yarn", "qwen2")]:
        model = tiny_model(kind, len(tok))
        case = os.path.join(out, kind)
        os.makedirs(case, exist_ok=True)
        with tempfile.TemporaryDirectory() as hf_dir:
            model.save_pretrained(hf_dir, safe_serialization=True)
            tok.save_pretrained(hf_dir)
            shutil.copy(os.path.join(hf_dir, "config.json"), case)
            convert(llama_cpp, hf_dir, os.path.join(case, "model.gguf"), pre=pre,
                    outtype="f32", name=f"frugal-{kind}-tiny")
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float().contiguous()
        tensors[f"logits_{kind}"] = logits
        print(f"{kind}: logits spread {float(logits.max() - logits.min()):.2f}", file=sys.stderr)

    save_tensors(out, tensors, TEXT)


def fixture_ids():
    """`input_ids` [1, T]: TEXT through the Llama 3 fixture's tokenizer, and
    that tokenizer. scripts/qwen3_fixture.py uses them too."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    ids = tok(TEXT, return_tensors="pt").input_ids[:, :T].contiguous()
    assert ids.shape[1] == T
    return tok, ids


if __name__ == "__main__":
    cuda_stubs.ensure_path()
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
