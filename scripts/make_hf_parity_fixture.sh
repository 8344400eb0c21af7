#!/usr/bin/env bash
# Regenerates crates/model/tests/fixtures/hf_parity/: a small frugal model
# trained on real text (Hamlet), exported with `frugal export hf`, and the
# logits Hugging Face transformers computes for it on real text.
#
#   scripts/make_hf_parity_fixture.sh [FRUGAL_BIN] [VENV]
#
# FRUGAL_BIN defaults to target/release/frugal; VENV to .venv (made by
# scripts/setup-python-ref.sh). The Rust test crates/model/tests/hf_parity.rs
# checks frugal's logits against these within 1e-4.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/frugal}
venv=${2:-.venv}
out=crates/model/tests/fixtures/hf_parity
text=crates/data/tests/fixtures/hamlet_acts_1-3.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Two documents (acts I-II and the rest) so the split has both sides.
mkdir -p "$work/docs"
n=$(wc -l < "$text")
head -n $((n * 2 / 3)) "$text" > "$work/docs/a.txt"
tail -n +$((n * 2 / 3 + 1)) "$text" > "$work/docs/b.txt"
"$bin" --threads 2 tokenizer train --input "$work/docs" --vocab 512 --out "$work/tok.json"
"$bin" --threads 2 data prepare --input "$work/docs" --tokenizer "$work/tok.json" --out "$work/ds" --val-fraction 0.5 >/dev/null
cat > "$work/cfg.toml" <<TOML
[model]
preset = "nano"
n_kv_heads = 2            # exercise grouped-query attention
[data]
dataset = "$work/ds"
[train]
seq_len = 64
batch_size = 8
steps = 40
lr = 3e-3
[schedule]
kind = "constant"
warmup_steps = 5
[checkpoint]
every = 40
TOML
"$bin" --threads 2 train --config "$work/cfg.toml" --out "$work/run" --quiet
"$bin" export hf --checkpoint "$work/run/checkpoints/step-0000040" --out "$work/hf"
# Text the model never trained on: the end of the fixture file.
tail -c 4000 "$text" > "$work/probe.txt"
mkdir -p "$out"
"$venv/bin/python" scripts/hf_parity_fixture.py --hf-dir "$work/hf" --text "$work/probe.txt" \
    --max-tokens 64 --out "$out/logits.safetensors"
cp "$work/hf/config.json" "$work/hf/model.safetensors" "$out/"
echo "wrote $out"
