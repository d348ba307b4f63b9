"""PyInstaller runtime hook for exitlab's fuzzers (passed by build.sh with --runtime-hook).

The stream harness assembles guest programs with GNU as/ld at fuzz time, and the image that runs
the fuzzers has no binutils; build.sh ships them, with the libraries they load, in $OUT/binutils.
This runs first in every bundled fuzzer and puts that directory on PATH and LD_LIBRARY_PATH for
the child processes (the fuzzer's own process has already loaded its libraries)."""

import os
import sys

_DIR = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "binutils")
if os.path.isdir(_DIR):
    os.environ["PATH"] = _DIR + os.pathsep + os.environ.get("PATH", "")
    os.environ["LD_LIBRARY_PATH"] = _DIR + os.pathsep + os.environ.get("LD_LIBRARY_PATH", "")
