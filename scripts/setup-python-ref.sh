#!/usr/bin/env bash
# Build a Python virtual environment that runs the PyTorch / transformers
# references (bench/torch_llama.py, scripts/hf_parity_fixture.py, ...) on a
# CPU-only machine.
#
#   scripts/setup-python-ref.sh [VENV]      # default: <repo>/.venv
#   source VENV/bin/frugal-env              # then use VENV/bin/python
#
# Recipe (docs/data-and-gpu.md, "Running the PyTorch references on the CPU
# machine"): the PyPI build of torch 2.11.0 is a CUDA 13.0 build.  It is
# installed with --no-deps together with the small CUDA runtime wheels it
# loads at import time, and the big CUDA libraries it links against (cuDNN,
# cuFFT, cuFile, cuSPARSE, cuSPARSELt, NCCL, NVSHMEM, several GB in all) are
# replaced by empty stub shared libraries: every symbol torch needs from them
# is defined as an empty function, with the right soname and, where torch
# references versioned symbols, a version script.  Nothing in them is ever
# called on the CPU path.
#
# The script is idempotent: re-running it re-uses the venv, pip skips what is
# installed already and the stubs are rebuilt only when missing.
# Environment knobs: PYTHON (interpreter used to create the venv, default
# python3), FORCE_STUBS=1 (rebuild the stub libraries).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"

TORCH_VERSION=2.11.0
TRANSFORMERS_VERSION=4.57.6
GGUF_VERSION=0.19.0
ACCELERATE_VERSION=1.12.0
# The CUDA runtime wheels torch 2.11.0 loads at import (all CUDA 13.0).
CUDA_RUNTIME_WHEELS=(
  nvidia-cublas==13.0.0.19
  nvidia-cuda-cupti==13.0.85
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-curand==10.4.0.35
)
# torch's pure-Python dependencies (from its METADATA, CUDA/triton ones left out).
TORCH_PY_DEPS=(
  filelock
  "typing-extensions>=4.10.0"
  "setuptools<82"
  "sympy>=1.13.3"
  mpmath
  "networkx>=2.5.1"
  jinja2
  MarkupSafe
  "fsspec>=0.8.5"
)

log() { printf '[setup-python-ref] %s\n' "$*" >&2; }

for tool in gcc nm; do
  command -v "$tool" >/dev/null || { log "missing '$tool' (apt-get install gcc binutils)"; exit 1; }
done

"$PYTHON" - <<'EOF' || { log "Python >= 3.10 is required (torch 2.11)"; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
EOF

# ---------------------------------------------------------------- venv ----
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
VENV="$(cd "$VENV" && pwd)"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check)

SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# ---------------------------------------------------------------- torch ---
# --no-deps everywhere torch is involved: its declared dependencies include
# cuDNN, NCCL, cuSPARSELt, NVSHMEM and triton wheels (several GB) that the
# CPU path does not need.
log "installing torch==$TORCH_VERSION (--no-deps) and the CUDA runtime wheels"
"${PIP[@]}" --no-deps "torch==$TORCH_VERSION" "${CUDA_RUNTIME_WHEELS[@]}"
log "installing torch's pure-Python dependencies"
"${PIP[@]}" "${TORCH_PY_DEPS[@]}"

CU13_LIB="$SITE/nvidia/cu13/lib"
TORCH_LIB="$SITE/torch/lib"
[ -d "$CU13_LIB" ] || { log "expected $CU13_LIB after installing the CUDA wheels"; exit 1; }

# ---------------------------------------------------------------- stubs ---
STUB_DIR="$VENV/cuda-stubs"
STUB_LIBS=(libcudnn.so.9 libcufft.so.12 libcufile.so.0 libcusparse.so.12
           libcusparseLt.so.0 libnccl.so.2 libnvshmem_host.so.3)
need_stubs=0
for lib in "${STUB_LIBS[@]}"; do
  [ -f "$STUB_DIR/$lib" ] || need_stubs=1
done
# Rebuild when torch changed: the symbol lists come from its libraries.
STAMP="torch==$TORCH_VERSION $(stat -c %s "$TORCH_LIB/libtorch_cuda.so" 2>/dev/null)"
[ "$(cat "$STUB_DIR/.stamp" 2>/dev/null)" = "$STAMP" ] || need_stubs=1
[ "${FORCE_STUBS:-0}" = 1 ] && need_stubs=1

