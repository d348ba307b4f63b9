"""C paths against the Python ones: pv-fast vs fastpath/fast.py, hypercall vs emu/iopaths.py,
pio and wildcard vs the default board's devices; replay of packed records."""

from __future__ import annotations

import random

import pytest
from fastpath._exitlab_c import ffi
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.board import default_board
from emu.bus import Space
from emu.errors import EmulationError
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.iopaths import HypercallPath
from emu.platform import HC_MMIO_WRITE, NOTIFY_MMIO, NOTIFY_PORT, REGS_MMIO
from emu.replaycpu import ReplayCpu
from fastpath import cengine as c
from fastpath.fast import FastPath

PV = bytes.fromhex("66 89 02")
WINDOWS = [(NOTIFY_MMIO, 0x2000)]


def _regs(rng_or_vals: dict[str, int]) -> tuple[int, ...]:
    return tuple(rng_or_vals.get(n, 0) for n in REG_NAMES)


def test_struct_sizes() -> None:
    assert ffi.sizeof("struct xl_record") == 208 <= 256
    assert ffi.sizeof("struct xl_result") == 48
    # 10^6 records + their results stay under 300 MB (records alone: 208 MB)
    assert 10**6 * (ffi.sizeof("struct xl_record") + ffi.sizeof("struct xl_result")) < 300 * 2**20


@st.composite
def pv_case(draw: st.DrawFn) -> ExitRecord:
    mode = draw(st.sampled_from([16, 32, 64]))
    insn = bytearray(PV + draw(st.binary(min_size=0, max_size=6)))
    if draw(st.booleans()):
        i = draw(st.integers(0, 2))
        insn[i] = draw(st.sampled_from([0x66, 0x67, 0x89, 0x02, 0x48, 0x0A, 0x03, 0x42, 0x88]))
    if draw(st.integers(0, 5)) == 0:
        insn = bytearray(draw(st.sampled_from([b"\x67", b"\x48", b"\x2e", b"\xf0"]))) + insn
    if draw(st.integers(0, 8)) == 0:
        insn = insn[: draw(st.integers(0, 2))]
    addr = draw(
        st.sampled_from(
            [
                NOTIFY_MMIO,
                NOTIFY_MMIO + 8,
                NOTIFY_MMIO + 0xFFE,
                NOTIFY_MMIO + 0xFFF,
                REGS_MMIO + 4,
                NOTIFY_MMIO - 1,
            ]
        )
    )
    kind = draw(st.sampled_from([ExitKind.MMIO_WRITE] * 4 + [ExitKind.MMIO_READ]))
    regs = {"rax": draw(st.integers(0, 2**64 - 1)), "rdx": addr}
    return ExitRecord(kind, 0x8000, mode, addr, bytes(insn), _regs({**regs, "rip": 0x8000}))


@settings(max_examples=600, deadline=None)
@given(pv_case())
def test_pvfast_equals_python_fast_path(rec: ExitRecord) -> None:
    try:
        py = FastPath().try_fast(rec, ReplayCpu(rec, default_board().bus, WINDOWS))
    except EmulationError:
        py = None  # a record with fewer than 3 bytes: no memory to compare

    ctx = c.CContext()
    res, regs = c.handle_one(rec, "pv-fast", ctx)
    if py is None:
        assert res.path != "pv-fast"  # declined: fell back (and never a false positive)
    else:
        assert res.path == "pv-fast" and res.ok
        assert res.acc_hash == c.access_hash(py.accesses)
        assert res.next_rip == py.next_rip
        assert (res.gpa, res.size, res.write, res.value) == (
            py.accesses[0].gpa,
            py.accesses[0].size,
            py.accesses[0].write,
            py.accesses[0].value,
        )
        assert regs["rax"] == rec.reg("rax")  # pv-fast writes no register
        assert ctx.kicks == (
            {py.accesses[0].value: 1} if py.accesses[0].value < 64 and rec.addr < REGS_MMIO else ctx.kicks
        )


def test_pvfast_refuses_16bit_and_lookalikes() -> None:
    base = _regs({"rax": 5, "rip": 0x8000})
    for mode, insn in [(16, PV), (64, b"\x66\x89\x03"), (64, b"\x48\x89\x02"), (32, b"\x67\x66\x89\x02")]:
        res, _ = c.handle_one(
            ExitRecord(ExitKind.MMIO_WRITE, 0x8000, mode, NOTIFY_MMIO, insn, base), "pv-fast"
        )
        assert res.path == "capstone", (mode, insn.hex())
    res, _ = c.handle_one(ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, NOTIFY_MMIO, PV, base), "pv-fast")
    assert res.path == "pv-fast" and res.value == 5 and res.next_rip == 0x8003


