"""The C capstone path on the stack, atomic, vector-move and misc families (fastpath/csrc/sem_stack.c,
sem_atomic.c, sem_vector.c, sem_misc.c) against the Python generic path and against Unicorn.

Cases come from difftest's per-family generators (RAM and MMIO operands, stacks in RAM or in the
device, random registers, flags, YMM/MMX registers), plus VEX moves (Unicorn has no AVX: those
are checked against Python only).  Each case is handled by the C path on the full guest state
(fastpath/cstate.py: registers, RAM, vector registers, CR0) with the exit Unicorn reports:

- against Python: the same device (a byte array at the window, the C register device moved
  there), both refuse -- the C one touching nothing -- or both give the same device accesses in
  order, registers, RFLAGS, YMM/MMX registers, RAM, device bytes and next RIP;
- against Unicorn: every read answers the case's constant byte, as the oracle's device does;
  the documented Unicorn departures (docs/known-discrepancies.md) are named allowances.

`python tests/emulate/test_c_families.py --cases N` prints agreement counts per family.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import replace

import pytest
from difftest import FAMILIES, MMIO, RIP, Case, _known_fault, _modrm_case, operand, run_truth

from emu.access import Op
from emu.batchcpu import BatchCpu, default_ram_regions
from emu.cpu import DeviceAccess
from emu.decode import decode
from emu.emulate import ZF
from emu.errors import EmulationError
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.generic import GenericPath, emulate_at
from emu.oracle import OracleResult
from emu.platform import RAM_BASE, RAM_SIZE
from fastpath.cengine import CContext, access_hash
from fastpath.cstate import VecState, run_state

M64 = (1 << 64) - 1
C_FAMILIES = ("stack", "atomic", "vector", "misc")
_GPR = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi")


class ArrayCpu(BatchCpu):
    """A BatchCpu whose device is a byte array over the window (the C register device's model)."""

    def __init__(self, *args: object, content: bytes = b"", **kw: object) -> None:
        super().__init__(*args, **kw)
        self.dev = bytearray(content)

    def mmio_read(self, gpa: int, size: int) -> int:
        off = gpa - self.mmio[0]
        value = int.from_bytes(self.dev[off:off + size], "little")
        self.accesses.append(DeviceAccess(gpa, size, False, value))
        return value

    def mmio_write(self, gpa: int, size: int, value: int) -> None:
        off = gpa - self.mmio[0]
        self.dev[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        self.accesses.append(DeviceAccess(gpa, size, True, value))


def _ctx(window: tuple[int, int]) -> CContext:
    ctx = CContext()
    ctx.open_capstone()
    ctx.cdata.dev.regs_base, ctx.cdata.dev.regs_size = window
    ctx.cdata.dev.notify_size = 0  # one device: the byte array over the window
    return ctx


def _state(case: Case, content: bytes) -> tuple[ArrayCpu, bytearray]:
    ram = default_ram_regions(RIP, case.mmio)
    cpu = ArrayCpu(case.mode, {**case.regs, "rip": RIP}, case.mmio, 0, ram, None, case.ymm, cr0=case.cr0,
                   content=content)
    cpu.write_mem(RIP, case.code)
    for addr, data in case.ram_data:
        cpu.write_mem(addr, data)
    for i, v in (case.mm or {}).items():
        cpu.set_mm(i, v)
    flat = bytearray(RAM_SIZE)
    flat[RIP - RAM_BASE:RIP - RAM_BASE + len(case.code)] = case.code
    for addr, data in case.ram_data:
        flat[addr - RAM_BASE:addr - RAM_BASE + len(data)] = data
    return cpu, flat


def _exit(case: Case, truth_accesses: tuple[DeviceAccess, ...]) -> ExitRecord:
    first = truth_accesses[0] if truth_accesses else None
    kind = ExitKind.MMIO_WRITE if first is not None and first.write else ExitKind.MMIO_READ
    addr = first.gpa if first is not None else case.mmio[0]
    regs = {**case.regs, "rip": RIP}
    return ExitRecord(kind, RIP, case.mode, addr, case.code, tuple(regs.get(n, 0) & M64 for n in REG_NAMES))


def c_vs_python(case: Case, rec: ExitRecord, content: bytes, ctx: CContext) -> str:
    """Both paths on the same state and device; AssertionError on any difference."""
    cpu, flat = _state(case, content)
    try:
        out = GenericPath().handle(rec, cpu)
        err = None
    except EmulationError as exc:
        out, err = None, exc
    ctx.set_regs_mem(content)
    ctx.reset_counts()
    start_ymm = {i: cpu.get_ymm(i) for i in range(16)}
    vec = VecState(dict(start_ymm), {i: cpu.get_mm(i) for i in range(8)}, case.cr0)
    res, after = run_state(ctx, "capstone", case.mode, rec.kind, rec.addr, {**case.regs, "rip": RIP}, flat,
                           RAM_BASE, vec)
    where = f"{case.where()} exit={rec.kind.value}@{rec.addr:#x}"
    if err is not None:
        assert not res.ok, f"{where}: Python refused ({err}), C did {res}"
        done = tuple(getattr(err, "accesses", ()) or ())
        assert res.n_acc == len(done) and res.acc_hash == access_hash(done), f"{where}: C refusal accessed"
        if not done:
            assert all(after[n] == (({**case.regs, "rip": RIP}).get(n, 0) & M64) for n in REG_NAMES), where
            assert vec.out_ymm == start_ymm, where
        return "refused"
    assert out is not None
    assert res.ok, f"{where}: C refused ({res.status}, {ctx.error}) what Python did: {out}"
    assert res.n_acc == len(out.accesses) and res.acc_hash == access_hash(out.accesses), (
        f"{where}: accesses differ: C n={res.n_acc} first "
        f"{(hex(res.gpa), res.size, res.write, hex(res.value))}, Python {out.accesses}")
    assert res.next_rip == out.next_rip, f"{where}: next rip {res.next_rip:#x} != {out.next_rip:#x}"
    diff = {n: (hex(after[n]), hex(cpu.get(n))) for n in REG_NAMES if n != "rip" and after[n] != cpu.get(n)}
    assert not diff, f"{where}: registers (C, Python) {diff}"
    assert vec.out_ymm == {i: cpu.get_ymm(i) for i in range(16)}, f"{where}: YMM registers differ"
    assert vec.out_mm == {i: cpu.get_mm(i) for i in range(8)}, f"{where}: MMX registers differ"
    assert ctx.regs_mem == bytes(cpu.dev), f"{where}: device bytes differ"
    image = bytearray(RAM_SIZE)
    for page, data in cpu.pages.items():
        off = page * 0x1000 - RAM_BASE
        if 0 <= off < RAM_SIZE:
            image[off:off + 0x1000] = data
    assert flat == image, f"{where}: RAM differs"
    return "agree"


def _reads_back(accesses: tuple[DeviceAccess, ...]) -> bool:
    """A device read of bytes an earlier access of the same instruction wrote."""
    written: set[int] = set()
    for a in accesses:
        span = set(range(a.gpa, a.gpa + a.size))
        if a.write:
            written |= span
        elif span & written:
            return True
    return False


def c_vs_unicorn(case: Case, rec: ExitRecord, t: OracleResult, ctx: CContext) -> str:
    """The C path against Unicorn's answer (constant-byte device); 'agree', 'both-fault', 'known'."""
    byte = case.read_value & 0xFF
    content = bytes([byte]) * case.mmio[1]
    cpu, flat = _state(case, content)
    ctx.set_regs_mem(content)
    ctx.reset_counts()
    vec = VecState({i: cpu.get_ymm(i) for i in range(16)}, {i: cpu.get_mm(i) for i in range(8)}, case.cr0)
    res, after = run_state(ctx, "capstone", case.mode, rec.kind, rec.addr, {**case.regs, "rip": RIP}, flat,
                           RAM_BASE, vec)
    where = f"{case.where()} exit={rec.kind.value}@{rec.addr:#x}"
    if not res.ok:
        try:
            GenericPath().handle(rec, cpu)
        except EmulationError as exc:
            if _known_fault(exc, t):
                return "known"
        assert t.fault is not None, f"{where}: C refused ({res.status}) but unicorn ran it"
        return "both-fault"
    if t.fault is not None and res.next_rip == RIP and len(t.accesses) > res.n_acc:
        # a CALL/JMP to itself: the one-step oracle keeps running it (its stop is "RIP moved"), until
        # the stack leaves the window; the first execution is what the exit is about
        return "oracle-self-branch"
    if t.fault is not None and not ("FETCH_UNMAPPED" in t.fault and t.next_rip == res.next_rip):
        raise AssertionError(f"{where}: unicorn faulted ({t.fault}) but C emulated")
    access = decode(case.code, case.mode, RIP)
    expected = tuple(t.accesses)
    if _reads_back(expected):
        # ENTER copying frame pointers out of the slots it just pushed: the oracle's device answers
        # the constant, a byte-array device (the C one) what was written; c_vs_python covers it
        return "readback"
    if access.op is Op.MOVBE and access.mem_is_dest:
        # unicorn-movbe-hook-value: the hook reports the unswapped value; compare the rest
        expected = tuple(replace(a, value=0) for a in expected)
        assert res.n_acc == len(expected) and (res.gpa, res.size, res.write) == (
            expected[0].gpa, expected[0].size, expected[0].write), f"{where}: accesses"
    else:
        assert res.n_acc == len(expected) and res.acc_hash == access_hash(expected), (
            f"{where}: accesses: C n={res.n_acc} first {(hex(res.gpa), res.size, hex(res.value))}, "
            f"truth {expected}")
    assert res.next_rip == t.next_rip, f"{where}: next rip"
    wmask = (1 << case.mode) - 1
    for name, value in t.regs:
        if name == "rip":
            continue
        ours = after[name]
        if name == "rflags":
            m = case.flags_mask
            assert ours & m == value & m, f"{where}: rflags {ours:#x} != {value:#x}"
            continue
        if "upper-acc-zero-extended" in case.allow and name in ("rax", "rdx") and t.reg("rflags") & ZF:
            assert ours & 0xFFFFFFFF == value & 0xFFFFFFFF, f"{where}: {name}"
            continue
        assert ours & wmask == value, f"{where}: {name} {ours:#x} != {value:#x}"
    for i, value in enumerate(t.ymm):
        assert vec.out_ymm[i] == value, f"{where}: ymm{i}"
    for i, value in enumerate(t.mm):
        assert vec.out_mm[i] == value, f"{where}: mm{i}"
    for (addr, n), (_, data) in zip(case.watch, t.memory, strict=False):
        assert bytes(flat[addr - RAM_BASE:addr - RAM_BASE + n]) == data, f"{where}: memory at {addr:#x}"
    return "agree"


# VEX moves (no Unicorn oracle: unicorn 2.1.4 has no AVX): opcode bytes after C5/C4, operand size
_VEX = [
    (b"\xc5\xfa\x10", 4), (b"\xc5\xfa\x11", 4), (b"\xc5\xfb\x10", 8), (b"\xc5\xfb\x11", 8),  # vmovss/sd
    (b"\xc5\xf9\x6e", 4), (b"\xc5\xf9\x7e", 4), (b"\xc5\xfa\x7e", 8), (b"\xc5\xf9\xd6", 8),  # vmovd/q
    (b"\xc5\xfa\x6f", 16), (b"\xc5\xfe\x6f", 32), (b"\xc5\xfe\x7f", 32), (b"\xc5\xf8\x10", 16),
    (b"\xc5\xfc\x11", 32), (b"\xc5\xfd\x10", 32), (b"\xc5\xff\xf0", 32), (b"\xc5\xfb\xf0", 16),
    (b"\xc5\xf9\x6f", 16), (b"\xc5\xfd\x6f", 32), (b"\xc5\xfd\x7f", 32), (b"\xc5\xf8\x28", 16),
    (b"\xc5\xfc\x29", 32), (b"\xc5\xf9\x29", 16), (b"\xc5\xfd\xe7", 32), (b"\xc5\xf8\x2b", 16),
    (b"\xc5\xfd\x2b", 32), (b"\xc4\xe2\x7d\x2a", 32), (b"\xc4\xe2\x79\x2a", 16),
]


def gen_vex(rng: random.Random) -> Case:
    mode = rng.choice([64, 32])
    op, size = rng.choice(_VEX)
    aligned = rng.random() < 0.85
    off = rng.randrange(0, 0x1000 - 64) // 32 * 32 + (0 if aligned else rng.choice([1, 4, 8, 16]))
    reg = rng.randrange(8)
    code = op + bytes([0x80 | reg << 3 | 2]) + off.to_bytes(4, "little")  # [rdx/edx + disp32]
    regs = {"rdx": MMIO[0], "rflags": 2}
    ymm = {i: rng.getrandbits(256) for i in range(16)}
    return Case(code, mode, regs, rng.getrandbits(64), ymm=ymm)


def _python_exit(case: Case) -> ExitRecord | None:
    """The exit a case makes where Unicorn cannot say (no AVX, no MOVDIR*): Python's first device
    access; None when it makes none (RAM only)."""
    cpu, _ = _state(case, bytes(case.mmio[1]))
    try:
        out = emulate_at(cpu, RIP, case.mode)
        accesses = out.accesses
    except EmulationError as exc:
        accesses = tuple(getattr(exc, "accesses", ()) or ())
        if not accesses:
            return _exit(case, ())  # refused or faulted before any access: both must refuse
    return _exit(case, tuple(accesses)) if accesses else None


def gen_direct(rng: random.Random) -> Case:
    """Forms without a Unicorn oracle or outside difftest's generators: MOVDIRI, MOVDIR64B (either
    side in the device or RAM, 64-byte aligned or not), MOVSXD r16, LOCK on forms where it is #UD
    or allowed, 66 PUSH/POP m16 with the operand in the device, a CS override in 32-bit code."""
    mode = 64 if rng.random() < 0.7 else 32
    kind = rng.randrange(7)
    lock = b"\xf0" if rng.random() < 0.15 else b""
    cs = b"\x2e" if mode == 32 and rng.random() < 0.15 else b""
    if kind == 0:  # MOVDIRI m32/m64, r
        pre, size = (b"\x48", 8) if mode == 64 and rng.random() < 0.5 else (b"", 4)
        if rng.random() < 0.1:
            pre = rng.choice([b"\x66", b"\xf3"]) + pre
        return _modrm_case(rng, mode, b"\x0f\x38\xf9", rng.randrange(8), size, lock + cs + pre)
    if kind == 1:  # MOVDIR64B r, m512: ES:[r] destination
        case = _modrm_case(rng, mode, b"\x0f\x38\xf8", rng.choice([0, 1, 6, 7]), 64, lock + b"\x66",
                           mem_span=64, base=3)
        reg = _GPR[(case.code[-1] if case.code[-1] & 0xC0 == 0 else case.code[-2]) >> 3 & 7]
        dst, _ = operand(rng, 64, 64 if rng.random() < 0.9 else 8)
        case.regs[reg] = dst
        if dst < MMIO[0]:
            case.ram_data += ((dst, bytes(64)),)
        return case
    if kind == 2:  # MOVSXD r16, m16 (66 63 /r; Intel: a 2-byte read)
        return _modrm_case(rng, 64, b"\x63", rng.randrange(8), 2, b"\x66")
    if kind == 3:  # LOCK CMPXCHG8B/16B, LOCK MOVBE (#UD)
        if rng.random() < 0.5:
            return _modrm_case(rng, mode, b"\x0f\xc7", 1, 8, b"\xf0" + cs)
        return _modrm_case(rng, mode, b"\x0f\x38\xf1", rng.randrange(8), 4, b"\xf0")
    if kind == 4:  # 66 PUSH m16 / POP m16 with the operand in the device, stack in the device too
        code_op, reg = (b"\xff", 6) if rng.random() < 0.5 else (b"\x8f", 0)
        case = _modrm_case(rng, mode, code_op, reg, 2, b"\x66" + lock + cs)
        case.regs["rsp"] = MMIO[0] + rng.randrange(0x100, 0xF00) // 2 * 2
        return case
    if kind == 5:  # SMSW m16 / XLAT through segment overrides (CS: #GP on the store in 32-bit code)
        if rng.random() < 0.5:
            return _modrm_case(rng, mode, b"\x0f\x01", 4, 2, cs + lock + rng.choice([b"", b"\x66"]))
        case = _modrm_case(rng, mode, b"\x90", 0, 1)
        case.code = lock + rng.choice([b"", b"\x2e", b"\x64"]) + b"\xd7"
        case.regs["rbx"] = MMIO[0] + rng.randrange(0, 0xF00)
        case.regs["fs_base"] = 0
        return case
    # stack ops with LOCK / 66 (refused) or in the device at the window's edge (runs off: #PF-like)
    code = rng.choice([b"\xc3", b"\xc9", b"\x50", b"\x58", b"\xc8\x08\x00\x01", b"\xe8\x00\x00\x00\x00"])
    case = _modrm_case(rng, mode, b"\x90", 0, 1)
    case.code = lock + rng.choice([b"", b"", b"\x66"]) + code
    edge = rng.choice([0x1000, 0x0FFC, 0x0FF8, 0x4, 0x0])
    case.regs["rsp"] = case.regs["rbp"] = MMIO[0] + edge
    return case


def run_family(name: str, cases: int, seed: int, counts: Counter[str]) -> list[str]:
    """Run `cases` cases of family `name`; tallies outcomes in `counts`, returns the failures."""
    rng = random.Random(f"c-{name}:{seed}")
    gen = PYTHON_ONLY.get(name) or FAMILIES[name]
    ctx = _ctx(MMIO)
    failures: list[str] = []
    for _ in range(cases):
        case = gen(rng)
        byte = rng.getrandbits(8)
        case.read_value = int.from_bytes(bytes([byte]) * 8, "little")
        try:
            if name in PYTHON_ONLY:
                got = _python_exit(case)
                if got is None:
                    counts[f"{name}:no-exit"] += 1
                    continue
                rec = got
            else:
                truth = run_truth(case)
                if not truth.accesses and truth.fault is None:
                    counts[f"{name}:no-exit"] += 1  # RAM only: Unicorn made no device access
                    continue
                rec = _exit(case, tuple(truth.accesses))
                counts[f"{name}:unicorn-{c_vs_unicorn(case, rec, truth, ctx)}"] += 1
            content = bytes(rng.getrandbits(8) for _ in range(MMIO[1]))
            counts[f"{name}:python-{c_vs_python(case, rec, content, ctx)}"] += 1
        except AssertionError as exc:
            counts[f"{name}:FAIL"] += 1
            if len(failures) < 5:
                failures.append(str(exc)[:600])
    return failures


PYTHON_ONLY = {"vex": gen_vex, "direct": gen_direct}


@pytest.mark.parametrize("name", [*C_FAMILIES, *PYTHON_ONLY])
def test_c_family_agrees(name: str) -> None:
    counts: Counter[str] = Counter()
    failures = run_family(name, 200, 1, counts)
    assert not failures, "\n".join(failures)
    assert counts[f"{name}:python-agree"] >= 60, counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="C capstone path vs Python and Unicorn, per family")
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("families", nargs="*", default=[*C_FAMILIES, *PYTHON_ONLY])
    args = p.parse_args(argv)
    bad = 0
    for name in args.families:
        counts: Counter[str] = Counter()
        failures = run_family(name, args.cases, args.seed, counts)
        print(name, dict(sorted(counts.items())))
        for f in failures:
            print("  FAIL", f)
        bad += len(failures)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())


