# shellcheck shell=bash
# Sourced by bench/gpu.sh and bench/gpu-check.sh: what both need before running
# the CUDA binary on a lent machine.

# The paper's 124m preset (d 768, 12 layers, 12 heads, FFN 2048, vocab 50304,
# tied head) at batch 16 x 512: the anchor's shape. With --untied it is the
# anchor's 162 M model.
# shellcheck disable=SC2034  # used by the scripts that source this file
anchor_shape="--vocab 50304 --d-model 768 --layers 12 --heads 12 --ffn 2048 --batch 16 --seq 512"

# Puts the CUDA 13 libraries of PYTHON's pip `nvidia` packages (the torch venv's)
# on LD_LIBRARY_PATH, for frugal as for torch; a warning when PYTHON has none.
# `nvidia` is a namespace package (its __file__ is None): its folders are __path__.
cuda_libs_of() {
    local lib
    lib=$("$1" -c 'import os, nvidia; print(next(l for l in (os.path.join(p, "cu13", "lib") for p in nvidia.__path__) if os.path.isdir(l)))' 2>/dev/null) || lib=""
    if [ -n "$lib" ]; then
        export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    else
        echo "warning: no nvidia/cu13/lib among $1's packages: libcublas.so.13 and the other CUDA libraries must already be on LD_LIBRARY_PATH" >&2
    fi
}

# Prints a runnable path for BIN: BIN itself, or for the carried
# target/cuda/frugal.gz of scripts/build-cuda.sh, its unpacked copy in TMPDIR.
runnable_bin() {
    if [[ $1 == *.gz ]]; then
        local out=${TMPDIR:-/tmp}/frugal-cuda
        gunzip -c "$1" >"$out" && chmod +x "$out" && echo "$out"
    else
        echo "$1"
    fi
}

# Runs a command for at most RUN_TIMEOUT seconds (default 240). The CUDA kernels
# have not yet run on a card, and a hung kernel must not use up a whole device call.
# Exit status 124 means time ran out.
limited() {
    timeout --kill-after=10 "${RUN_TIMEOUT:-240}" "$@"
}
