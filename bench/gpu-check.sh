#!/usr/bin/env bash
# The whole GPU session in one device call: first the fused CUDA kernels
# against the CPU ones (`frugal bench kernels`, the check of
# crates/model/tests/cuda_fused.rs), then bench/gpu.sh, with rows using the
# fused kernels added when that check passed.
#
#   bench/gpu-check.sh [PYTHON]
#
# Needs target/cuda/frugal.gz from scripts/build-cuda.sh (carry it: ~19 MB).
# PYTHON as in gpu.sh.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
py=${1:-/opt/torch/.venv/bin/python}
# shellcheck source=bench/cuda-env.sh
. "$here/cuda-env.sh"
cuda_libs_of "$py"
bin=$(runnable_bin "$root/target/cuda/frugal.gz") || exit 1
echo "== fused kernels vs CPU" >&2
if "$bin" bench kernels --device cuda; then fused=1; else fused=0; fi
echo "== bench (fused rows: $fused)" >&2
FUSED=$fused bash "$here/gpu.sh" "$bin" "$py"
