"""The CPU machine's torch is a CUDA build whose large CUDA libraries are
replaced by stubs (scripts/setup-python-ref.sh); they must be on
LD_LIBRARY_PATH before the process starts. `ensure_path()` re-executes the
script with them there, so the Python scripts of this repository also work
without sourcing VENV/bin/frugal-env first. A no-op elsewhere (a GPU machine,
a torch without the stubs)."""

import os
import sys


def ensure_path():
    """Re-exec with the venv's CUDA stub libraries on LD_LIBRARY_PATH."""
    stubs = os.path.join(sys.prefix, "cuda-stubs")
    if not os.path.isdir(stubs) or os.environ.get("_FRUGAL_REEXEC"):
        return
    paths = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    if stubs in paths:
        return
    import sysconfig

    cu13 = os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "cu13", "lib")
    os.environ["LD_LIBRARY_PATH"] = ":".join([stubs, cu13] + [p for p in paths if p])
    os.environ["_FRUGAL_REEXEC"] = "1"
    os.execv(sys.executable, [sys.executable] + sys.argv)
