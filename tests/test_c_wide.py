"""The C full-decode path (`capstone`, fastpath/csrc/sem*.c) against the Python generic path.

Every form of emu/decode.py's table is drawn by test_emulate's encoder (all addressing modes,
operand sizes, LOCK, segment prefixes, RIP-relative, 16-bit addressing) and handled twice from the
same exit record: by GenericPath on a ReplayCpu over the default board's bus, and by the C path.
Both must refuse, or both must give the same device accesses (in order), registers, RFLAGS, next
RIP and device state.  A C refusal must leave registers and devices untouched (SEMANTICS rule 5).
A second test runs the C path against Unicorn itself (emu/oracle.py); SSE forms need XMM
registers, which replay records do not carry: they are checked live against the Python machine.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import pytest
import test_emulate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_emulate import FORMS, Form, form_case

from emu.access import Op
from emu.assemble import assemble
from emu.batchcpu import default_ram_regions
from emu.board import default_board
from emu.decode import decode, effective_address
from emu.emulate import CF, DF, OF, STATUS, ZF
from emu.errors import EmulationError, GuestFault
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.machine import Machine
from emu.oracle import run_one
from emu.platform import NOTIFY_MMIO, REGS_MMIO
from emu.replaycpu import ReplayCpu
from fastpath import cengine as c

M64 = (1 << 64) - 1
RIP = test_emulate.RIP
# the families the C capstone path covers (fastpath/csrc/sem.c + the MOV family in paths.c, and the
# issue-14 family files sem_muldiv.c, sem_shift.c, sem_bitscan.c, sem_cond.c; CMPS/SCAS below)
C_FAMILIES = {"adc", "add", "and", "bt", "btc", "btr", "bts", "cmp", "cmpxchg", "dec", "inc", "mov", "movaps",
              "movd", "movdqa", "movdqu", "movnti", "movq", "movsx", "movsxd", "movupd", "movups", "movzx",
              "neg", "not", "or", "sbb", "sub", "test", "xadd", "xchg", "xor"}
C_FAMILIES |= {"mul", "imul", "div", "idiv"}                                          # sem_muldiv.c
C_FAMILIES |= {"rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar", "shld", "shrd"}  # sem_shift.c
C_FAMILIES |= {"bsf", "bsr", "tzcnt", "lzcnt", "popcnt"}                              # sem_bitscan.c
C_FAMILIES |= {"cmov", "set"}                                                         # sem_cond.c
FORMS = [f for f in FORMS if f.name.split()[0] in C_FAMILIES]
NOT_SSE = [f for f in FORMS if f.sizes != "x"]
NEW_FORMS = [f for f in NOT_SSE if not f.name.startswith(("mov ", "movzx", "movsx"))]
SSE = [f for f in FORMS if f.sizes == "x"]
TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _tally() -> Iterator[None]:
    """`pytest -s` prints how many cases agreed, were refused by both, or were skipped."""
    yield
    print(f"\ntest_c_wide tally: {dict(sorted(TALLY.items()))}")


def _exit_addr(code: bytes, mode: int, regs: dict[str, int], window: tuple[int, int]) -> int:
    """Where the instruction's first access goes (BT with a register offset: the moved operand)."""
    try:
        acc = decode(code, mode, RIP)
        get = {**regs, "rip": RIP}.get
        ea = effective_address(acc.mem, lambda n: get(n, 0), RIP + acc.length, mode)
    except EmulationError:
        return window[0]
    if acc.op in (Op.BT, Op.BTS, Op.BTR, Op.BTC) and acc.imm is None:
        probe = default_board()
        rec = _record(code, mode, regs, ea, ExitKind.MMIO_READ)
        try:
            out = GenericPath().handle(rec, ReplayCpu(rec, probe.bus, [window]))
        except EmulationError:
            return ea
        return out.accesses[0].gpa if out.accesses else ea
    return ea


def _exit_kind(code: bytes, mode: int) -> ExitKind:
    """The kind of the instruction's first access: a store writes first, everything else reads."""
    try:
        acc = decode(code, mode, RIP)
    except EmulationError:
        return ExitKind.MMIO_READ
    store = acc.op in (Op.MOV, Op.SSE_STORE, Op.SETCC) and acc.mem_is_dest
    return ExitKind.MMIO_WRITE if store else ExitKind.MMIO_READ