@pytest.mark.parametrize("code", ["ff 29", "ff 19", "ff 6a 08", "f2 36 66 49 0f 38 f1 2f",
                                  "f2 65 66 0f 38 f0 22", "f3 0f 38 f0 22",
                                  "f2 66 4c 0f 7e 0e", "f2 4d 0f 6e 06", "f3 0f 6e 06", "f2 0f 7f 06"])
def test_far_branch_and_crc32_alias_refused(code: str) -> None:
    """Found by exitlab fuzz: FF /3 and FF /5 are far CALL/JMP (Capstone names them CALL/JMP),
    0F 38 F0/F1 under F2 is CRC32 (Capstone says MOVBE when a prefix sits between F2 and 66), and
    an F2/F3 on an MMX/SSE move selects another instruction or #UD (Capstone decodes the
    prefix-less MOVD/MOVQ): both paths refuse them, the C one touching nothing."""
    raw = bytes.fromhex(code)
    with pytest.raises(EmulationError):
        decode(raw, 64, RIP)
    case = Case(raw, 64, {"rcx": MMIO[0] + 0x40, "rdx": MMIO[0] + 0x80, "r15": MMIO[0] + 0x100,
                          "rsi": MMIO[0] + 0x140, "r14": MMIO[0] + 0x180, "rsp": MMIO[0] + 0x800,
                          "rflags": 2},
                ymm={i: 0 for i in range(16)}, mm={i: 0 for i in range(8)})
    for addr in (MMIO[0] + 0x40, MMIO[0] + 0x80, MMIO[0] + 0x100, MMIO[0] + 0x140, MMIO[0] + 0x180):
        rec = replace(_exit(case, ()), addr=addr)
        assert c_vs_python(case, rec, bytes(range(256)) * 16, _ctx(MMIO)) == "refused"


