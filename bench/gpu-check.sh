#!/usr/bin/env bash
# The whole GPU session in one device call: first the fused CUDA kernels
# against the CPU ones (`frugal bench kernels`, the check of
# crates/model/tests/cuda_fused.rs), then bench/gpu.sh (frugal against PyTorch:
# the issue's goal, so it comes before anything a cut-off call could lose),
# then the per-kernel profile of a training step (bench/gpu-profile.sh); the
# bench and the profile add rows with the fused kernels when that check passed,
# or when it passed without the one-op attention (then every fused row runs
# with FRUGAL_FLASH_ATTENTION=0, matmul attention, and says so).
#
#   bench/gpu-check.sh [PYTHON]
#
# Needs target/cuda/frugal.gz and target/cuda/libkernel_trace.so from
# scripts/build-cuda.sh (carry both: ~19 MB). PYTHON as in gpu.sh. The traces
# are kept in $OUT/profile when OUT is set (a device call's output folder), and
# everything the call prints in $OUT/gpu-check.log (a device call returns only
# the tail of its output). Each GPU process is stopped after RUN_TIMEOUT
# seconds (default 240; bench/cuda-env.sh): a hung kernel costs that, not the call.
set -uo pipefail
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/gpu-check.log") 2>&1
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
py=${1:-/opt/torch/.venv/bin/python}
# shellcheck source=bench/cuda-env.sh
. "$here/cuda-env.sh"
cuda_libs_of "$py"
bin=$(runnable_bin "$root/target/cuda/frugal.gz") || exit 1
echo "== fused kernels vs CPU" >&2
if limited "$bin" bench kernels --device cuda; then
    fused=1
else
    # The one-op attention is the most intricate kernel: when it fails, the
    # others still give fused rows with matmul attention, if they pass without
    # it (a new process: a failed kernel can leave the CUDA context unusable).
    echo "== fused kernels vs CPU, matmul attention" >&2
    if limited "$bin" bench kernels --device cuda --attention matmul; then
        fused=1
        export FRUGAL_FLASH_ATTENTION=0
    else
        fused=0
    fi
fi
echo "== bench (fused rows: $fused, one-op attention: ${FRUGAL_FLASH_ATTENTION:-1})" >&2
FUSED=$fused bash "$here/gpu.sh" "$bin" "$py"
echo "== profile (fused rows: $fused)" >&2
OUT=${OUT:+$OUT/profile} FUSED=$fused bash "$here/gpu-profile.sh" "$bin" "$py"