@pytest.mark.parametrize("mode", [32, 64])
def test_hypercall_equals_python(mode: int) -> None:
    rng = random.Random(mode)
    cases = [
        (HC_MMIO_WRITE, NOTIFY_MMIO, 2, 3),
        (HC_MMIO_WRITE, REGS_MMIO + 0x10, 8, 2**64 - 1),
        (HC_MMIO_WRITE, REGS_MMIO + 0xFFE, 4, 1),
        (HC_MMIO_WRITE, NOTIFY_MMIO, 3, 1),
        (HC_MMIO_WRITE, 0x5000, 4, 1),
        (0x999, 0, 0, 0),
    ]
    cases += [
        (HC_MMIO_WRITE, REGS_MMIO + rng.randrange(0x1000), rng.choice([1, 2, 4, 8, 5]), rng.getrandbits(64))
        for _ in range(50)
    ]
    for nr, gpa, size, value in cases:
        board = default_board()
        m = 2**64 - 1 if mode == 64 else 0xFFFFFFFF
        regs = _regs({"rax": nr, "rbx": gpa & m, "rcx": size, "rdx": value & m, "rip": 0x8000})
        rec = ExitRecord(ExitKind.HYPERCALL, 0x8000, mode, nr, bytes.fromhex("0f 01 c1"), regs)
        cpu = ReplayCpu(rec, board.bus, WINDOWS)
        out = HypercallPath().handle(rec, cpu)
        assert out is not None and out.next_rip == 0x8003
        want = cpu.get("rax")
        ctx = c.CContext()
        res, after = c.handle_one(rec, "capstone", ctx)
        assert res.path == "hypercall" and res.ok
        assert after["rax"] == want == res.wb, (nr, gpa, size)
        assert res.next_rip == 0x8003
        assert ctx.regs_mem == bytes(board.regs.mem)
        assert ctx.kicks == dict(board.notify.kicks)


def test_pio_and_wildcard_match_devices() -> None:
    board = default_board()
    ctx = c.CContext()
    regs = _regs({"rip": 0x8000, "rax": 0xAAAA})
    for q in (0, 1, 2, 2, 70):
        rec = ExitRecord(ExitKind.PIO_OUT, 0x8000, 64, NOTIFY_PORT, b"\x66\xef", regs, 2, q)
        board.bus.write(Space.PIO, NOTIFY_PORT, 2, q)
        res, _ = c.handle_one(rec, "pio", ctx)
        assert res.ok and res.next_rip == 0x8002 and res.value == q
    rec = ExitRecord(ExitKind.PIO_IN, 0x8000, 64, 0x3FD, b"\xec", regs, 1, 0)
    res, after = c.handle_one(rec, "pio", ctx)
    assert after["rax"] == 0xAA60 and res.next_rip == 0x8001
    assert ctx.kicks == {q: n for q, n in board.notify.kicks.items() if q < 64}
    # wildcard: address-only, queue from the address (NOTIFY_MMIO + 4*q), length from the bytes
    wctx = c.CContext()
    for q, insn in [(3, b"\x89\x02"), (5, b"\x66\x89\x02"), (7, b"\xc6\x02\x00")]:
        board.notify.notify(4 * q)
        rec = ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, NOTIFY_MMIO + 4 * q, insn + b"\x90" * 4, regs)
        res, _ = c.handle_one(rec, "wildcard", wctx)
        assert res.path == "wildcard" and res.next_rip == 0x8000 + len(insn) and res.size == 0
    res, _ = c.handle_one(
        ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, NOTIFY_MMIO + 2, b"\x89\x02", regs), "wildcard", wctx
    )
    assert wctx.kicks == {3: 1, 5: 1, 7: 1}
    assert wctx.cdata.dev.notify_unmatched == 1


def _mixed_records(n: int, seed: int = 5) -> list[ExitRecord]:
    rng = random.Random(seed)
    recs = []
    for _ in range(n):
        q = rng.randrange(4)
        r = rng.random()
        regs = {"rax": q, "rdx": NOTIFY_MMIO + 4 * q, "rbx": REGS_MMIO, "rip": 0x8000}
        if r < 0.4:
            recs.append(ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, NOTIFY_MMIO + 4 * q, PV, _regs(regs)))
        elif r < 0.6:
            recs.append(
                ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, NOTIFY_MMIO + 4 * q, b"\x89\x02", _regs(regs))
            )
        elif r < 0.8:
            recs.append(ExitRecord(ExitKind.MMIO_READ, 0x8000, 32, REGS_MMIO, b"\x8b\x03", _regs(regs)))
        else:
            recs.append(ExitRecord(ExitKind.PIO_OUT, 0x8000, 64, NOTIFY_PORT, b"\x66\xef", _regs(regs), 2, q))
    return recs


@pytest.mark.parametrize("path", ["pv-fast", "subset", "capstone", "wildcard"])
def test_replay_equals_one_by_one(path: str) -> None:
    recs = _mixed_records(400)
    rr = c.replay(recs, path)
    assert rr.n == 400 and rr.errors == 0 and rr.ns > 0 and rr.ticks > 0
    ctx = c.CContext()
    for i, rec in enumerate(recs):
        one, _ = c.handle_one(rec, path, ctx)
        assert rr.result(i) == one
    assert sum(rr.counts.values()) == 400
    assert rr.counts == ctx.counts


