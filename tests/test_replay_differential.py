"""The C hypercall and port I/O paths (fastpath/csrc/paths.c, the benchmarked hot path) against the
Python reference (emu/iopaths.py through the replay engine, emu/replay.py), on many random exits.

Both engines replay the same records in order, each into its own fresh default board, and must
agree record by record on the status, RAX afterwards, the device accesses (address, size,
direction, value, in order: the C result's hash of them) and the resume RIP, and at the end on
the device state. The inputs cover what the KVM ABI has to get right: hypercall numbers and
arguments with garbage in the upper halves outside 64-bit mode, sizes valid and invalid, addresses
inside a window, outside every window, running off a window's end, crossing from one device into
the next, RIPs that wrap; port I/O of every size and form (imm8/DX ports, operand-size and REP
prefixes, REX, INS/OUTS), to claimed and unclaimed ports, in 16/32/64-bit mode.
"""

from __future__ import annotations

import random

import pytest

from emu.board import default_board
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.platform import (
    CONSOLE_PORT,
    HC_MMIO_WRITE,
    NOTIFY_MMIO,
    NOTIFY_MMIO_SIZE,
    NOTIFY_PORT,
    PCI_CONFIG_DATA,
    REGS_MMIO,
    REGS_MMIO_SIZE,
)
from fastpath import replays

c = pytest.importorskip("fastpath.cengine")

M64 = (1 << 64) - 1
VMCALL, VMMCALL = bytes.fromhex("0f01c1"), bytes.fromhex("0f01d9")


def _junk(rng: random.Random, value: int, mode: int) -> int:
    """Outside 64-bit mode the upper halves are garbage the ABI must ignore."""
    return value | (rng.getrandbits(32) << 32) if mode != 64 and rng.random() < 0.5 else value


def hypercall_record(rng: random.Random) -> ExitRecord:
    mode = rng.choice((16, 32, 64))
    nr = rng.choice((HC_MMIO_WRITE,) * 4 + (0, 1, 0x7777, rng.getrandbits(64)))
    gpa = rng.choice((
        NOTIFY_MMIO + rng.randrange(NOTIFY_MMIO_SIZE),
        REGS_MMIO + rng.randrange(REGS_MMIO_SIZE),
        REGS_MMIO - rng.randrange(1, 8),  # notify's end -> regs: one write per device
        REGS_MMIO + REGS_MMIO_SIZE - rng.randrange(1, 8),  # regs' end -> nothing: -EFAULT, no write
        NOTIFY_MMIO - rng.randrange(1, 8),  # starts outside
        rng.getrandbits(64),
        0x5000,
    ))
    size = rng.choice((1, 2, 4, 8) * 3 + (0, 3, 5, 7, 16, (1 << 32) | 2, rng.getrandbits(64)))
    regs = [rng.getrandbits(64) if rng.random() < 0.3 else 0 for _ in REG_NAMES]
    regs[0] = _junk(rng, nr, mode)
    regs[3] = _junk(rng, gpa, mode)
    regs[1] = _junk(rng, size, mode)
    regs[2] = rng.getrandbits(64)
    rip = rng.choice((0x8000, 0xFFFFFFFE, M64 - 1)) if mode != 64 else rng.choice((0x8000, M64 - 1))
    if mode != 64:
        rip &= 0xFFFFFFFF
    regs[16] = rip
    insn = rng.choice((VMCALL, VMMCALL)) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(4)))
    return ExitRecord(ExitKind.HYPERCALL, rip, mode, regs[0], insn, tuple(regs))


_PREFIXES = (b"", b"", b"", b"\x2e", b"\xf3", b"\x3e\x2e")


def pio_record(rng: random.Random) -> ExitRecord:
    mode = rng.choice((16, 32, 64))
    write = rng.random() < 0.5
    size = rng.choice((1, 2, 4))
    port = rng.choice((
        NOTIFY_PORT, NOTIFY_PORT + 1, CONSOLE_PORT + rng.randrange(8), PCI_CONFIG_DATA, 0x80, 0xFFFF,
    ))
    # the operand-size prefix that gives `size` in this mode (16-bit code: 66 means 32 bits)
    wide = size > 1
    osz = b"\x66" if wide and ((size == 2) != (mode == 16)) else b""
    form = rng.choice(("dx", "imm8", "string"))
    if form == "dx":
        op = bytes([(0xEE if write else 0xEC) | wide])
    elif form == "imm8":
        op = bytes([(0xE6 if write else 0xE4) | wide, port & 0xFF])
        port &= 0xFF
    else:
        op = bytes([(0x6E if write else 0x6C) | wide])
    rex = b"\x48" if mode == 64 and rng.random() < 0.2 else b""
    insn = rng.choice(_PREFIXES) + osz + rex + op + bytes(rng.getrandbits(8) for _ in range(rng.randrange(5)))
    if rng.random() < 0.1:  # a bad record: truncated, or bytes that are no I/O instruction
        insn = rng.choice((insn[: rng.randrange(len(insn))], b"\x90" + insn, b"\x48\x66" + op, b"\xf1"))
    regs = [rng.getrandbits(64) if rng.random() < 0.5 else 0 for _ in REG_NAMES]
    rip = rng.choice((0x8000, 0xFFFFFFFF)) if mode != 64 else rng.choice((0x8000, M64))
    regs[16] = rip
    value = rng.getrandbits(8 * size) if write else 0
    kind = ExitKind.PIO_OUT if write else ExitKind.PIO_IN
    return ExitRecord(kind, rip, mode, port, insn, tuple(regs), size, value)


