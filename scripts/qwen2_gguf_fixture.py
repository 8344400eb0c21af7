#!/usr/bin/env python3
"""A tiny Qwen2 GGUF made by llama.cpp's own converter, with what
transformers reads from it, as the fixture of
crates/prolong/tests/gguf_qwen2.rs.

    source .venv/bin/frugal-env      # scripts/setup-python-ref.sh (torch, transformers, gguf)
    python scripts/qwen2_gguf_fixture.py LLAMA_CPP crates/prolong/tests/fixtures/qwen2_gguf

LLAMA_CPP is a llama.cpp source tree with convert_hf_to_gguf.py, its
conversion/ package and gguf-py/, e.g. the one vendored in the sdist of
llama-cpp-python on PyPI:

    curl -sL "$(curl -s https://pypi.org/pypi/llama-cpp-python/0.3.36/json | \
        python3 -c 'import json,sys; print(json.load(sys.stdin)["urls"][0]["url"])')" | tar xz
    LLAMA_CPP=llama_cpp_python-0.3.36/vendor/llama.cpp

Steps, all in a temporary Hugging Face directory:

1. a byte-level BPE tokenizer with Qwen2's pipeline (NFC, Qwen2's split
   pattern, byte level without its own regex: transformers' Qwen2Converter),
   trained on scripts/bpe_corpus.md (a frozen copy of this repository's
   README) to 300 tokens plus Qwen2's three
   special tokens;
2. scripts/qwen2_parity_fixture.py's tiny random Qwen2ForCausalLM (tied
   embedding, grouped-query attention, RoPE theta 1e6, random q/k/v biases
   and RMSNorm weights) at that vocabulary;
3. llama.cpp's convert_hf_to_gguf.py to OUT/model.gguf with --outtype q8_0.
   Its table of known pre-tokenizers is keyed by a hash of a tokenizer's
   output, so it cannot know this tokenizer; it is told from the outside
   that the pre-tokenizer is "qwen2", which is what it is;
4. transformers loads OUT/model.gguf (model and tokenizer, gguf_file=) and
   writes OUT/expected.safetensors:

       input_ids  i64 [1, T]    the GGUF tokenizer's ids of TEXT below
       logits     f32 [1, T, V] eager attention, f32, eval mode

   and OUT/tokens.json: [{"text": ..., "ids": [...], "pieces": [...]}] for
   TEXT and PROBES (pieces: the pre-tokenizer's output), strings
   that tell Qwen2's pre-tokenizer from GPT-2's (digits one by one,
   contractions, newlines, accents that NFC composes, special tokens).

The script also prints how far the q8_0 GGUF's logits are from the f32
model's (quantisation), as a sanity check of the conversion.
"""

import json
import os
import sys
import tempfile

import cuda_stubs  # scripts/cuda_stubs.py
from qwen2_parity_fixture import tiny_qwen2

# The tokenizers' training text: this repository's README of 2026-12-07,
# frozen so that the fixtures regenerate byte-identical as the README changes.
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpe_corpus.md")
TEXT = "The 2024 ProLong paper's scorer: 12 layers, 3.5e-4 LR.\nIt doesn't matter.<|endoftext|>"
PROBES = [
    "1234567 apples",
    "they'll say it's FINE, won't they?",
    "line one\r\n\r\nline two\n\n  indented",
    "cafe\u0301 na\u0308ive \u00e9t\u00e9",
    "<|im_start|>user\nhi<|im_end|>",
    "tabs\tand   spaces   ",
]


def byte_level_bpe(split, corpus, normalizer=None, ignore_merges=False):
    """A byte-level BPE tokenizer as Qwen2's and Llama 3's are built: the
    `split` regex (matches isolated), then byte level without its own regex.
    Trained on `corpus` to 300 tokens. scripts/llama3_fixture.py uses it too."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE

    model = BPE(unk_token=None, fuse_unk=False, byte_fallback=False, ignore_merges=ignore_merges)
    tok = Tokenizer(model)
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator([corpus], trainer)
    return tok


def qwen2_tokenizer(corpus):
    """Step 1: Qwen2's tokenizer pipeline, trained on `corpus`."""
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    # transformers' Qwen2Converter builds this pipeline; written out here.
    split = (
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
    )
    tok = byte_level_bpe(split, corpus, normalizer=normalizers.NFC())
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": special[1:]})
    return fast


