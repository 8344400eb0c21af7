#!/usr/bin/env python3
"""Meta's own Llama 3 tokenizer (tiktoken) on a set of texts, as the fixture of
crates/prolong/tests/llama3_vocab.rs, which checks that frugal tokenizes a
Llama 3 GGUF vocabulary (`tokenizer.ggml.pre = llama-bpe`) the same way.

    source .venv/bin/frugal-env && pip install tiktoken==0.14.0
    pip download --no-deps llama-models==0.3.0 -d /tmp/lm && unzip -q /tmp/lm/*.whl -d /tmp/lm/x
    python scripts/llama3_vocab_fixture.py /tmp/lm/x crates/prolong/tests/fixtures/llama3_vocab.json

LLAMA_MODELS is an unpacked llama-models 0.3.0 wheel (PyPI), whose
`llama_models/llama3/tokenizer.py` and `tokenizer.model` are Meta's
tokenizer and its 128,000 BPE ranks; `frugal data fetch llama3-tokenizer`
caches the same `tokenizer.model` for the test. The texts: the probes of
scripts/qwen2_gguf_fixture.py and scripts/llama3_fixture.py, three passages
of scripts/bpe_corpus.md (a frozen copy of the README: prose, commands,
tables, code), and some non-English text, code and special tokens. Special
tokens in the text are encoded as special tokens (`allowed_special="all"`),
as frugal's GGUF tokenizer treats control tokens; no BOS/EOS added.

Writes OUT: {"tokenizer": ..., "texts": [{"text": ..., "ids": [...]}, ...]}, a text per line.
"""

import json
import os
import sys
from pathlib import Path

from llama3_fixture import LLAMA3_PROBES
from qwen2_gguf_fixture import PROBES

HERE = os.path.dirname(os.path.abspath(__file__))
# Three passages of the frozen README copy (start, length in characters).
PASSAGES = [(0, 3000), (6000, 3000), (12000, 3000)]
OTHER = [
    "Die Straße ist 1.234,5 km lang; naïve Übergrößen kosten 99,99 €.",
    "长上下文训练需要长距离依赖的数据。 東京は2024年に。",
    "Ценность данных — в их зависимостях: 12345678 токенов.",
    "emoji 🦀🔥 and\u00a0non-breaking\u2003spaces\t\ttabs\r\n",
    "<|begin_of_text|>Hello<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi",
    "x = f(a_1, b2) ** 3 // 7  # comment's end\n    return {'k': [1, 22, 333, 4444]}",
]


def main(llama_models, out):
    import tiktoken  # here, so that other fixture scripts can import the texts alone

    sys.path.insert(0, llama_models)
    from llama_models.llama3.tokenizer import Tokenizer

    tok = Tokenizer(Path(llama_models) / "llama_models" / "llama3" / "tokenizer.model")
    with open(os.path.join(HERE, "bpe_corpus.md"), encoding="utf-8") as f:
        corpus = f.read()
    texts = list(PROBES) + list(LLAMA3_PROBES) + OTHER
    texts += [corpus[start : start + n] for start, n in PASSAGES]
    rows = [
        {"text": t, "ids": tok.encode(t, bos=False, eos=False, allowed_special="all")}
        for t in texts
    ]
    made_by = f"llama-models 0.3.0 llama_models/llama3/tokenizer.py, tiktoken {tiktoken.__version__}"
    write_fixture(out, made_by, rows)


def write_fixture(out, made_by, rows):
    """The fixture file: who made the ids, then one text per line."""
    with open(out, "w", encoding="utf-8") as f:
        f.write('{"tokenizer": ' + json.dumps(made_by) + ',\n "texts": [\n')
        f.write(",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows))
        f.write("\n]}\n")
    print(f"{len(rows)} texts, {sum(len(r['ids']) for r in rows)} ids", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
