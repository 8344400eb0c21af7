#!/usr/bin/env bash
# One prepared device call: frugal's training step (f32 and bf16) beside the
# PyTorch reference of the same model (bench/torch_llama.py: eager bf16 autocast
# and torch.compile bf16), same config, batch and data, on one GPU, at the
# 124m preset (tied head) and the anchor's 162 M model (untied). Prints one
# JSON line per run and a markdown table of tokens/s, MFU and ratios.
#
#   bench/gpu.sh FRUGAL_CUDA_BIN [PYTHON]
#
# FRUGAL_CUDA_BIN: a binary from scripts/build-cuda.sh, or its target/cuda/frugal.gz
# (what a device call can carry). PYTHON: a python with
# torch (default /opt/torch/.venv/bin/python, the lent H200 machines' venv);
# its site-packages/nvidia/cu13/lib goes on LD_LIBRARY_PATH for frugal too.
# STEPS (10) timed steps after WARMUP (3); PEAK_TFLOPS (795.6: the bf16 cuBLAS
# matmul rate candle reached on the H200, the convention of the 46 % MFU
# anchor in ../shared/docs/data-and-gpu.md); ONLY=frugal|torch runs one side;
# FUSED=1 adds frugal bf16 with the CUDA fused kernels (and, at the untied
# shape, bf16 fused with matmul attention instead of the one-op attention,
# f32 fused, and bf16 fused with candle's backward instead of the tape); with
# FRUGAL_FLASH_ATTENTION=0 in the environment (bench/gpu-check.sh sets it when
# only the one-op attention failed its check) every fused row uses matmul
# attention and candle's backward, says so, and the two rows that would
# repeat another are left out. At
# the untied shape one more row runs the best bf16 configuration with
# FRUGAL_CUDA_DRIVER_DEFAULTS=1 (the memory pool and event settings undone).
# DEVICE (cuda) and SHAPE (bench/cuda-env.sh's anchor shape) exist for a dry
# run of the plumbing on a CPU machine before device time is spent on it, e.g.
#   DEVICE=cpu SHAPE="--vocab 512 --d-model 64 --layers 2 --heads 4 --ffn 128 --batch 2 --seq 32" \
#       STEPS=2 WARMUP=1 bench/gpu.sh target/release/frugal .venv/bin/python
set -euo pipefail
bin=${1:?usage: bench/gpu.sh FRUGAL_CUDA_BIN [PYTHON]}
py=${2:-/opt/torch/.venv/bin/python}
steps=${STEPS:-10}
warmup=${WARMUP:-3}
only=${ONLY:-}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/cuda-env.sh
. "$here/cuda-env.sh"
bin=$(runnable_bin "$bin")
cuda_libs_of "$py"
device=${DEVICE:-cuda}
[ "$device" = cpu ] || nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
out=$(mktemp)