def _compare(records: list[ExitRecord], path: str) -> None:
    board = default_board()
    py = replays.py_replay(records, path, board=board, check=False)
    ctx = c.CContext()
    for i, (rec, got) in enumerate(zip(records, py.results(), strict=True)):
        res, after = c.handle_one(rec, path, ctx)
        where = (f"record {i}: {rec.kind.value} mode={rec.mode} addr={rec.addr:#x} insn={rec.insn.hex(' ')} "
                 f"rax={rec.regs[0]:#x} rbx={rec.regs[3]:#x} rcx={rec.regs[1]:#x}")
        assert res.status == got.status, where
        assert res.path == got.path, where
        if not res.ok:
            continue
        assert res.acc_hash == c.access_hash(got.accesses), (where, got.accesses, res)
        assert res.n_acc == len(got.accesses), where
        assert res.next_rip == got.next_rip, where
        assert got.regs is not None
        assert after["rax"] == got.regs["rax"], where
    assert ctx.regs_mem == bytes(board.regs.mem)
    assert ctx.kicks == {q: n for q, n in board.notify.kicks.items() if q < 64}
    assert ctx.console == bytes(board.console.out)


@pytest.mark.parametrize("seed", range(4))
def test_hypercall_c_equals_python(seed: int) -> None:
    rng = random.Random(seed)
    _compare([hypercall_record(rng) for _ in range(500)], "hypercall")


@pytest.mark.parametrize("seed", range(4))
def test_pio_c_equals_python(seed: int) -> None:
    rng = random.Random(100 + seed)
    _compare([pio_record(rng) for _ in range(500)], "pio")


def test_the_inputs_reach_every_outcome() -> None:
    """The generators are not vacuous: every answer of the ABI occurs, and crossing writes split."""
    rng = random.Random(7)
    board = default_board()
    res = replays.py_replay([hypercall_record(rng) for _ in range(2000)], "hypercall", board=board)
    rax = {r.regs["rax"] & 0xFFFFFFFF for r in res.results() if r.regs}
    assert {0, (-1000) & 0xFFFFFFFF, (-14) & 0xFFFFFFFF, (-22) & 0xFFFFFFFF} <= rax
    assert any(len(r.accesses) == 2 for r in res.results()), "no write crossed from notify into regs"
    pio = replays.py_replay([pio_record(rng) for _ in range(2000)], "pio", check=False).results()
    assert {"ok", "length"} == {r.status for r in pio}
    assert any(r.accesses and not r.accesses[0].write for r in pio if r.ok)


# -- regressions found by the comparison (each checks C against the fact, not against Python) ------
def _pio(kind: ExitKind, insn: bytes, rax: int = 0x1122334455667788, mode: int = 64) -> ExitRecord:
    regs = tuple(rax if n == "rax" else 0x8000 if n == "rip" else 0 for n in REG_NAMES)
    return ExitRecord(kind, 0x8000, mode, CONSOLE_PORT + 5, insn, regs, 1, 0)


def test_c_ins_leaves_rax_alone() -> None:
    """INS stores its element at ES:rDI (KVM emulates string I/O); only IN writes AL. The C pio
    path merged the INS element into RAX."""
    res, after = c.handle_one(_pio(ExitKind.PIO_IN, bytes.fromhex("f3 6c")), "pio")
    assert res.ok and res.next_rip == 0x8002 and after["rax"] == 0x1122334455667788
    res, after = c.handle_one(_pio(ExitKind.PIO_IN, bytes.fromhex("ec")), "pio")
    assert res.ok and after["rax"] == 0x1122334455667760  # LSR reads 0x60 into AL


def test_c_pio_needs_an_io_instruction() -> None:
    """A port I/O record whose bytes are no IN/OUT/INS/OUTS (or an imm8 form cut short) is refused
    (status length); C took any instruction's length (a NOP resumed at RIP+1)."""
    for insn in (b"", b"\x90", b"\x66", b"\xe6", b"\x0f\x01\xc1"):
        res, _ = c.handle_one(_pio(ExitKind.PIO_OUT, insn), "pio")
        assert res.status == "length", insn.hex()
    # REX anywhere among the prefixes in 64-bit mode is ignored by the CPU, not an error
    res, _ = c.handle_one(_pio(ExitKind.PIO_OUT, bytes.fromhex("48 66 41 ee")), "pio")
    assert res.ok and res.next_rip == 0x8004
    res, _ = c.handle_one(_pio(ExitKind.PIO_OUT, bytes.fromhex("48 ee"), mode=32), "pio")
    assert res.status == "length"  # 48 is DEC EAX outside 64-bit mode


def test_path_names_are_the_c_engines() -> None:
    from emu.replay import PATH_NAMES

    assert PATH_NAMES == c.PATH_NAMES == replays.NAMES
