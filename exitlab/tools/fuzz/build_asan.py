"""Build the C extension with ASan + UBSan into build/fuzz-asan/ for the atheris harness.

The sources and the cdef are fastpath/_build.py's; only the flags differ. CPython itself is not
instrumented, so the sanitizer runtime must be preloaded (DESIGN.md, "Building the C part"):

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \\
    ASAN_OPTIONS=detect_leaks=0 python -m exitlab.tools.fuzz.atheris_target --asan CORPUS -atheris_runs=N
"""

from __future__ import annotations

import sys
from pathlib import Path

from cffi import FFI

SAN_FLAGS = [
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
]


def build(out: Path = Path("build/fuzz-asan")) -> Path:
    import capstone
    import unicorn

    from fastpath import _build as b

    uc_dir = Path(unicorn.__file__).parent
    cs_dir = Path(capstone.__file__).parent
    ffi = FFI()
    ffi.cdef(b.CDEF)
    ffi.set_source(
        "fastpath._exitlab_c",
        '#include "paths.h"\n#include "insn_subset.h"\n#include "replay.h"\n#include "live.h"\n',
        sources=[str(b.CSRC / s) for s in b.SOURCES],
        include_dirs=[str(b.CSRC), str(uc_dir / "include"), str(cs_dir / "include")],
        extra_compile_args=[f for f in b.CFLAGS if not f.startswith("-O")] + SAN_FLAGS,
        extra_link_args=["-fsanitize=address,undefined"],
        extra_objects=[str(uc_dir / "lib" / "libunicorn.so.2"), str(cs_dir / "lib" / "libcapstone.so")],
    )
    out.mkdir(parents=True, exist_ok=True)
    return Path(ffi.compile(tmpdir=str(out)))


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/fuzz-asan")))