def _record(code: bytes, mode: int, regs: dict[str, int], addr: int, kind: ExitKind) -> ExitRecord:
    full = {**regs, "rip": RIP}
    return ExitRecord(kind, RIP, mode, addr, code, tuple(full.get(n, 0) & M64 for n in REG_NAMES))


def agree(code: bytes, mode: int, regs: dict[str, int], window: tuple[int, int], content: bytes,
          kind: ExitKind | None = None, addr: int | None = None) -> str:
    """Handle one exit by both paths and assert they agree; returns "ok", "refused" or "no-exit"."""
    if addr is None:
        addr = _exit_addr(code, mode, regs, window)
        if not window[0] <= addr < window[0] + window[1]:
            return "no-exit"  # the operand is not in the window: no such exit exists
    kind = kind or _exit_kind(code, mode)
    rec = _record(code, mode, regs, addr, kind)
    board = default_board()
    board.regs.mem[:] = content
    cpu = ReplayCpu(rec, board.bus, [window])
    fault: GuestFault | None = None
    try:
        py = GenericPath().handle(rec, cpu)
    except GuestFault as exc:
        py, fault = None, exc
    except EmulationError:
        py = None
    ctx = c.CContext()
    ctx.set_regs_mem(content)
    res, after = c.handle_one(rec, "capstone", ctx)
    where = f"bytes={code.hex(' ')} mode={mode} addr={addr:#x}"
    if fault is not None and fault.vector == 0:
        # #DE: after the divisor's read (the same device access), no register changed
        assert res.status == "de", f"{where}: Python #DE, C {res.status}"
        assert res.n_acc == len(fault.accesses) and res.acc_hash == c.access_hash(fault.accesses), where
        before = rec.regs_dict()
        assert all(after[n] == before[n] for n in REG_NAMES if n != "rip"), where
        return "de"
    if py is None:
        assert not res.ok, f"{where}: Python refused, C did {res}"
        before = rec.regs_dict()
        assert res.n_acc == 0 and all(after[n] == before[n] for n in REG_NAMES if n != "rip"), where
        assert ctx.regs_mem == content and ctx.kicks == {}, where
        return "refused"
    assert res.ok, f"{where}: C refused ({res.status}, {ctx.error}) what Python did: {py}"
    assert res.n_acc == len(py.accesses) and res.acc_hash == c.access_hash(py.accesses), (
        f"{where}: accesses differ: C first {(res.gpa, res.size, res.write, res.value)}, Python {py.accesses}"
    )
    assert res.next_rip == py.next_rip, where
    want = {n: v & M64 for n, v in cpu.regs.items()}
    diff = {n: (after[n], want[n]) for n in REG_NAMES if n != "rip" and after[n] != want[n]}
    assert not diff, f"{where}: registers (C, Python) {diff}"
    assert ctx.regs_mem == bytes(board.regs.mem), where
    assert ctx.kicks == {q: n for q, n in board.notify.kicks.items() if q < 64}, where
    return "ok"


@st.composite
def wide_case(draw: st.DrawFn, form: Form, mode: int) -> tuple:
    code, regs, window, _xmm, mode = draw(form_case(form, mode))
    content = draw(st.binary(min_size=0x1000, max_size=0x1000)) if draw(st.booleans()) else bytes(
        [draw(st.integers(0, 255))]) * 0x1000
    if draw(st.integers(0, 3)) == 0:
        regs["rflags"] = 0x2 | (draw(st.integers(0, 0xFFF)) & (STATUS | DF))
    return code, regs, window, content, mode


