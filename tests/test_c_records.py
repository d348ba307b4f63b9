"""Every record entering the C replay is validated (issue 13 C2): when packed, with an error naming
the record, and again in C, so that even a garbage array reaches no path (no UB: `make test-asan`
and `make test-asan-ext` run these under ASan/UBSan)."""

from __future__ import annotations

import pytest
from fastpath._exitlab_c import ffi, lib

from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.platform import CONSOLE_PORT, NOTIFY_MMIO
from fastpath import cengine as c

REGS = tuple([0] * 16 + [0x8000, 2, 0, 0])
GOOD = ExitRecord(ExitKind.PIO_OUT, 0x8000, 64, CONSOLE_PORT, b"\xee", REGS, 1, 0x41)


def _bad_records() -> list[tuple[ExitRecord, str]]:
    return [
        (ExitRecord(ExitKind.PIO_OUT, 0x8000, 64, CONSOLE_PORT, b"\xee", REGS, 9, 0x41), "size 9"),
        (ExitRecord(ExitKind.PIO_IN, 0x8000, 64, CONSOLE_PORT, b"\xec", REGS, 255, 0), "size 255"),
        (ExitRecord(ExitKind.PIO_OUT, 0x8000, 64, CONSOLE_PORT, b"\xee", REGS, 8, 0x41), "size 8"),
        (ExitRecord(ExitKind.PIO_OUT, 0x8000, 64, CONSOLE_PORT, b"\xee", REGS, 0, 0x41), "size 0"),
        (ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 300, NOTIFY_MMIO, b"\x66\x89\x02", REGS), "mode 300"),
        (ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 8, NOTIFY_MMIO, b"\x66\x89\x02", REGS), "mode 8"),
        (
            ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, NOTIFY_MMIO, b"\x90" * 16, REGS),
            "16 instruction bytes",
        ),
        (ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, NOTIFY_MMIO, b"\x90", REGS[:5]), "5 registers"),
        (ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, 1.5, b"\x90", REGS), "exit record 1"),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("rec,what", _bad_records(), ids=[w for _, w in _bad_records()])
def test_packing_rejects_the_record_by_index(rec: ExitRecord, what: str) -> None:
    with pytest.raises(c.RecordError, match=r"exit record 1\b") as exc:
        c.PackedTrace([GOOD, rec, GOOD])
    assert what.split()[0] in str(exc.value)
    # the same from an iterator (records streamed from a trace)
    with pytest.raises(c.RecordError, match=r"exit record 1\b"):
        c.PackedTrace(iter([GOOD, rec]))


def test_packing_after_an_error_keeps_the_good_records() -> None:
    packed = c.PackedTrace([GOOD])
    with pytest.raises(c.RecordError, match=r"exit record 1\b"):
        packed.extend([_bad_records()[0][0]])
    assert packed.n == 1 and packed.nbytes == c.RECORD.size
    assert c.replay(packed, "pio").errors == 0


def _raw(kind: int, mode: int, size: int, insn_len: int, addr: int = CONSOLE_PORT) -> bytes:
    """A record as raw bytes, bypassing every Python check (a corrupted array)."""
    regs = [0] * len(REG_NAMES)
    regs[16] = 0x8000
    return c.RECORD.pack(kind, mode, size, insn_len, b"\xee" * 15, 0x8000, addr, 0x4142434445464748, *regs)


GARBAGE = [
    (2, 64, 9, 1),  # PIO out, size 9: was UBSan "shift exponent 64" in xl_pio
    (2, 64, 255, 1),
    (3, 32, 200, 1),
    (0, 7, 0, 3),  # MMIO write, mode 7
    (0, 64, 0, 255),  # insn_len 255 > 15
    (9, 64, 1, 1),  # kind 9
    (4, 0, 0, 3),  # hypercall, mode 0
]


@pytest.mark.parametrize("path", c.PATH_NAMES)
def test_c_rejects_garbage_records_without_effect(path: str) -> None:
    buf = bytearray(b"".join(_raw(*g) for g in GARBAGE))
    ctx = c.CContext()
    recs = ffi.cast("struct xl_record *", ffi.from_buffer(buf))
    results = ffi.new("struct xl_result[]", len(GARBAGE))
    stats = ffi.new("struct xl_replay_stats *")
    lib.xl_replay(ctx.cdata, c.path_id(path), recs, len(GARBAGE), results, stats)
    assert stats.errors == len(GARBAGE)
    assert [c.STATUS_NAMES[results[i].status] for i in range(len(GARBAGE))] == ["record"] * len(GARBAGE)
    assert ctx.console == b"" and ctx.state()["notify"]["writes"] == 0
    err = ctx.error
    assert err is not None and err.status == "record" and err.rip == 0x8000
    # one at a time: the registers come back unchanged
    res = ffi.new("struct xl_result *")
    regs = ffi.new("uint64_t[]", len(REG_NAMES))
    st = lib.xl_replay_one(ctx.cdata, c.path_id(path), recs, res, regs)
    assert c.STATUS_NAMES[st] == "record" and regs[16] == 0x8000


def test_valid_sizes_still_replay() -> None:
    recs = [ExitRecord(ExitKind.PIO_OUT, 0x8000, 64, CONSOLE_PORT, b"\xee", REGS, s, 0x41) for s in (1, 2, 4)]
    ctx = c.CContext()
    r = c.replay(recs, "pio", ctx=ctx)
    assert r.errors == 0
    assert ctx.console == b"A" + b"A\x00" + b"A\x00\x00\x00"
