#!/usr/bin/env python3
"""A tiny randomly initialised Qwen2 and its transformers logits, as the
fixture of crates/model/tests/qwen2_parity.rs.

    source .venv/bin/frugal-env      # scripts/setup-python-ref.sh
    python scripts/qwen2_parity_fixture.py crates/model/tests/fixtures/qwen2

Writes OUT/config.json and OUT/model.safetensors with
`Qwen2ForCausalLM.save_pretrained` (tied embedding, grouped-query attention,
RoPE theta 1e6, RMSNorm eps 1e-6 as in the released Qwen2 models), its q/k/v
biases drawn at random (transformers initialises them to zero, which would
not test them), and OUT/logits.safetensors:

    input_ids  i64 [2, 24]   (random ids, seeded)
    logits     f32 [2, 24, V] (eager attention, f32, eval mode)

with the transformers/torch versions in the metadata.
"""

import json
import os
import sys

import cuda_stubs  # scripts/cuda_stubs.py


def tiny_qwen2(vocab_size):
    """The fixture's model (seeded): random q/k/v biases, RMSNorm weights away
    from 1 so that they are tested too. scripts/qwen2_gguf_fixture.py uses it
    at another vocabulary."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        initializer_range=0.2,
        torch_dtype="float32",
    )
    cfg._attn_implementation = "eager"
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                assert proj.bias is not None
                proj.bias.normal_(0.0, 0.5)
            assert layer.self_attn.o_proj.bias is None
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
            layer.post_attention_layernorm.weight.uniform_(0.5, 1.5)
    return model


def main(out):
    import torch
    import transformers
    from safetensors.torch import save_file

    model = tiny_qwen2(128)
    cfg = model.config
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    ids = torch.randint(0, cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
    }
    save_file({"input_ids": ids, "logits": logits}, os.path.join(out, "logits.safetensors"), metadata=meta)
    # save_pretrained may add a generation config the test does not need.
    gen = os.path.join(out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    with open(os.path.join(out, "config.json")) as f:
        print(json.dumps(json.load(f), indent=1), file=sys.stderr)
    print("logits", tuple(logits.shape), "spread", float(logits.max() - logits.min()), file=sys.stderr)


if __name__ == "__main__":
    cuda_stubs.ensure_path()
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
