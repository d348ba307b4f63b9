"""Trace records carry the vector registers (and CR0) the SSE/AVX/MMX moves and SMSW need
(ExitRecord.vec, the optional "vec" key), so a trace with such MMIO stores replays (ReplayCpu +
the generic path, into a fresh board) to the same device writes as the live run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.exits import ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.machine import Machine
from emu.platform import REGS_MMIO
from emu.replaycpu import ReplayCpu
from emu.trace import TraceWriter, read_trace, record_from_json, record_to_json

SSE_STORES = """
    mov rbx, REGS_MMIO
    movdqu xmm3, [rip + data]
    movdqu [rbx+0x10], xmm3
    movss [rbx+0x20], xmm3
    movsd [rbx+0x28], xmm3
    movq mm1, [rip + data + 8]
    movq [rbx+0x30], mm1
    movd [rbx+0x38], mm1
    movaps [rbx+0x40], xmm3
    smsw word ptr [rbx+0x50]
    movq xmm4, [rbx+0x10]
    movdqu [rbx+0x60], xmm4
    emms
    hlt
data: .quad 0x0123456789abcdef, 0xfedcba9876543210
"""


def _replay(records: list[ExitRecord]) -> bytes:
    board = default_board()
    windows = [(REGS_MMIO, 0x1000)]
    for rec in records:
        GenericPath().handle(rec, ReplayCpu(rec, board.bus, windows))
    return bytes(board.regs.mem)


def test_sse_mmx_smsw_trace_replays_to_the_same_device_writes(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    board = default_board()
    with TraceWriter(path, guest="sse") as tw:
        m = Machine(assemble(SSE_STORES), board=board, mmio_style="exit", path=GenericPath(), trace=tw)
        res = m.run(timeout=20)
    assert res.stop.reason.value == "hlt", res.stop
    records = read_trace(path)
    assert len(records) == 9 and all(r.kind in (ExitKind.MMIO_WRITE, ExitKind.MMIO_READ) for r in records)
    names = [dict(r.vec) for r in records]
    assert names[0] == {"xmm3": 0xFEDCBA98765432100123456789ABCDEF}
    assert set(names[3]) == {"mm1"} and set(names[6]) == {"cr0"} and set(names[7]) == {"xmm4"}
    assert _replay(records) == bytes(board.regs.mem)  # the same device writes, in the same places
    # the same trace without the vector registers: every vector exit declines (no silent skip)
    bare = [ExitRecord(r.kind, r.rip, r.mode, r.addr, r.insn, r.regs, r.truth_size, r.truth_value)
            for r in records]
    with pytest.raises(Exception, match="carries no"):
        _replay(bare)


def test_avx_store_record_replays_as_four_8_byte_writes() -> None:
    """vmovdqu [rbx+0x80], ymm2 (Unicorn has no AVX: the record is written by hand, as a KVM
    trace would have it): four 8-byte device writes, low address first (KVM's 8-byte chunks)."""
    ymm2 = int.from_bytes(bytes(range(1, 33)), "little")
    line = {"kind": "mmio_write", "rip": 0x1000, "mode": 64, "addr": REGS_MMIO + 0x80,
            "insn": "c5 fe 7f 93 80 00 00 00", "regs": {"rbx": REGS_MMIO}, "truth": {"size": 8, "value": 0},
            "vec": {"ymm2": ymm2}}
    rec = record_from_json(json.loads(json.dumps(line)))
    assert rec.vec == (("ymm2", ymm2),)
    assert record_to_json(rec)["vec"] == {"ymm2": ymm2}
    board = default_board()
    out = GenericPath().handle(rec, ReplayCpu(rec, board.bus, [(REGS_MMIO, 0x1000)]))
    assert [(a.gpa - REGS_MMIO, a.size, a.write) for a in out.accesses] == [
        (0x80, 8, True), (0x88, 8, True), (0x90, 8, True), (0x98, 8, True)]
    assert bytes(board.regs.mem[0x80:0xA0]) == bytes(range(1, 33))


@pytest.mark.parametrize("vec,why", [({"xmm16": 1}, "names"), ({"ymm1": 1 << 256}, "out of range"),
                                     ([1], "must be an object"), ({"cr0": -1}, "out of range")])
def test_bad_vec_is_a_clear_error(vec: object, why: str) -> None:
    line = {"kind": "mmio_write", "rip": 0, "mode": 64, "addr": 0, "insn": "90", "vec": vec}
    with pytest.raises(ValueError, match=why):
        record_from_json(line)


def test_records_without_vector_forms_stay_as_before() -> None:
    rec = ExitRecord(ExitKind.MMIO_WRITE, 0x1000, 64, REGS_MMIO, bytes.fromhex("89 03"), (0,) * 20, 4, 7)
    assert "vec" not in record_to_json(rec)
    assert record_from_json(record_to_json(rec)) == rec