shape=${SHAPE:-$anchor_shape}  # bench/cuda-env.sh
one_op=${FRUGAL_FLASH_ATTENTION:-1}
fused_tag=" fused"
[ "$one_op" = 0 ] && fused_tag=" fused, matmul attention"
run() {  # label, command...
    local label=$1
    shift
    echo "== $label" >&2
    if line=$(limited "$@" | tail -1); then
        echo "{\"label\": \"$label\", \"run\": $line}" | tee -a "$out"
    else
        echo "{\"label\": \"$label\", \"run\": null}" | tee -a "$out"
    fi
}
# Each shape twice: the 124m preset (tied head) and the anchor's 162 M model
# (the same shape, untied head). FUSED=1 adds frugal rows with the CUDA fused
# kernels (FRUGAL_CUDA_FUSED=1; run tests/cuda_fused.rs on the card first).
for head in tied untied; do
    # The options every row of this head shares; only the dtype and the
    # environment differ between rows.
    # shellcheck disable=SC2206  # $shape is a list of options
    opts=($shape --steps "$steps" --warmup "$warmup" --device "$device")
    [ "$head" = untied ] && opts+=(--untied)
    frugal=("$bin" bench train "${opts[@]}")
    if [ "$only" != torch ]; then
        run "$head: frugal f32" "${frugal[@]}" --dtype f32
        run "$head: frugal bf16" "${frugal[@]}" --dtype bf16
        if [ "${FUSED:-0}" = 1 ]; then
            run "$head: frugal bf16$fused_tag" env FRUGAL_CUDA_FUSED=1 "${frugal[@]}" --dtype bf16
            if [ "$head" = untied ]; then
                # The one-op attention (tensor cores in bf16) against matmul +
                # fused softmax + matmul, and the backward through candle's
                # GradStore instead of the tape (which needs the one-op
                # attention): both are the row above when it is off.
                if [ "$one_op" != 0 ]; then
                    run "$head: frugal bf16 fused, matmul attention" env FRUGAL_CUDA_FUSED=1 FRUGAL_FLASH_ATTENTION=0 "${frugal[@]}" --dtype bf16
                    run "$head: frugal bf16 fused, candle backward" env FRUGAL_CUDA_FUSED=1 FRUGAL_TAPE=0 "${frugal[@]}" --dtype bf16
                fi
                # The f32 one-op attention is the SIMT kernel.
                run "$head: frugal f32$fused_tag" env FRUGAL_CUDA_FUSED=1 "${frugal[@]}" --dtype f32
            fi
        fi
        if [ "$head" = untied ]; then
            # The best bf16 row again with the driver's memory-pool release
            # threshold and cudarc's per-allocation events left at their
            # defaults (crates/model/src/cuda_device.rs).
            tag=""
            [ "${FUSED:-0}" = 1 ] && tag=$fused_tag
            run "$head: frugal bf16$tag, driver defaults" env FRUGAL_CUDA_FUSED="${FUSED:-0}" FRUGAL_CUDA_DRIVER_DEFAULTS=1 "${frugal[@]}" --dtype bf16
        fi
    fi
    if [ "$only" != frugal ]; then
        run "$head: torch eager bf16" "$py" "$here/torch_llama.py" "${opts[@]}" --dtype bf16
        run "$head: torch.compile bf16" "$py" "$here/torch_llama.py" "${opts[@]}" --dtype bf16 --compile
    fi
done

# shellcheck disable=SC2086  # $shape is a list of options
python3 - "$out" "${PEAK_TFLOPS:-795.6}" $shape <<'EOF'
import argparse, json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = float(sys.argv[2]) * 1e12
shape = argparse.ArgumentParser()
for name in ("vocab", "d-model", "layers", "ffn", "seq"):
    shape.add_argument("--" + name, type=int, required=True)
s, _ = shape.parse_known_args(sys.argv[3:])
# Matmul FLOPs per trained token (PaLM's MFU convention): 6 x matmul
# parameters (the layers' q, k, v, o and the 3 FFN matrices, plus the
# output head) + 12 x layers x seq x d for the attention products.
# (Multi-head attention: --kv-heads is not part of these shapes.)
d, L, f, V, T = s.d_model, s.layers, s.ffn, s.vocab, s.seq
flops = 6 * (L * (4 * d * d + 3 * d * f) + V * d) + 12 * L * T * d
ref = {r["label"]: r["run"]["tokens_per_s"] for r in rows if r["run"]}
# The untied head adds parameters, not matmul FLOPs: the same count holds.
print(f"\n| run | tokens/s | MFU (peak {peak / 1e12:.1f} TFLOP/s) | vs torch eager bf16 | vs torch.compile |")
print("| --- | ---: | ---: | ---: | ---: |")
for r in rows:
    if not r["run"]:
        print(f"| {r['label']} | failed | | | |")
        continue
    tps = r["run"]["tokens_per_s"]
    head = r["label"].split(":")[0]
    ratio = lambda k: f"{tps / ref[k]:.2f}x" if k in ref else "-"
    print(f"| {r['label']} | {tps:,.0f} | {100 * tps * flops / peak:.1f} % | "
          f"{ratio(head + ': torch eager bf16')} | {ratio(head + ': torch.compile bf16')} |")
EOF
rm -f "$out"