@pytest.mark.parametrize("mode", [64, 32])
def test_movntq_agrees_with_unicorn_and_python(mode: int) -> None:
    """MOVNTQ m64, mm (NP 0F E7 /r, Intel SDM vol. 2B): one 8-byte device write of mmN, no alignment
    requirement, no register or flag change; under F2/F3 it is #UD, under 66 it is MOVNTDQ. Added by
    one row of the opcode map (emu/x86-opcode-map.txt); the C path against Unicorn and against Python."""
    rng = random.Random(f"movntq:{mode}")
    ctx = _ctx(MMIO)
    for reg in range(8):
        for off in (0x18, 0x23):  # aligned, misaligned
            code = bytes([0x0F, 0xE7, 0x02 | reg << 3])  # movntq [rdx], mmN
            mm = {i: rng.getrandbits(64) for i in range(8)}
            ymm = {i: 0 for i in range(16 if mode == 64 else 8)}
            case = Case(code, mode, {"rdx": MMIO[0] + off, "rflags": 2}, ymm=ymm, mm=mm)
            truth = run_truth(case)
            assert truth.fault is None
            assert tuple(truth.accesses) == (DeviceAccess(MMIO[0] + off, 8, True, mm[reg]),)
            rec = _exit(case, tuple(truth.accesses))
            assert c_vs_unicorn(case, rec, truth, ctx) == "agree", case.where()
            assert c_vs_python(case, rec, bytes(range(256)) * (MMIO[1] // 256), ctx) == "agree", case.where()
    for code in ("f3 0f e7 02", "f2 0f e7 02", "0f e7 c2"):
        with pytest.raises(EmulationError):
            decode(bytes.fromhex(code), mode, RIP)
    assert decode(bytes.fromhex("66 0f e7 02"), mode, RIP).mnemonic == "movntdq"
