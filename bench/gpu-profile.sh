#!/usr/bin/env bash
# Where a frugal training step spends its GPU time, per kernel: the profile that
# decides which fused kernel comes first. frugal runs unchanged under
# bench/cupti/kernel_trace.c (a CUPTI activity tracer the CUDA driver injects,
# as Nsight Systems does); each dtype is run twice, with 2 and 6 timed steps
# after the same warm-up, and bench/kernel_profile.py divides the difference by
# 4, so initialisation and warm-up cancel out.
#
#   bench/gpu-profile.sh FRUGAL_CUDA_BIN [PYTHON]
#
# FRUGAL_CUDA_BIN and PYTHON as in gpu.sh (PYTHON's pip CUDA libraries, which
# include libcupti.so.13, go on LD_LIBRARY_PATH). TRACE_LIB: the tracer
# (default target/cuda/libkernel_trace.so from scripts/build-cuda.sh; carry
# it with the binary). DTYPES (bf16 f32); FUSED=1 adds bf16 with the CUDA
# fused kernels; OUT: where the traces and bench lines are kept (default: a
# temporary directory). Shape: the anchor's 162 M model at batch 16 x 512.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/cuda-env.sh
. "$here/cuda-env.sh"
bin=$(runnable_bin "${1:?usage: bench/gpu-profile.sh FRUGAL_CUDA_BIN [PYTHON]}") || exit 1
cuda_libs_of "${2:-/opt/torch/.venv/bin/python}"
trace=${TRACE_LIB:-$root/target/cuda/libkernel_trace.so}
[ -f "$trace" ] || { echo "no tracer at $trace: scripts/build-cuda.sh builds it" >&2; exit 1; }
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
shape="$anchor_shape --untied"  # bench/cuda-env.sh: the anchor's 162 M model
profile() {  # label, dtype, env assignments...
    local label=$1 dtype=$2
    shift 2
    echo "== profile: $label" >&2
    for steps in 2 6; do
        # shellcheck disable=SC2086  # $shape is a list of options
        if ! limited env "$@" CUDA_INJECTION64_PATH="$trace" KERNEL_TRACE_OUT="$out/trace-$label-$steps.csv" \
            "$bin" bench train $shape --warmup 2 --steps "$steps" --device cuda --dtype "$dtype" \
            >"$out/bench-$label-$steps.json"; then
            echo "profile $label: the bench failed" >&2
            return 1
        fi
    done
    echo "### $label"
    python3 "$here/kernel_profile.py" "$out/trace-$label-2.csv" "$out/trace-$label-6.csv" 4 \
        "$out/bench-$label-6.json"
}
status=0
for dtype in ${DTYPES:-bf16 f32}; do
    profile "$dtype" "$dtype" || status=1
done
if [ "${FUSED:-0}" = 1 ]; then
    # bench/gpu-check.sh exports FRUGAL_FLASH_ATTENTION=0 when only the
    # one-op attention failed its check; the label says so.
    label=bf16-fused
    [ "${FRUGAL_FLASH_ATTENTION:-1}" = 0 ] && label=bf16-fused-matmul-attention
    profile "$label" bf16 FRUGAL_CUDA_FUSED=1 || status=1
fi
exit $status