def convert(llama_cpp, hf_dir, outfile, pre="qwen2", outtype="q8_0", name="frugal-qwen2-tiny"):
    """Step 3: llama.cpp's converter, run in this process. The converter looks
    the pre-tokenizer up by a hash of the tokenizer's output; a tokenizer
    trained here is new to it, so it is told `pre`, the pipeline's name.
    scripts/llama3_fixture.py uses it for a Llama 3 vocabulary."""
    sys.path.insert(0, llama_cpp)
    sys.path.insert(1, os.path.join(llama_cpp, "gguf-py"))
    import conversion.base

    conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    import convert_hf_to_gguf

    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outfile", outfile, "--outtype", outtype,
                "--model-name", name]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv


def main(llama_cpp, out):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with open(CORPUS, encoding="utf-8") as f:
        corpus = f.read()
    os.makedirs(out, exist_ok=True)
    gguf_path = os.path.join(out, "model.gguf")
    with tempfile.TemporaryDirectory() as hf_dir:
        tok = qwen2_tokenizer(corpus)
        model = tiny_qwen2(len(tok))
        model.save_pretrained(hf_dir, safe_serialization=True)
        tok.save_pretrained(hf_dir)
        convert(llama_cpp, hf_dir, gguf_path)
        f32_ids = tok(TEXT, return_tensors="pt").input_ids
        with torch.no_grad():
            f32_logits = model(input_ids=f32_ids).logits.float()

    gtok = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")
    gmodel = AutoModelForCausalLM.from_pretrained(
        out, gguf_file="model.gguf", torch_dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ids = gtok(TEXT, return_tensors="pt").input_ids
    if not torch.equal(ids, f32_ids):
        sys.exit(f"the GGUF tokenizer's ids differ from the original's: {ids} vs {f32_ids}")
    with torch.no_grad():
        logits = gmodel(input_ids=ids).logits.float().contiguous()
    gap = float((logits - f32_logits).abs().max())
    print(f"q8_0 GGUF against the f32 model: max |dlogit| {gap:.3e}, "
          f"spread {float(logits.max() - logits.min()):.2f}", file=sys.stderr)
    save_expected(out, ids, logits, TEXT)
    for p in write_tokens(out, gtok, [TEXT] + PROBES):
        print(repr(p["text"]), p["ids"], file=sys.stderr)


def save_expected(out, ids, logits, text):
    """OUT/expected.safetensors: `ids` and `logits` of `text`."""
    save_tensors(out, {"input_ids": ids, "logits": logits}, text)


def save_tensors(out, tensors, text, extra=None):
    """OUT/expected.safetensors: `tensors`, with `text`, the versions and
    command that made them, and `extra` (a dict) if given.
    scripts/rope_scaling_fixture.py, scripts/qwen3_fixture.py and
    scripts/gguf_export_fixture.py use it too."""
    import torch
    import transformers
    from safetensors.torch import save_file

    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "text": text,
        "command": " ".join(sys.argv),
        **(extra or {}),
    }
    # One key: safetensors writes several in hash order, which changes from
    # run to run, and the file should regenerate byte-identical.
    save_file(tensors, os.path.join(out, "expected.safetensors"),
              metadata={"made_by": json.dumps(meta, ensure_ascii=False)})


def write_tokens(out, tok, texts):
    """OUT/tokens.json: `tok`'s ids of each text and its pre-tokenizer's
    pieces. With few merges most of a pre-tokenizer's splits do not change
    the ids, so the pieces are the sharper check of the pipeline."""
    backend = tok.backend_tokenizer

    def pieces(t):
        normal = backend.normalizer.normalize_str(t) if backend.normalizer else t
        return [p for p, _ in backend.pre_tokenizer.pre_tokenize_str(normal)]

    probes = [{"text": t, "ids": tok(t).input_ids, "pieces": pieces(t)} for t in texts]
    with open(os.path.join(out, "tokens.json"), "w", encoding="utf-8") as f:
        rows = ",\n".join(" " + json.dumps(p, ensure_ascii=False) for p in probes)
        f.write("[\n" + rows + "\n]\n")
    return probes


if __name__ == "__main__":
    cuda_stubs.ensure_path()
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