if [ "$need_stubs" = 1 ]; then
  log "building stub libraries in $STUB_DIR"
  rm -rf "$STUB_DIR"
  mkdir -p "$STUB_DIR/src"
  # Every undefined dynamic symbol of torch's libraries, as "name[@version]".
  for so in "$TORCH_LIB"/*.so*; do
    nm -D --undefined-only "$so" | awk '{print $NF}'
  done | sort -u > "$STUB_DIR/src/undefined.txt"

  # Assign each symbol to a stub library: by its version tag when it has one
  # (e.g. cudnnCreate@libcudnn.so.9), else by its name prefix.  Write one C
  # file of empty functions and, for libraries whose symbols torch references
  # with a version, a version script that defines that version node.
  "$VPY" - "$STUB_DIR/src" <<'EOF'
import collections, os, re, sys

out = sys.argv[1]
# soname -> (version tags that belong to it, name regex for unversioned refs)
LIBS = {
    "libcudnn.so.9":        ({"libcudnn.so.9"}, r"cudnn"),
    "libcufft.so.12":       ({"libcufft.so.12"}, r"cufft"),
    "libcufile.so.0":       (set(), r"cuFile"),
    "libcusparse.so.12":    ({"libcusparse.so.12"}, r"cusparse(?!Lt)"),
    "libcusparseLt.so.0":   (set(), r"cusparseLt"),
    "libnccl.so.2":         (set(), r"p?nccl"),
    "libnvshmem_host.so.3": ({"NVSHMEM"}, r"nvshmem"),
}
syms = collections.defaultdict(set)     # soname -> symbol names
versions = collections.defaultdict(set)  # soname -> version tags referenced
for line in open(os.path.join(out, "undefined.txt")):
    ref = line.strip()
    if not ref:
        continue
    name, _, ver = ref.partition("@")
    ver = ver.lstrip("@")
    for soname, (tags, pattern) in LIBS.items():
        if (ver and ver in tags) or (not ver and re.match(pattern, name)):
            syms[soname].add(name)
            if ver:
                versions[soname].add(ver)
            break
for soname in LIBS:
    base = soname.split(".so")[0]
    names = sorted(syms[soname])
    with open(os.path.join(out, base + ".c"), "w") as f:
        f.write("/* Empty stub of %s for running a CUDA build of torch on the CPU.\n"
                "   Generated by scripts/setup-python-ref.sh; never called. */\n" % soname)
        for n in names:
            f.write("void %s(void) {}\n" % n)
        if not names:
            f.write("void frugal_stub_%s(void) {}\n" % re.sub(r"\W", "_", base))
    vers = sorted(versions[soname])
    if vers:
        with open(os.path.join(out, base + ".map"), "w") as f:
            # First node gets every symbol; extra nodes (if torch referenced
            # more than one tag) just need to exist for the version check.
            f.write("%s {\n  global:\n" % vers[0])
            for n in names:
                f.write("    %s;\n" % n)
            f.write("  local: *;\n};\n")
            for v in vers[1:]:
                f.write("%s {\n} %s;\n" % (v, vers[0]))
    print("%-22s %4d symbols%s" % (soname, len(names),
          (" version " + ",".join(vers)) if vers else ""), file=sys.stderr)
EOF

  for lib in "${STUB_LIBS[@]}"; do
    base="${lib%%.so*}"
    extra=()
    [ -f "$STUB_DIR/src/$base.map" ] && extra=(-Wl,--version-script="$STUB_DIR/src/$base.map")
    gcc -shared -fPIC -O0 -o "$STUB_DIR/$lib" "$STUB_DIR/src/$base.c" \
        -Wl,-soname,"$lib" "${extra[@]}"
  done
  echo "$STAMP" > "$STUB_DIR/.stamp"
fi

# ----------------------------------------------------------- frugal-env ---
ENV_FILE="$VENV/bin/frugal-env"
log "writing $ENV_FILE"
cat > "$ENV_FILE" <<EOF
# Source this file (". $ENV_FILE") to run the PyTorch references on a
# CPU-only machine.  Written by scripts/setup-python-ref.sh.
export FRUGAL_PY_VENV="$VENV"
export LD_LIBRARY_PATH="$STUB_DIR:$CU13_LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1
# Two vCPUs: default to 2 threads; a passive OpenMP wait policy stops busy
# waiting threads from stealing the only other core (docs/data-and-gpu.md).
export OMP_NUM_THREADS="\${OMP_NUM_THREADS:-2}"
export OMP_WAIT_POLICY="\${OMP_WAIT_POLICY:-PASSIVE}"
case ":\$PATH:" in *":$VENV/bin:"*) ;; *) export PATH="$VENV/bin:\$PATH" ;; esac
EOF

# ----------------------------------------------------- transformers etc ---
# None of these depends on torch except accelerate, which goes in with
# --no-deps (pip would otherwise try to complete torch's CUDA dependencies);
# its own dependencies are listed here instead.
log "installing transformers==$TRANSFORMERS_VERSION, tokenizers, safetensors, gguf, numpy, scipy, accelerate"
"${PIP[@]}" "transformers==$TRANSFORMERS_VERSION" tokenizers safetensors \
  "gguf==$GGUF_VERSION" numpy scipy psutil pyyaml packaging huggingface-hub
"${PIP[@]}" --no-deps "accelerate==$ACCELERATE_VERSION"

# ---------------------------------------------------------------- smoke ---
log "smoke test"
# shellcheck disable=SC1090
. "$ENV_FILE"
"$VPY" -c "import torch, transformers; print(torch.__version__, torch.randn(2,2).sum())"
"$VPY" -c "import accelerate, tokenizers, safetensors, gguf, numpy, scipy; print('transformers', __import__('transformers').__version__, 'accelerate', accelerate.__version__, 'gguf ok')"
log "done: source $ENV_FILE"