def test_replay_counts_and_packing() -> None:
    recs = _mixed_records(1000)
    packed = c.pack_records(recs)
    assert packed.nbytes == 208 * 1000
    ctx = c.CContext()
    rr = c.replay(packed, "pv-fast", ctx, keep_results=False)
    n_pv = sum(1 for r in recs if r.insn == PV)
    n_pio = sum(1 for r in recs if r.kind is ExitKind.PIO_OUT)
    assert rr.counts["pv-fast"] == n_pv and rr.counts["pio"] == n_pio
    assert rr.counts["capstone"] == len(recs) - n_pv - n_pio == rr.fallbacks
    assert rr.violations == sum(1 for r in recs if r.insn == b"\x89\x02")
    # replaying again leaves the records untouched: same counts
    rr2 = c.replay(packed, "pv-fast", ctx, keep_results=False)
    assert rr2.counts == rr.counts
    with pytest.raises(ValueError):
        rr.result(0)


def test_replay_jsonl(tmp_path) -> None:
    from emu.trace import write_trace

    recs = _mixed_records(50)
    p = tmp_path / "t.jsonl"
    write_trace(p, recs, guest="x", mode=64)
    rr = c.replay(c.PackedTrace.from_jsonl(p), "subset")
    assert rr.n == 50 and rr.errors == 0


def test_errors_carry_rip_and_bytes() -> None:
    rec = ExitRecord(
        ExitKind.MMIO_WRITE,
        0x8000,
        64,
        NOTIFY_MMIO,
        bytes.fromhex("0f 58 02 90"),  # addps xmm0, [rdx]: outside the C tables (was SHL before issue 14)
        _regs({"rip": 0x8000, "rdx": NOTIFY_MMIO}),
    )
    ctx = c.CContext()
    res, _ = c.handle_one(rec, "subset", ctx)
    assert res.status == "unsupported" and res.path == "capstone"
    err = ctx.error
    assert err is not None and err.rip == 0x8000 and err.insn.startswith(bytes.fromhex("0f 58 02"))
    assert ctx.errors == 1


MOV_FAMILY = ["89 02", "8b 02", "c7 02 01 00 00 00", "0f b6 02", "0f bf 02", "63 02", "a5", "ab"]


@pytest.mark.parametrize("prefixes", ["f0", "f0 f2", "f0 f3", "f2 f0", "f0 66 f2", "66 f3 f0 48"])
@pytest.mark.parametrize("body", MOV_FAMILY)
def test_capstone_path_refuses_lock_on_the_mov_family_whatever_follows_it(prefixes: str, body: str) -> None:
    """LOCK MOV/MOVZX/MOVSX/MOVSXD/MOVS/STOS is #UD. Capstone keeps only the last of F0/F2/F3, so
    `f0 f2 63 ..` once ran as a plain MOVSXD in C while Python refused it (fuzz seed 2)."""
    insn = bytes.fromhex(f"{prefixes} {body}")
    regs = _regs({"rdx": NOTIFY_MMIO + 0x10, "rsi": NOTIFY_MMIO, "rdi": NOTIFY_MMIO + 0x20, "rcx": 1,
                  "rip": 0x8000, "rflags": 2})
    rec = ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, NOTIFY_MMIO + 0x10, insn, regs)
    with pytest.raises(EmulationError):  # "LOCK prefix not allowed", or Capstone refuses the bytes
        GenericPath().handle(rec, ReplayCpu(rec, default_board().bus, WINDOWS))
    res, _ = c.handle_one(rec, "capstone")
    assert res.status in ("unsupported", "decode") and res.n_acc == 0, (insn.hex(" "), res)


@pytest.mark.parametrize("insn,mnemonic", [
    ("f3 26 66 0f bd 27", "lzcnt"), ("f3 3e 66 0f bc 27", "tzcnt"), ("f3 26 66 0f b8 27", "popcnt"),
    ("f3 2e 66 0f bd 27", "lzcnt"), ("f3 26 0f bd 27", "lzcnt"), ("26 66 0f bd 27", "bsr"),
])
def test_f3_forms_keep_their_f3_when_a_prefix_separates_it_from_66(insn: str, mnemonic: str) -> None:
    """Capstone decodes `f3 26 66 0f bd` as BSR (and `f3 26 66 0f b8` not at all); the CPU, QEMU and
    iced-x86 see LZCNT/POPCNT. Python and C decode those bytes alike (exitlab fuzz --seed 4)."""
    from emu.decode import decode

    raw = bytes.fromhex(insn)
    assert decode(raw, 32, 0x8000).op.value == mnemonic
    gpa = NOTIFY_MMIO + 0x10
    regs = _regs({"rdi": gpa, "rbx": gpa, "rsp": 0x1234, "rip": 0x8000, "rflags": 2})
    rec = ExitRecord(ExitKind.MMIO_READ, 0x8000, 32, gpa, raw, regs)
    cpu = ReplayCpu(rec, default_board().bus, WINDOWS)
    py = GenericPath().handle(rec, cpu)
    assert py is not None
    res, after = c.handle_one(rec, "capstone")
    assert res.ok and res.acc_hash == c.access_hash(py.accesses) and res.next_rip == py.next_rip
    assert after["rsp"] == cpu.get("rsp") and after["rflags"] == cpu.get("rflags")
