"""Coverage-guided harness for the C length function and subset decoder on raw bytes.

No CPU state, no Unicorn: libFuzzer's bytes go straight to `xl_insn_length` and
`xl_decode_subset`, which a host runs on guest-controlled memory at every exit, so they must be
total functions of their input. One input:

    byte 0      mode: 16, 32 or 64 (byte % 3)
    the rest    the buffer handed to C (at most 64 bytes)

The buffer is placed so that its last byte is the last byte of a readable page and the next page
is PROT_NONE: a read past the end faults at once (a crash libFuzzer saves), with or without a
sanitizer build. Invariants checked on every input:

- length: -1 (declined) or 1..min(15, len); the same answer for the buffer cut to that length and
  for any bytes after it; -1 for every shorter cut (a truncated instruction is declined);
- subset decoder: 0 (not mine) or its length equals the length function's, `out.len` agrees,
  size is 1/2/4/8; the same decode for the buffer cut to that length; 0 for any shorter cut.

Run it:  python exitlab/tools/fuzz/atheris_length.py tests/data/fuzz_corpus -atheris_runs=5000
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import capstone  # noqa: F401  (the extension resolves libcapstone through this import)
import unicorn  # noqa: F401

MAX_INPUT = 64
MODES = (16, 32, 64)


class FuzzFailure(AssertionError):
    """A broken invariant (libFuzzer reports it as a crash, with the input saved)."""


class GuardedBuffer:
    """Bytes placed flush against a PROT_NONE page, so any read past them faults."""

    def __init__(self) -> None:
        page = mmap.PAGESIZE
        self._map = mmap.mmap(-1, 2 * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mprotect(ctypes.c_void_p(self._base + page), ctypes.c_size_t(page), 0) != 0:  # PROT_NONE
            raise OSError(ctypes.get_errno(), "mprotect of the guard page failed")
        self._end = page  # offset of the guard page

    def place(self, data: bytes) -> int:
        """Copy `data` so it ends at the guard page; returns its address."""
        start = self._end - len(data)
        self._map[start : self._end] = data
        return self._base + start


_BUF: GuardedBuffer | None = None


def _buf() -> GuardedBuffer:
    global _BUF
    if _BUF is None:
        _BUF = GuardedBuffer()
    return _BUF


def _length(data: bytes, mode: int) -> int:
    from fastpath._exitlab_c import ffi, lib

    return int(lib.xl_insn_length(ffi.cast("const uint8_t *", _buf().place(data)), len(data), mode))


def _subset(data: bytes, mode: int) -> tuple[int, tuple[int, ...]]:
    """(return value, the decoded fields) of xl_decode_subset on a guarded copy of `data`."""
    from fastpath._exitlab_c import ffi, lib

    out = ffi.new("struct xl_insn *")
    r = int(lib.xl_decode_subset(ffi.cast("const uint8_t *", _buf().place(data)), len(data), mode, out))
    fields = (out.kind, out.size, out.dst_size, out.reg, out.hi8, out.len, out.rep, out.seg,
              out.addr_size, out.base, out.index, out.scale, out.disp, out.imm)
    return r, fields if r > 0 else ()


def check_input(data: bytes) -> None:
    """The fuzz target's body: raise FuzzFailure on any broken invariant."""
    if not data:
        return
    mode = MODES[data[0] % 3]
    buf = bytes(data[1 : 1 + MAX_INPUT])
    where = f"mode {mode}, bytes {buf.hex(' ') or '(empty)'}"

    n = _length(buf, mode)
    if not (n == -1 or 1 <= n <= min(15, len(buf))):
        raise FuzzFailure(f"insn_length returned {n} for {len(buf)} bytes ({where})")
    if n > 0:
        if _length(buf[:n], mode) != n:
            raise FuzzFailure(f"insn_length {n} on the full buffer but not on its first {n} bytes ({where})")
        tail = bytes(b ^ 0xFF for b in buf[n:])
        if _length(buf[:n] + tail, mode) != n:
            raise FuzzFailure(f"insn_length {n} depends on the bytes after the instruction ({where})")
    for k in range(min(n if n > 0 else 0, len(buf))):
        if (m := _length(buf[:k], mode)) != -1:
            raise FuzzFailure(f"insn_length {m} for the first {k} bytes of a {n}-byte instruction ({where})")

    r, fields = _subset(buf, mode)
    if r < 0:
        raise FuzzFailure(f"decode_subset returned {r} ({where})")
    if r > 0:
        kind, size, length = fields[0], fields[1], fields[5]
        if length != r or not 1 <= r <= min(15, len(buf)) or size not in (1, 2, 4, 8) or kind == 0:
            raise FuzzFailure(f"decode_subset out of range (ret {r}, len {length}, size {size}) ({where})")
        if n != r:
            raise FuzzFailure(f"decode_subset length {r} != insn_length {n} ({where})")
        if _subset(buf[:r], mode) != (r, fields):
            raise FuzzFailure(f"decode_subset differs on the buffer cut to {r} bytes ({where})")
        for k in range(r):
            if _subset(buf[:k], mode)[0] != 0:
                raise FuzzFailure(
                    f"decode_subset accepts the first {k} bytes of a {r}-byte instruction ({where})"
                )


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name libFuzzer / atheris expect
    check_input(data)


def main(argv: list[str] | None = None) -> None:
    import atheris

    # Run as a script this file is __main__, which atheris does not instrument: import it again
    # under its package name, instrumented, so libFuzzer sees the invariant checks' branches
    # (the C edges come from a clang build with -fsanitize=fuzzer-no-link, as under ClusterFuzzLite).
    with atheris.instrument_imports(include=["exitlab.tools.fuzz.atheris_length"]):
        from exitlab.tools.fuzz import atheris_length as harness
    atheris.Setup(list(sys.argv if argv is None else argv), harness.TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