@pytest.mark.parametrize("mode", [64, 32])
@pytest.mark.parametrize("form", NOT_SSE, ids=lambda f: f.name)
def test_c_path_equals_python_generic(form: Form, mode: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every non-SSE form: C and Python agree on ~40 drawn cases, in the notify, regs and an
    unclaimed window (the C devices: notify reads 0, regs reads the content, unclaimed all-ones)."""
    if form.sizes == "q4" and mode == 32:
        pytest.skip("opcode 63 is ARPL in 32-bit mode")
    # form_case draws HIGH_MMIO or LOW_MMIO windows: point HIGH_MMIO at one of the two C devices
    monkeypatch.setattr(test_emulate, "HIGH_MMIO", REGS_MMIO if mode == 64 else NOTIFY_MMIO)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(wide_case(form, mode))
    def run(case: tuple) -> None:
        code, regs, window, content, m = case
        TALLY[f"{form.name.split()[0]}:{agree(code, m, regs, window, content)}"] += 1

    run()


def test_c_path_refuses_what_python_refuses() -> None:
    """Exits whose address the operand does not cover, LOCK where #UD, 16-bit code, MOVNTI with 66:
    both refuse, and the C path leaves no trace."""
    content = bytes(range(256)) * 16
    win = (REGS_MMIO, 0x1000)
    base = {"rdx": REGS_MMIO + 0x10, "rax": 5, "rflags": 2}
    cases = [
        (bytes.fromhex("01 02"), 64, base, REGS_MMIO + 0x40),       # add [rdx], eax: wrong address
        (bytes.fromhex("f0 3b 02"), 64, base, None),                 # lock cmp eax, [rdx]
        (bytes.fromhex("f0 85 02"), 64, base, None),                 # lock test [rdx], eax
        (bytes.fromhex("f0 0f a3 02"), 64, base, None),              # lock bt [rdx], eax
        (bytes.fromhex("f0 03 02"), 64, base, None),                 # lock add eax, [rdx] (reg dest)
        (bytes.fromhex("66 0f c3 02"), 64, base, None),              # movnti with 66: #UD
        (bytes.fromhex("0f c3 02"), 64, {**base, "rdx": REGS_MMIO + 0xFFE}, None),  # runs off the device
        (bytes.fromhex("0f 58 02"), 64, base, None),                 # addps xmm0, [rdx]: in neither table
        (bytes.fromhex("66 0f 6f 02"), 64, base, None),              # movdqa: no XMM in a record
        (bytes.fromhex("f0 f7 22"), 64, base, None),                 # lock mul: #UD
        (bytes.fromhex("f0 0f 44 02"), 64, base, None),              # lock cmove: #UD
        (bytes.fromhex("f0 a6"), 64, base, None),                    # lock cmpsb: #UD
        (bytes.fromhex("2e d1 22"), 32, base, None),                 # cs: shl [edx], 1 writes: #GP
    ]
    for code, mode, regs, addr in cases:
        assert agree(code, mode, regs, win, content, None, addr) == "refused", code.hex()
    # a CS override on a form that only reads its operand 0 (MUL/DIV, CMPS's source) runs
    for code in ("2e f7 22", "2e f7 3a", "2e a6"):
        regs = {**base, "rsi": REGS_MMIO + 0x20, "rdi": REGS_MMIO + 0x30, "rcx": 9}
        assert agree(bytes.fromhex(code), 32, regs, win, content) in ("ok", "de"), code


def test_rmw_examples_exact() -> None:
    """A few hand-checked answers (not only agreement): flags and the device value."""
    content = bytearray(0x1000)
    content[0x10:0x14] = (0x7FFFFFFF).to_bytes(4, "little")
    regs = {"rdx": REGS_MMIO + 0x10, "rflags": 2}
    rec = _record(bytes.fromhex("83 02 01"), 64, regs, REGS_MMIO + 0x10, ExitKind.MMIO_READ)  # add [rdx], 1
    ctx = c.CContext()
    ctx.set_regs_mem(bytes(content))
    res, after = c.handle_one(rec, "capstone", ctx)
    assert res.ok and res.n_acc == 2 and res.next_rip == RIP + 3
    assert ctx.regs_mem[0x10:0x14] == (0x80000000).to_bytes(4, "little")
    assert after["rflags"] & STATUS == OF | 0x80 | 0x10 | 0x4  # OF SF AF PF, no CF/ZF
    # lock xadd [rdx], rcx; then cmpxchg failure loads the accumulator
    regs = {"rdx": REGS_MMIO + 0x10, "rcx": 1, "rax": 0, "rflags": 2}
    rec = _record(bytes.fromhex("f0 48 0f c1 0a"), 64, regs, REGS_MMIO + 0x10, ExitKind.MMIO_READ)
    res, after = c.handle_one(rec, "capstone", ctx)
    assert res.ok and after["rcx"] == 0x80000000
    assert ctx.regs_mem[0x10:0x18] == (0x80000001).to_bytes(8, "little")
    rec = _record(bytes.fromhex("0f b1 0a"), 64, regs, REGS_MMIO + 0x10, ExitKind.MMIO_READ)
    res, after = c.handle_one(rec, "capstone", ctx)
    assert res.ok and after["rax"] == 0x80000001 and not after["rflags"] & ZF
    # bt with a negative register offset reaches the dword below the operand
    content[0x0C] = 0x80
    ctx.set_regs_mem(bytes(content))
    regs = {"rdx": REGS_MMIO + 0x10, "rax": (-25) & M64, "rflags": 2}
    rec = _record(bytes.fromhex("0f a3 02"), 64, regs, REGS_MMIO + 0x0C, ExitKind.MMIO_READ)
    res, after = c.handle_one(rec, "capstone", ctx)
    assert res.ok and res.gpa == REGS_MMIO + 0x0C and after["rflags"] & CF


def test_lods_agrees() -> None:
    """LODS (with REP, 66, REX.W, DF, a segment override, 0x67) in the regs device."""
    rng = random.Random(14)
    content = bytes(rng.getrandbits(8) for _ in range(0x1000))
    win = (NOTIFY_MMIO, 0x2000)
    n = 0
    for pre in (b"", b"\x66", b"\x48", b"\xf3", b"\xf3\x48", b"\x67", b"\xf2", b"\x64", b"\xf0"):
        for op in (b"\xac", b"\xad"):
            for _ in range(8):
                regs = {"rsi": REGS_MMIO + rng.randrange(0x40, 0x800), "rcx": rng.randrange(0, 5),
                        "rax": rng.getrandbits(64), "rflags": 2 | (DF if rng.random() < 0.3 else 0),
                        "fs_base": 0}
                code = pre + op
                agree(code, 64, regs, win, content)
                agree(code, 32, {**regs, "rsi": regs["rsi"] & 0xFFFFFFFF}, win, content)
                n += 2
    assert n == 288


def test_cmps_scas_agree() -> None:
    """CMPS/SCAS (REPE, REPNE, F3 F2 / F2 F3 where the last decides, 66, REX.W, DF, a segment
    override, 0x67) with both operands in the regs device; the content has equal runs and
    differences so REPE/REPNE stop early as well as on rCX = 0."""
    rng = random.Random(1414)
    content = bytes(rng.choice((0, 0, 0, 1, 0xFF, rng.getrandbits(8))) for _ in range(0x1000))
    win = (NOTIFY_MMIO, 0x2000)
    tally: Counter[str] = Counter()
    for pre in (b"", b"\x66", b"\x48", b"\xf3", b"\xf2", b"\xf3\x48", b"\xf2\x66", b"\xf3\xf2", b"\xf2\xf3",
                b"\x67\xf3", b"\x64\xf3", b"\xf0"):
        for op in (b"\xa6", b"\xa7", b"\xae", b"\xaf"):
            for _ in range(6):
                rflags = 2 | (DF if rng.random() < 0.3 else 0) | (ZF if rng.random() < 0.5 else 0)
                regs = {"rsi": REGS_MMIO + rng.randrange(0x40, 0x800),
                        "rdi": REGS_MMIO + rng.randrange(0x40, 0x800), "rcx": rng.choice((0, 1, 2, 7, 40)),
                        "rax": rng.choice((0, 1, 0xFF, rng.getrandbits(64))),
                        "rflags": rflags, "fs_base": 0}
                code = pre + op
                tally[agree(code, 64, regs, win, content)] += 1
                r32 = {k: v & 0xFFFFFFFF for k, v in regs.items()}
                tally[agree(code, 32, r32, win, content)] += 1
    assert tally["ok"] >= 400 and tally["refused"] >= 24, tally  # LOCK forms refuse (#UD)


def test_cmps_repe_stops_early_exact() -> None:
    """A hand-checked REPE CMPSB: the third byte differs, so three elements run, rCX = 5 - 3,
    ZF clear, CF from 0x10 - 0x20; and a DIV by zero is stop #DE after the divisor's read."""
    content = bytearray(0x1000)
    content[0x100:0x103] = b"\x01\x02\x10"
    content[0x200:0x203] = b"\x01\x02\x20"
    regs = {"rsi": REGS_MMIO + 0x100, "rdi": REGS_MMIO + 0x200, "rcx": 5, "rflags": 2}
    rec = _record(bytes.fromhex("f3 a6"), 64, regs, REGS_MMIO + 0x100, ExitKind.MMIO_READ)
    ctx = c.CContext()
    ctx.set_regs_mem(bytes(content))
    res, after = c.handle_one(rec, "capstone", ctx)
    assert res.ok and res.n_acc == 6 and res.next_rip == RIP + 2
    assert after["rcx"] == 2 and after["rsi"] == REGS_MMIO + 0x103 and after["rdi"] == REGS_MMIO + 0x203
    assert after["rflags"] & (ZF | CF) == CF
    rec = _record(bytes.fromhex("f7 32"), 64, {"rdx": REGS_MMIO + 0x300, "rax": 7, "rflags": 2},
                  REGS_MMIO + 0x300, ExitKind.MMIO_READ)  # div dword ptr [rdx], divisor 0
    res, after = c.handle_one(rec, "capstone", ctx)
    assert res.status == "de" and res.n_acc == 1 and after["rax"] == 7


@pytest.mark.parametrize("mode", [64, 32])
@pytest.mark.parametrize("form", NEW_FORMS, ids=lambda f: f.name)
def test_c_path_equals_unicorn(form: Form, mode: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C path against Unicorn directly: the operand in the regs device filled with one byte
    value (so every read of any size answers what the oracle's device answers)."""
    monkeypatch.setattr(test_emulate, "HIGH_MMIO", REGS_MMIO)
    monkeypatch.setattr(test_emulate, "LOW_MMIO", REGS_MMIO)

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(form_case(form, mode), st.integers(0, 255))
    def run(case: tuple, byte: int) -> None:
        code, regs, window, _xmm, m = case
        if window[0] != REGS_MMIO:
            return  # 16-bit addressing window: not a C device
        read_value = int.from_bytes(bytes([byte]) * 16, "little")
        truth = run_one(code, m, RIP, regs, window, read_value, default_ram_regions(RIP, window))
        addr = truth.accesses[0].gpa if truth.accesses else window[0]
        rec = _record(code, m, regs, addr, ExitKind.MMIO_READ)
        ctx = c.CContext()
        ctx.set_regs_mem(bytes([byte]) * 0x1000)
        res, after = c.handle_one(rec, "capstone", ctx)
        where = f"bytes={code.hex(' ')} mode={m}"
        if truth.fault is not None or not res.ok:
            # both refuse, or a documented Unicorn departure the Python tests name (misaligned
            # MOVDQA, LOCK forms Unicorn mis-executes); the C answer is then Python's (other test)
            TALLY["unicorn-skip"] += 1
            return
        acc = decode(code, m, RIP)
        expected = truth.accesses
        if acc.op is Op.NEG and acc.lock and len(expected) == 3:
            expected = expected[1:]  # unicorn 2.1.4: LOCK NEG reads twice (docs/known-discrepancies.md)
        ends_in_window = all(a.gpa + a.size <= window[0] + window[1] for a in expected)
        if not ends_in_window:
            TALLY["unicorn-skip"] += 1
            return
        assert res.n_acc == len(expected) and res.acc_hash == c.access_hash(expected), where
        assert res.next_rip == truth.next_rip, where
        wmask = (1 << m) - 1
        for name, value in truth.regs:
            if name == "rip":
                continue
            ours = after[name]
            if name == "rflags":
                check = STATUS | DF
                if acc.op is Op.NEG and acc.lock:
                    check = CF | 0x10 | OF | DF
                assert ours & check == value & check, f"{where}: rflags {ours:#x} != {value:#x}"
                continue
            if (name == "rax" and acc.op is Op.CMPXCHG and acc.size == 4 and m == 64
                    and truth.reg("rflags") & ZF):
                continue  # unicorn 2.1.4 zero-extends RAX on success (docs/known-discrepancies.md)
            assert ours & wmask == value, f"{where}: {name} {ours:#x} != {value:#x}"
        TALLY[f"{form.name.split()[0]}:unicorn-ok"] += 1

    run()


# ------------------------------------------------------------------------------------- live

WIDE_64 = """
    mov rbx, REGS_MMIO
    mov rdx, NOTIFY_MMIO
    mov dword ptr [rbx], 0x7fffffff
    add dword ptr [rbx], 1
    pushfq
    pop r15
    lock or byte ptr [rbx+1], 0x81
    adc qword ptr [rbx+8], -1
    sbb word ptr [rbx+0x10], 3
    and r9, [rbx]
    sub ecx, dword ptr [rbx+4]
    xor byte ptr [rbx+0x11], ah
    cmp dword ptr [rbx], 5
    setb r14b
    test qword ptr [rbx+8], rsi
    sete r13b
    inc byte ptr [rbx+0x20]
    lock dec word ptr [rbx+0x22]
    not dword ptr [rbx+0x24]
    neg qword ptr [rbx+0x28]
    mov eax, 2
    lock add word ptr [rdx], ax
    mov ecx, 0x55
    xchg [rbx+0x30], ecx
    mov r8, 9
    lock xadd [rbx+0x38], r8
    mov eax, [rbx+0x30]
    mov r10d, 0x66
    lock cmpxchg [rbx+0x30], r10d
    cmpxchg [rbx+0x30], r10d
    mov esi, 37
    bts dword ptr [rbx+0x40], esi
    mov rsi, -3
    btc qword ptr [rbx+0x48], rsi
    btr word ptr [rbx+0x40], 5
    bt dword ptr [rbx+0x40], 1
    setc r12b
    movnti [rbx+0x50], r15
    movdqu xmm1, [rbx]
    movdqa [rbx+0x60], xmm1
    movq xmm2, qword ptr [rbx+8]
    movd [rbx+0x70], xmm2
    movups xmm3, [rbx+0x20]
    movaps [rbx+0x80], xmm3
    movd ecx, xmm3
    lea rsi, [rbx+0x60]
    mov ecx, 3
    rep lodsd
    lodsb
    pushfq
    pop r11
    hlt
"""

WIDE_32 = """
    mov ebx, REGS_MMIO
    mov dword ptr [ebx], 0x80000000
    sub dword ptr [ebx], 1
    pushfd
    pop edi
    lock xor word ptr [ebx+2], 0x1234
    mov ecx, 0x11
    xchg cl, [ebx+4]
    xadd [ebx], ecx
    mov eax, 0
    cmpxchg [ebx+8], ecx
    bts dword ptr [ebx+0x10], 33
    movdqu xmm0, [ebx]
    movdqu [ebx+0x20], xmm0
    lea esi, [ebx+0x20]
    lodsw
    mov ebp, eax
    pushfd
    pop edx
    hlt
"""


FAMILIES_64 = """
    mov rbx, REGS_MMIO
    mov dword ptr [rbx], 0x80000001
    mov qword ptr [rbx+8], -7
    mov eax, 0x10001
    mul dword ptr [rbx]
    imul rcx, qword ptr [rbx+8], -3
    imul r8w, word ptr [rbx]
    imul byte ptr [rbx+1]
    mov edx, 0
    mov eax, 1000
    div dword ptr [rbx+8]
    mov rdx, -1
    mov rax, -100
    idiv qword ptr [rbx+8]
    shl dword ptr [rbx], 1
    mov cl, 35
    sar qword ptr [rbx+8], cl
    rcl word ptr [rbx+2], 3
    ror byte ptr [rbx+4], cl
    stc
    rcr dword ptr [rbx+4], 7
    shld dword ptr [rbx], esi, 9
    shrd qword ptr [rbx+8], rdi, cl
    bsf r9d, dword ptr [rbx]
    bsr r10, qword ptr [rbx+8]
    popcnt r11, qword ptr [rbx+8]
    lzcnt r12d, dword ptr [rbx+0x40]
    tzcnt r13w, word ptr [rbx]
    cmp eax, eax
    cmove r14, qword ptr [rbx+8]
    cmovne r15d, dword ptr [rbx]
    setae byte ptr [rbx+0x20]
    setl byte ptr [rbx+0x21]
    mov dword ptr [rbx+0x100], 0x04030201
    mov dword ptr [rbx+0x200], 0x05030201
    lea rsi, [rbx+0x100]
    lea rdi, [rbx+0x200]
    mov ecx, 4
    repe cmpsb
    mov eax, 0x05
    lea rdi, [rbx+0x200]
    mov ecx, 8
    repne scasb
    lea rsi, [rip+text]
    lea rdi, [rbx+0x100]
    mov ecx, 4
    repe cmpsb
    lea rsi, [rbx+0x100]
    lea rdi, [rip+text]
    mov ecx, 4
    std
    add rsi, 3
    add rdi, 3
    repne cmpsb
    cld
    pushfq
    pop rbp
    xor edx, edx
    div dword ptr [rbx+0x300]
    hlt
text: .byte 1, 2, 3, 9
"""

FAMILIES_32 = """
    mov ebx, REGS_MMIO
    mov dword ptr [ebx], 0xfffffff0
    mov eax, 3
    imul eax, dword ptr [ebx], 100
    mov edx, 0
    mov eax, 77
    div byte ptr [ebx+1]
    shr dword ptr [ebx], 4
    rol word ptr [ebx], 1
    bsr ecx, dword ptr [ebx]
    cmovs esi, dword ptr [ebx]
    sets byte ptr [ebx+8]
    lea edi, [ebx]
    mov eax, 0
    mov ecx, 3
    repe scasd
    pushfd
    pop ebp
    hlt
"""


@pytest.mark.parametrize("src,mode,stop", [(FAMILIES_64, 64, "triple_fault"), (FAMILIES_32, 32, "hlt")],
                         ids=["families64", "families32"])
def test_live_issue14_families_equal_python_machine(src: str, mode: int, stop: str) -> None:
    """The issue-14 families live on the C engine (exit style) against the Python machine: same
    registers, RFLAGS, device contents and stop (the 64-bit program ends on DIV by zero: #DE)."""
    py = Machine(assemble(src, mode=mode), board=default_board(), mmio_style="exit", path=GenericPath())
    pr = py.run(timeout=20)
    ctx = c.CContext()
    cr = c.run_machine_c(assemble(src, mode=mode), path="capstone", style="exit", ctx=ctx)
    assert pr.stop.reason.value == stop, pr.stop
    assert cr.stop.reason.value == stop, cr.stop
    assert cr.stop.rip == pr.stop.rip
    assert cr.regs == pr.regs
    assert ctx.regs_mem == bytes(py.board.regs.mem)
    assert cr.exits == pr.exits


@pytest.mark.parametrize("src,mode", [(WIDE_64, 64), (WIDE_32, 32)], ids=["wide64", "wide32"])
@pytest.mark.parametrize("path", ["capstone", "subset", "pv-fast"])
def test_live_rmw_sse_equals_python_machine(src: str, mode: int, path: str) -> None:
    """The new forms live (exit style): registers (incl. RFLAGS, XMM through the C accessor),
    device contents and kicks equal the Python machine's."""
    py = Machine(assemble(src, mode=mode), board=default_board(), mmio_style="exit", path=GenericPath())
    pr = py.run(timeout=20)
    ctx = c.CContext()
    cr = c.run_machine_c(assemble(src, mode=mode), path=path, style="exit", ctx=ctx)
    assert pr.stop.reason.value == "hlt", pr.stop
    assert cr.stop.reason.value == "hlt", cr.stop
    assert cr.stop.rip == pr.stop.rip
    assert cr.regs == pr.regs
    assert ctx.regs_mem == bytes(py.board.regs.mem)
    assert ctx.kicks == dict(py.board.notify.kicks)
    assert cr.exits == pr.exits


SSE_PAIRS = [  # (store, load, aligned)
    ("movd", "movd", False), ("movq", "movq", False), ("movdqu", "movdqu", False),
    ("movdqa", "movdqa", True), ("movups", "movups", False), ("movupd", "movupd", False),
    ("movaps", "movaps", True), ("movapd", "movapd", True), ("movntdq", "movdqa", True),
    ("movntps", "movaps", True), ("movntpd", "movapd", True),
]


@pytest.mark.parametrize("mode", [64, 32])
@pytest.mark.parametrize("store,load,aligned", SSE_PAIRS, ids=[p[0] for p in SSE_PAIRS])
def test_live_sse_forms_equal_python_machine(store: str, load: str, aligned: bool, mode: int) -> None:
    """Each SSE form live: a random XMM value stored to the regs device and loaded back (and the
    device's id bytes loaded), XMM read and written through the C `vec` accessor."""
    rng = random.Random(f"{store}{mode}")
    off = 0x40 if aligned else 0x43
    ptr = "rbx" if mode == 64 else "ebx"
    width = {"movd": "dword ptr ", "movq": "qword ptr "}.get(store, "")
    src = f"""
    mov {ptr}, REGS_MMIO
    movdqu xmm5, [data]
    {store} {width}[{ptr}+{off:#x}], xmm5
    {load} xmm6, {width}[{ptr}+{off:#x}]
    {load} xmm7, {width}[{ptr}]
    movdqu [out], xmm6
    movdqu [out+16], xmm7
    mov eax, [out]
    mov ecx, [out+4]
    mov edx, [out+8]
    mov esi, [out+12]
    mov edi, [out+16]
    mov ebp, [out+28]
    hlt
data: .quad {rng.getrandbits(64):#x}, {rng.getrandbits(64):#x}
out: .quad 0, 0, 0, 0
"""
    py = Machine(assemble(src, mode=mode), board=default_board(), mmio_style="exit", path=GenericPath())
    pr = py.run(timeout=20)
    ctx = c.CContext()
    cr = c.run_machine_c(assemble(src, mode=mode), path="capstone", style="exit", ctx=ctx)
    assert pr.stop.reason.value == "hlt", pr.stop
    assert cr.stop.reason.value == "hlt", cr.stop
    assert cr.regs == pr.regs
    assert ctx.regs_mem == bytes(py.board.regs.mem)
    assert pr.regs["rax"] != 0 or pr.regs["rcx"] != 0  # the value made the round trip
    TALLY[f"{store}:live-ok"] += 1


def test_generic_is_an_alias_of_the_c_capstone_path() -> None:
    """docs/c-capstone-path.md "Naming": `generic` names the full-decode path on every engine; the
    C API takes it as well as the C path's own name `capstone`, with the same answer."""
    regs = {"rdx": REGS_MMIO + 0x10, "rax": 6, "rflags": 2}
    rec = _record(bytes.fromhex("f7 22"), 64, regs, REGS_MMIO + 0x10, ExitKind.MMIO_READ)  # mul [rdx]
    a, after_a = c.handle_one(rec, "generic", c.CContext())
    b, after_b = c.handle_one(rec, "capstone", c.CContext())
    assert a.ok and a == b and after_a == after_b
    with pytest.raises(ValueError, match="generic"):
        c.handle_one(rec, "no-such-path")


REP_COMPARE = """
    mov rbx, REGS_MMIO
    mov byte ptr [rbx+0x46], 1
    mov byte ptr [rbx+0x86], 2
    lea rsi, [rbx+0x40]
    lea rdi, [rbx+0x80]
    mov ecx, 12
    {insn}
    mov eax, 1
    mov eax, 2
    hlt
"""


@pytest.mark.parametrize("insn", ["repe cmpsb", "repne cmpsb", "mov al, 2\n    repne scasb",
                                  "xor eax, eax\n    repe scasb"])
def test_rep_compare_under_a_budget_counts_as_in_place(insn: str) -> None:
    """REPE/REPNE CMPS/SCAS under every budget around their iterations: the C engine and the
    Python machine in exit style stop where Unicorn in place stops (each iteration counts; one
    ended by its compare has no extra entry), with the same registers."""
    src = REP_COMPARE.format(insn=insn)
    for n in range(4, 28):
        ip = Machine(assemble(src, mode=64), board=default_board(), mmio_style="inplace").run(max_insns=n)
        py = Machine(assemble(src, mode=64), board=default_board(), mmio_style="exit",
                     path=GenericPath()).run(max_insns=n)
        cr = c.run_machine_c(assemble(src, mode=64), path="capstone", style="exit", max_insns=n)
        for r in (py, cr):
            assert (r.stop.reason, r.stop.rip) == (ip.stop.reason, ip.stop.rip), (insn, n, r.stop, ip.stop)
            assert r.regs == ip.regs, (insn, n)


@pytest.mark.parametrize("insn", ["repe cmpsb", "repe cmpsw", "repne scasb"])
def test_rep_compare_fault_part_way_equals_python_machine(insn: str) -> None:
    """SEMANTICS rule 6 for CMPS/SCAS: the elements before the one that runs off the register
    device into unmapped space stay done (rCX/rSI/rDI, flags), the faulting one does nothing; the
    C engine stops `unmapped` at the same address and state as the Python machine."""
    src = f"""
    mov rsi, REGS_MMIO+0xffb
    mov rdi, REGS_MMIO+0xffb
    mov eax, 0x55
    mov ecx, 9
    {insn}
    hlt
"""
    py = Machine(assemble(src, mode=64), board=default_board(), mmio_style="exit", path=GenericPath())
    pr = py.run(timeout=20)
    ctx = c.CContext()
    cr = c.run_machine_c(assemble(src, mode=64), path="capstone", style="exit", ctx=ctx)
    assert pr.stop.reason.value == "unmapped", pr.stop
    assert (cr.stop.reason, cr.stop.rip) == (pr.stop.reason, pr.stop.rip)
    assert "0xfeb02000" in pr.stop.message and "0xfeb02000" in cr.stop.message, (pr.stop, cr.stop)
    assert cr.regs == pr.regs and 0 < pr.regs["rcx"] < 9
    assert ctx.regs_mem == bytes(py.board.regs.mem)
