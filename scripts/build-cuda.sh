#!/usr/bin/env bash
# Builds frugal with `--features cuda` on a machine with no GPU and no CUDA
# install, from pinned PyPI CUDA 13.0 wheels (newer PTX than the 580 driver
# of the lent H200 machines supports would not load).
#
#   scripts/build-cuda.sh [EXTRA CARGO ARGS, e.g. --features sd15]
#
# With CUDA_CHECK_ONLY=1 it runs `cargo check --all-targets` with the same
# toolkit instead (minutes, not most of an hour): the way to confirm on a CPU
# machine that the `cuda` feature still compiles after a change to it.
#
# Environment: CUDA_ROOT (where the toolkit is unpacked; default .cuda),
# CUDA_TARGET_DIR (cargo's target dir; default target/cuda, so the CPU build in
# target/ is left alone), CUDA_COMPUTE_CAP (default 90: H100/H200).
# Output: $CUDA_TARGET_DIR/release/frugal, stripped, its gzip frugal.gz, and
# libkernel_trace.so (bench/cupti/kernel_trace.c, the CUPTI kernel tracer of
# bench/gpu-profile.sh). On the GPU machine run it
# with LD_LIBRARY_PATH pointing at a directory holding libcublas.so.13,
# libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13 and libcudart.so.13
# (e.g. a PyTorch venv's site-packages/nvidia/cu13/lib, or $CUDA_ROOT/lib).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(realpath -m "${CUDA_ROOT:-.cuda}")
target=${CUDA_TARGET_DIR:-target/cuda}
wheels=(
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.0.19
    nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
)

if [ ! -x "$root/bin/nvcc" ]; then
    echo "== fetching the CUDA 13.0 toolkit wheels into $root" >&2
    mkdir -p "$root/wheels"
    # The wheels are py3-none-manylinux_x86_64: any linux x86_64 python fetches them.
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$root/wheels" "${wheels[@]}"
    # Every wheel holds nvidia/cu13/{bin,include,lib,nvvm,...}: one tree.
    for w in "$root"/wheels/*.whl; do
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
            "$w" "$root/unpacked"
    done
    cp -a "$root/unpacked/nvidia/cu13/." "$root/"
    rm -rf "$root/unpacked"
    chmod +x "$root"/bin/* "$root"/nvvm/bin/* 2>/dev/null || true
fi

# CUPTI's headers and library, for the kernel tracer (fetched on their own so
# that a toolkit unpacked by an older version of this script gains them).
cupti_wheel=nvidia-cuda-cupti==13.0.85
if [ ! -e "$root/include/cupti.h" ]; then
    echo "== fetching $cupti_wheel into $root" >&2
    mkdir -p "$root/wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$root/wheels" "$cupti_wheel"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
        "$root"/wheels/nvidia_cuda_cupti-*.whl "$root/unpacked"
    cp -a "$root/unpacked/nvidia/cu13/." "$root/"
    rm -rf "$root/unpacked"
fi

# The linker wants unversioned names (-lcublas finds libcublas.so).
for f in "$root"/lib/lib*.so.*; do
    base=${f%%.so.*}.so
    [ -e "$base" ] || ln -s "$(basename "$f")" "$base"
done

# No driver here: link against a stub libcuda.so.1 that defines every driver
# function cudarc may reference; the real driver replaces it at run time.
stub="$root/stub/libcuda.so"
if [ ! -e "$stub" ]; then
    ver=$(awk '$0 == "name = \"cudarc\"" {getline; gsub(/"/, "", $3); print $3}' Cargo.lock)
    cargo fetch --locked
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$ver" | head -1)
    mkdir -p "$root/stub"
    grep -ho 'pub unsafe fn cu[A-Za-z0-9_]*' "$cudarc"/src/driver/sys/mod.rs | sort -u |
        awk '{print "void " $4 "(void) {}"}' >"$root/stub/libcuda.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub" "$root/stub/libcuda.c"
fi

export CUDA_HOME=$root CUDA_PATH=$root CUDA_ROOT=$root
export PATH=$root/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH=$root/stub:$root/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$root/stub -L native=$root/lib"
nvcc --version | tail -2 >&2
if [ "${CUDA_CHECK_ONLY:-0}" = 1 ]; then
    exec cargo check --locked -p frugal -p frugal-model -p frugal-train -p frugal-pcm --all-targets --features cuda --target-dir "$target" "$@"
fi
cargo build --release --locked -p frugal --features cuda --target-dir "$target" "$@"
strip "$target/release/frugal"
# A device call carries at most 64 MiB and the stripped binary is ~73 MB;
# gzip brings it to ~19 MB (bench/gpu.sh unpacks a .gz itself).
gzip -9 -c "$target/release/frugal" >"$target/frugal.gz"
cc -O2 -Wall -Wextra -Werror -shared -fPIC -I"$root/include" bench/cupti/kernel_trace.c \
    -L"$root/lib" -lcupti -o "$target/libkernel_trace.so"
ls -la "$target/release/frugal" "$target/frugal.gz" "$target/libkernel_trace.so"
