"""Differential tests of the generic path (decode + emulate) against Unicorn, one instruction at a time.

Every supported form is encoded here from its opcode with a random addressing mode (every base and
index register, scale, disp0/8/32, RIP-relative, absolute, SIB, REX.B/X/R, 0x67, segment
overrides), random registers, flags and XMM values, then run both by emu.oracle (Unicorn) and by
the generic path over a BatchCpu; device accesses, registers, RFLAGS, XMM and next RIP must agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.access import Op
from emu.batchcpu import BatchCpu, default_ram_regions
from emu.cpu import DeviceAccess
from emu.decode import decode
from emu.emulate import AF, CF, DF, OF, STATUS, ZF
from emu.errors import EmulationError
from emu.generic import emulate_at
from emu.oracle import run_one

M64 = (1 << 64) - 1
HIGH_MMIO = 0xFEB00000
LOW_MMIO = 0x10000000   # reachable by disp32 and RIP-relative from low RAM
MMIO16 = 0xA000         # reachable by 16-bit addressing
RIP = 0x1000
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def _cut_at_window_end(a: DeviceAccess, mmio: tuple[int, int]) -> DeviceAccess:
    """Known unicorn 2.1.4 deviation (docs/known-discrepancies.md): an access that starts in the
    window and runs past its end into RAM reaches the hook whole; the device must see only the
    bytes inside the window (KVM splits at the page edge), the rest goes to RAM."""
    end = mmio[0] + mmio[1]
    if a.gpa < end < a.gpa + a.size:
        keep = end - a.gpa
        return DeviceAccess(a.gpa, keep, a.write, a.value & ((1 << (8 * keep)) - 1))
    return a


def compare(code: bytes, mode: int, regs: dict[str, int], mmio: tuple[int, int], read_value: int,
            xmm: dict[int, int] | None = None, rip: int = RIP,
            ram_data: tuple[tuple[int, bytes], ...] = (), watch: tuple[tuple[int, int], ...] = ()) -> None:
    """Assert the generic path does exactly what Unicorn does (or both refuse)."""
    ram = default_ram_regions(rip, mmio)
    wmask = (1 << mode) - 1
    truth = run_one(code, mode, rip, regs, mmio, read_value, ram, xmm, ram_data, watch)
    cpu = BatchCpu(mode, {**regs, "rip": rip}, mmio, read_value, ram, xmm)
    cpu.write_mem(rip, code)
    for addr, data in ram_data:
        cpu.write_mem(addr, data)
    where = f"bytes={code.hex(' ')} mode={mode}"
    try:
        out = emulate_at(cpu, rip, mode)
    except EmulationError as exc:
        if truth.fault is None and "write through a CS override" in str(exc) and mode == 32:
            return  # known unicorn 2.1.4 deviation (docs): it writes through a CS override
        assert truth.fault is not None, f"{where}: we refused ({exc}) but unicorn ran it"
        return
    access = decode(code, mode, rip)
    if access.op in (Op.SHLD, Op.SHRD) and access.imm is not None and access.mem.rip_relative:
        # Known unicorn 2.1.4 deviation (docs): SHLD/SHRD r/m, r, imm8 with a RIP-relative operand
        # leave the imm8 out of the RIP-relative base, so unicorn accesses one byte lower.
        assert truth.fault or all(t.gpa + 1 == o.gpa for t, o in zip(truth.accesses, out.accesses,
                                                                      strict=True)), where
        return
    assert truth.fault is None, f"{where}: unicorn faulted ({truth.fault}) but we emulated {out}"
    expected = truth.accesses
    if access.op is Op.NEG and access.lock and truth.accesses:
        # Known unicorn 2.1.4 artifact (docs/known-discrepancies.md): LOCK NEG is a load plus a
        # cmpxchg loop, so the device sees the read twice. A device must see one read, one write.
        assert truth.accesses[0] == truth.accesses[1] and not truth.accesses[1].write, where
        expected = truth.accesses[1:]
    expected = tuple(_cut_at_window_end(a, mmio) for a in expected)
    got = out.accesses
    if got != expected:
        # Known unicorn 2.1.4 deviation, the mirror image: the MMIO piece of an access that starts
        # in RAM and runs into the window never reaches the hooks. Only that piece may be missing.
        got = tuple(a for a in got if not (a.gpa == mmio[0] and a.size < max(access.size, 1)))
    assert got == expected, where
    assert out.next_rip == truth.next_rip, where
    for name, value in truth.regs:
        if name == "rip":
            continue
        ours = cpu.get(name)
        if name == "rflags":
            check = STATUS | DF
            if access.op is Op.NEG and access.lock:
                check = CF | AF | OF | DF  # unicorn 2.1.4 computes ZF/SF/PF of LOCK NEG wrongly (docs)
            assert ours & check == value & check, f"{where}: rflags {ours:#x} != {value:#x}"
            continue
        if (name == "rax" and access.op is Op.CMPXCHG and access.size == 4 and mode == 64
                and truth.reg("rflags") & ZF):
            # Known unicorn 2.1.4 deviation (docs/known-discrepancies.md): a successful 32-bit
            # cmpxchg zero-extends RAX; the SDM leaves the accumulator untouched.
            assert ours == regs.get("rax", 0) & M64 and value == ours & 0xFFFFFFFF, where
            continue
        assert ours & wmask == value, f"{where}: {name} {ours:#x} != {value:#x}"
    for i, value in enumerate(truth.xmm):
        assert cpu.get_xmm(i) == value, f"{where}: xmm{i}"
    for (addr, n), (_, data) in zip(watch, truth.memory, strict=False):
        assert cpu.read_mem(addr, n) == data, f"{where}: memory at {addr:#x}"


# ---------------------------------------------------------------------------------------------
# A small encoder for ModRM memory operands.

@dataclass(frozen=True)
class Mem:
    base: int | None       # register number; -1 = RIP-relative
    index: int | None
    scale: int
    disp: int


def modrm(reg: int, mem: Mem, addr_size: int) -> tuple[int, bytes]:
    """(REX bits X|B, ModRM+SIB+disp bytes) for 32/64-bit addressing."""
    r = (reg & 7) << 3
    disp = mem.disp
    if mem.base == -1:
        return 0, bytes([r | 5]) + (disp & 0xFFFFFFFF).to_bytes(4, "little")
    rex = 0
    if mem.index is not None:
        rex |= 2 if mem.index >= 8 else 0
    if mem.base is not None:
        rex |= 1 if mem.base >= 8 else 0
    ss = {1: 0, 2: 1, 4: 2, 8: 3}[mem.scale]
    if mem.base is None:
        idx = 4 if mem.index is None else mem.index & 7
        return rex, bytes([r | 4, ss << 6 | idx << 3 | 5]) + (disp & 0xFFFFFFFF).to_bytes(4, "little")
    b = mem.base & 7
    if disp == 0 and b != 5:
        mod, tail = 0, b""
    elif -128 <= disp < 128:
        mod, tail = 1, (disp & 0xFF).to_bytes(1, "little")
    else:
        mod, tail = 2, (disp & 0xFFFFFFFF).to_bytes(4, "little")
    if mem.index is not None or b == 4:
        idx = 4 if mem.index is None else mem.index & 7
        return rex, bytes([mod << 6 | r | 4, ss << 6 | idx << 3 | b]) + tail
    return rex, bytes([mod << 6 | r | b]) + tail


_RM16 = {0: ("rbx", "rsi"), 1: ("rbx", "rdi"), 2: ("rbp", "rsi"), 3: ("rbp", "rdi"),
         4: ("rsi", None), 5: ("rdi", None), 7: ("rbx", None)}
_GPR = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


@st.composite
def operand(draw: st.DrawFn, mode: int, reg: int, size: int, align: int) -> tuple:
    """Draw an addressing mode and registers that put a `size`-byte operand in an MMIO window.

    Returns (prefix bytes 0x67 or b"", rex bits, ModRM bytes, regs, mmio window).
    """
    regs = {n: draw(st.integers(0, M64)) for n in _GPR[: 16 if mode == 64 else 8]}
    addr16 = mode == 32 and draw(st.booleans()) and draw(st.booleans())
    if addr16:
        base = MMIO16
        target = base + draw(st.integers(0, (0x1000 - size) // align)) * align
        rm = draw(st.sampled_from(sorted(_RM16)))
        disp = draw(st.sampled_from([0, draw(st.integers(-128, 127)), draw(st.integers(-0x8000, 0x7FFF))]))
        first, second = _RM16[rm]
        if disp == 0 and rm != 6:
            mod, tail = 0, b""
        elif -128 <= disp < 128:
            mod, tail = 1, (disp & 0xFF).to_bytes(1, "little")
        else:
            mod, tail = 2, (disp & 0xFFFF).to_bytes(2, "little")
        other = regs[second] & 0xFFFF if second else 0
        regs[first] = (regs[first] & ~0xFFFF) | ((target - other - disp) & 0xFFFF)
        return b"\x67", 0, bytes([mod << 6 | (reg & 7) << 3 | rm]) + tail, regs, (base, 0x1000)
    nregs = 16 if mode == 64 else 8
    addr_size = 4 if mode == 32 or draw(st.booleans()) is False else 8
    if mode == 64 and draw(st.integers(0, 3)) == 0:
        addr_size = 4
    amask = (1 << (8 * addr_size)) - 1
    shape = draw(st.sampled_from(["base", "base", "base_index", "base_index", "index", "abs", "rip"]))
    if shape == "rip" and mode == 32:
        shape = "abs"
    window = LOW_MMIO if shape in ("rip", "abs") else draw(st.sampled_from([HIGH_MMIO, LOW_MMIO]))
    target = window + draw(st.integers(0, (0x1000 - size) // align)) * align
    scale = draw(st.sampled_from([1, 2, 4, 8]))
    disp = draw(st.sampled_from([0, draw(st.integers(-128, 127)), draw(st.integers(-2**31, 2**31 - 1))]))
    prefix = b"\x67" if addr_size == 4 and mode == 64 else b""
    if shape == "rip":
        mem = Mem(-1, None, 1, 0)
        return prefix, 0, b"", regs, (window, 0x1000, "rip", target)  # disp fixed by caller
    if shape == "abs":
        mem = Mem(None, None, 1, target)
    elif shape == "index":
        idx = draw(st.sampled_from([i for i in range(nregs) if i != 4]))
        value = draw(st.integers(0, 0xFFFF))
        disp = (target - value * scale) & 0xFFFFFFFF
        if disp >= 2**31:
            disp -= 2**32
        regs[_GPR[idx]] = (regs[_GPR[idx]] & ~amask) | value
        mem = Mem(None, idx, scale, disp)
    else:
        base_r = draw(st.integers(0, nregs - 1))
        idx = None
        if shape == "base_index":
            idx = draw(st.sampled_from([i for i in range(nregs) if i not in (4, base_r)]))
            regs[_GPR[idx]] = draw(st.integers(0, M64))
        ival = (regs[_GPR[idx]] & amask) * scale if idx is not None else 0
        regs[_GPR[base_r]] = (regs[_GPR[base_r]] & ~amask) | ((target - ival - disp) & amask)
        mem = Mem(base_r, idx, scale, disp)
    rex, body = modrm(reg, mem, addr_size)
    return prefix, rex, body, regs, (window, 0x1000)


@dataclass(frozen=True)
class Form:
    name: str
    opcode: bytes
    reg: int | None        # /digit; None = /r
    imm: str = ""          # "b" imm8, "z" imm16/32, "w" word forced
    sizes: str = "v"       # "b" byte op, "v" 16/32/64, "d" 32 only, "sse16" etc
    lock: bool = False
    mandatory: bytes = b""
    align: int = 1
    rexw: bool | None = None  # forced REX.W for SSE forms


ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"]
MULDIV = ["mul", "imul", "div", "idiv"]
SHIFTS = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"]
FORMS: list[Form] = [
    Form("mov 88", b"\x88", None, sizes="b"), Form("mov 89", b"\x89", None),
    Form("mov 8a", b"\x8a", None, sizes="b"), Form("mov 8b", b"\x8b", None),
    Form("mov c6", b"\xc6", 0, "b", sizes="b"), Form("mov c7", b"\xc7", 0, "z"),
    Form("movzx b6", b"\x0f\xb6", None, sizes="v1"), Form("movzx b7", b"\x0f\xb7", None, sizes="v2"),
    Form("movsx be", b"\x0f\xbe", None, sizes="v1"), Form("movsx bf", b"\x0f\xbf", None, sizes="v2"),
    Form("movsxd 63", b"\x63", None, sizes="q4"),
    *[Form(f"{n} {i * 8:02x}", bytes([i * 8]), None, sizes="b", lock=n != "cmp") for i, n in enumerate(ALU)],
    *[Form(f"{n} {i * 8 + 1:02x}", bytes([i * 8 + 1]), None, lock=n != "cmp") for i, n in enumerate(ALU)],
    *[Form(f"{n} {i * 8 + 2:02x}", bytes([i * 8 + 2]), None, sizes="b") for i, n in enumerate(ALU)],
    *[Form(f"{n} {i * 8 + 3:02x}", bytes([i * 8 + 3]), None) for i, n in enumerate(ALU)],
    *[Form(f"{n} 80", b"\x80", i, "b", sizes="b", lock=n != "cmp") for i, n in enumerate(ALU)],
    *[Form(f"{n} 81", b"\x81", i, "z", lock=n != "cmp") for i, n in enumerate(ALU)],
    *[Form(f"{n} 83", b"\x83", i, "b", lock=n != "cmp") for i, n in enumerate(ALU)],
    Form("test 84", b"\x84", None, sizes="b"), Form("test 85", b"\x85", None),
    Form("test f6", b"\xf6", 0, "b", sizes="b"), Form("test f7", b"\xf7", 0, "z"),
    Form("not f6", b"\xf6", 2, sizes="b", lock=True), Form("not f7", b"\xf7", 2, lock=True),
    Form("neg f6", b"\xf6", 3, sizes="b", lock=True), Form("neg f7", b"\xf7", 3, lock=True),
    Form("inc fe", b"\xfe", 0, sizes="b", lock=True), Form("dec fe", b"\xfe", 1, sizes="b", lock=True),
    Form("inc ff", b"\xff", 0, lock=True), Form("dec ff", b"\xff", 1, lock=True),
    Form("xchg 86", b"\x86", None, sizes="b", lock=True), Form("xchg 87", b"\x87", None, lock=True),
    Form("xadd c0", b"\x0f\xc0", None, sizes="b", lock=True), Form("xadd c1", b"\x0f\xc1", None, lock=True),
    Form("cmpxchg b0", b"\x0f\xb0", None, sizes="b", lock=True),
    Form("cmpxchg b1", b"\x0f\xb1", None, lock=True),
    Form("bt a3", b"\x0f\xa3", None), Form("bts ab", b"\x0f\xab", None, lock=True),
    Form("btr b3", b"\x0f\xb3", None, lock=True), Form("btc bb", b"\x0f\xbb", None, lock=True),
    *[Form(f"{n} ba", b"\x0f\xba", i + 4, "b", lock=n != "bt")
      for i, n in enumerate(["bt", "bts", "btr", "btc"])],
    Form("movnti", b"\x0f\xc3", None, sizes="dq"),
    Form("movd load", b"\x0f\x6e", None, sizes="x", mandatory=b"\x66", rexw=False),
    Form("movd store", b"\x0f\x7e", None, sizes="x", mandatory=b"\x66", rexw=False),
    Form("movq load 6e", b"\x0f\x6e", None, sizes="x", mandatory=b"\x66", rexw=True),
    Form("movq store 7e", b"\x0f\x7e", None, sizes="x", mandatory=b"\x66", rexw=True),
    Form("movq load f3 7e", b"\x0f\x7e", None, sizes="x", mandatory=b"\xf3", rexw=False),
    Form("movq store d6", b"\x0f\xd6", None, sizes="x", mandatory=b"\x66", rexw=False),
    Form("movdqa load", b"\x0f\x6f", None, sizes="x", mandatory=b"\x66", align=16),
    Form("movdqa store", b"\x0f\x7f", None, sizes="x", mandatory=b"\x66", align=16),
    Form("movdqu load", b"\x0f\x6f", None, sizes="x", mandatory=b"\xf3"),
    Form("movdqu store", b"\x0f\x7f", None, sizes="x", mandatory=b"\xf3"),
    Form("movaps load", b"\x0f\x28", None, sizes="x", align=16),
    Form("movaps store", b"\x0f\x29", None, sizes="x", align=16),
    Form("movups load", b"\x0f\x10", None, sizes="x"), Form("movups store", b"\x0f\x11", None, sizes="x"),
    Form("movupd load", b"\x0f\x10", None, sizes="x", mandatory=b"\x66"),
    Form("movupd store", b"\x0f\x11", None, sizes="x", mandatory=b"\x66"),
    # issue 14 families with every addressing form (tests/emulate/ has their semantic corner cases)
    *[Form(f"{n} f6", b"\xf6", i + 4, sizes="b") for i, n in enumerate(MULDIV)],
    *[Form(f"{n} f7", b"\xf7", i + 4) for i, n in enumerate(MULDIV)],
    Form("imul af", b"\x0f\xaf", None), Form("imul 6b", b"\x6b", None, "b"),
    Form("imul 69", b"\x69", None, "z"),
    *[Form(f"{n} c0", b"\xc0", i, "b", sizes="b") for i, n in enumerate(SHIFTS)],
    *[Form(f"{n} c1", b"\xc1", i, "b") for i, n in enumerate(SHIFTS)],
    *[Form(f"{n} d1", b"\xd1", i) for i, n in enumerate(SHIFTS)],
    *[Form(f"{n} d2", b"\xd2", i, sizes="b") for i, n in enumerate(SHIFTS)],
    *[Form(f"{n} d3", b"\xd3", i) for i, n in enumerate(SHIFTS)],
    Form("shld a4", b"\x0f\xa4", None, "b"), Form("shld a5", b"\x0f\xa5", None),
    Form("shrd ac", b"\x0f\xac", None, "b"), Form("shrd ad", b"\x0f\xad", None),
    Form("bsf bc", b"\x0f\xbc", None), Form("bsr bd", b"\x0f\xbd", None),
    Form("tzcnt", b"\x0f\xbc", None, mandatory=b"\xf3"), Form("lzcnt", b"\x0f\xbd", None, mandatory=b"\xf3"),
    Form("popcnt", b"\x0f\xb8", None, mandatory=b"\xf3"),
    *[Form(f"cmov {cc:x}", bytes([0x0F, 0x40 + cc]), None) for cc in range(16)],
    *[Form(f"set {cc:x}", bytes([0x0F, 0x90 + cc]), 0, sizes="b") for cc in range(16)],
    Form("movbe load", b"\x0f\x38\xf0", None),
]
_BT_REG = {"bt a3", "bts ab", "btr b3", "btc bb"}


@st.composite
def form_case(draw: st.DrawFn, form: Form, mode: int) -> tuple[bytes, dict[str, int], tuple[int, int],
                                                              dict[int, int], int]:
    nregs = 16 if mode == 64 else 8
    reg = form.reg if form.reg is not None else draw(st.integers(0, nregs - 1))
    if form.sizes == "b":
        osz = 1
    elif form.sizes in ("v", "v1", "v2"):
        osz = draw(st.sampled_from([2, 4, 8] if mode == 64 else [2, 4]))
    elif form.sizes == "q4":
        osz = 8 if mode == 64 else 4
    elif form.sizes == "dq":
        osz = draw(st.sampled_from([4, 8] if mode == 64 else [4]))
    else:
        osz = 0
    if form.sizes == "x":
        if form.rexw and mode == 32:
            osz = -1
        msize = 16
        if form.name.startswith("movd"):
            msize = 4
        elif form.name.startswith("movq"):
            msize = 8
    else:
        msize = {"v1": 1, "v2": 2, "q4": 4}.get(form.sizes, osz)
    if osz == -1:
        mode = 64
    align = form.align if form.align > 1 else draw(st.sampled_from([1, msize if msize <= 8 else 1]))
    pre67, rexbits, body, regs, window = draw(operand(mode, reg, msize, max(align, 1)))
    rexw = osz == 8 or bool(form.rexw)
    rex = 0x40 | (8 if rexw else 0) | (4 if reg >= 8 else 0) | rexbits
    use_rex = mode == 64 and (rex != 0x40 or draw(st.booleans()))
    prefixes = b""
    if form.lock and draw(st.booleans()):
        prefixes += b"\xf0"
    seg = draw(st.sampled_from([b"", b"", b"\x2e", b"\x3e", b"\x26", b"\x36"]))
    prefixes += seg
    if osz == 2:
        prefixes += b"\x66"
    prefixes += pre67 + form.mandatory
    imm = b""
    if form.imm == "b":
        imm = draw(st.binary(min_size=1, max_size=1))
    elif form.imm == "z":
        imm = draw(st.binary(min_size=min(osz, 4), max_size=min(osz, 4)))
    if len(window) == 4:  # RIP-relative: fix disp32 so the operand hits the target
        head = prefixes + (bytes([rex]) if use_rex else b"") + form.opcode
        length = len(head) + 5 + len(imm)
        disp = (window[3] - (RIP + length)) & 0xFFFFFFFF
        body = bytes([(reg & 7) << 3 | 5]) + disp.to_bytes(4, "little")
        window = window[:2]
    code = prefixes + (bytes([rex]) if use_rex else b"") + form.opcode + body + imm
    if form.name in _BT_REG:
        name = _GPR[reg]
        regs[name] = draw(st.integers(-200, 200)) & M64 if draw(st.integers(0, 3)) else regs[name]
    regs["rflags"] = 0x2 | (draw(st.integers(0, 0xFFF)) & STATUS)
    xmm = {i: draw(st.integers(0, (1 << 128) - 1)) for i in range(16 if mode == 64 else 8)}
    return code, regs, window, xmm, mode


@pytest.mark.parametrize("mode", [64, 32])
@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_form_matches_unicorn(form: Form, mode: int) -> None:
    if form.sizes == "q4" and mode == 32:
        pytest.skip("opcode 63 is ARPL in 32-bit mode")
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=form_case(form, mode), read_value=st.integers(0, M64))
    def check(case: tuple, read_value: int) -> None:
        code, regs, window, xmm, m = case
        compare(code, m, regs, window, read_value, xmm)

    check()


@st.composite
def string_case(draw: st.DrawFn, mode: int) -> tuple[bytes, dict[str, int], tuple[int, int], int]:
    op = draw(st.sampled_from([0xA4, 0xA5, 0xAA, 0xAB, 0xAC, 0xAD]))
    wide = op & 1
    osz = draw(st.sampled_from([2, 4, 8] if mode == 64 else [2, 4])) if wide else 1
    a67 = draw(st.booleans())
    pre = b""
    if draw(st.booleans()):
        pre += draw(st.sampled_from([b"\xf3", b"\xf2"]))
    if osz == 2:
        pre += b"\x66"
    if a67 and mode == 64:
        pre += b"\x67"
    seg = draw(st.sampled_from([b"", b"\x64", b"\x65", b"\x3e"])) if mode == 64 else b""
    rex = b"\x48" if osz == 8 else b""
    code = seg + pre + rex + bytes([op])
    mmio = (HIGH_MMIO, 0x1000) if not (a67 and mode == 64) else (LOW_MMIO, 0x1000)
    regs = {n: draw(st.integers(0, M64)) for n in _GPR[: 16 if mode == 64 else 8]}
    df = draw(st.booleans())
    count = draw(st.integers(0, 4))
    amask = 0xFFFFFFFF if (a67 or mode == 32) else M64
    keep = ~amask & M64 if mode == 64 else 0
    mid = 0x800
    ram_side = 0x3000
    to_mmio = draw(st.booleans())
    dst, src = (mmio[0] + mid, ram_side + mid) if to_mmio else (ram_side + mid, mmio[0] + mid)
    if op in (0xAA, 0xAB):
        dst = mmio[0] + mid
    if op in (0xAC, 0xAD):
        src = mmio[0] + mid
    regs["rdi"] = (regs["rdi"] & keep) | dst
    regs["rsi"] = (regs["rsi"] & keep) | src
    regs["rcx"] = (regs["rcx"] & keep) | count
    regs["rflags"] = 0x2 | (DF if df else 0) | (draw(st.integers(0, 0xFFF)) & STATUS)
    if seg in (b"\x64", b"\x65"):
        regs["fs_base" if seg == b"\x64" else "gs_base"] = 0
    return code, regs, mmio, ram_side


@pytest.mark.parametrize("mode", [64, 32])
@SETTINGS
@given(data=st.data(), read_value=st.integers(0, M64))
def test_string_ops_match_unicorn(mode: int, data: st.DataObject, read_value: int) -> None:
    code, regs, mmio, ram_side = data.draw(string_case(mode))
    ram_bytes = data.draw(st.binary(min_size=0x1000, max_size=0x1000))
    compare(code, mode, regs, mmio, read_value, ram_data=((ram_side, ram_bytes),),
            watch=((ram_side, 0x1000),))


@pytest.mark.parametrize("hexbytes,mode", [
    ("a0", 64), ("a1", 64), ("48 a1", 64), ("66 a1", 64), ("a2", 64), ("a3", 64), ("48 a3", 64),
    ("67 a1", 64), ("67 a2", 64), ("a1", 32), ("a3", 32), ("66 a3", 32), ("a0", 32),
])
def test_moffs_matches_unicorn(hexbytes: str, mode: int) -> None:
    head = bytes.fromhex(hexbytes)
    width = 4 if (mode == 32 or 0x67 in head) else 8
    for target in (HIGH_MMIO, HIGH_MMIO + 0xFF8):
        code = head + target.to_bytes(width, "little")
        compare(code, mode, {"rax": 0x1122334455667788, "rflags": 0x2}, (HIGH_MMIO, 0x1000),
                0x8899AABBCCDDEEFF)


@pytest.mark.parametrize("seg,reg", [("64", "fs_base"), ("65", "gs_base")])
def test_fs_gs_base_added_in_64bit_mode(seg: str, reg: str) -> None:
    code = bytes.fromhex(seg + "48 8b 42 10")
    compare(code, 64, {"rdx": 0x20, reg: HIGH_MMIO, "rflags": 2}, (HIGH_MMIO, 0x1000), 0x1234)


def test_rep_with_zero_count_does_nothing() -> None:
    cpu = BatchCpu(64, {"rcx": 0, "rdi": HIGH_MMIO, "rip": RIP}, (HIGH_MMIO, 0x1000), 0,
                   default_ram_regions(RIP, (HIGH_MMIO, 0x1000)))
    cpu.write_mem(RIP, b"\xf3\x48\xab")
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == () and out.next_rip == RIP + 3 and cpu.get("rdi") == HIGH_MMIO


def test_cmpxchg32_success_keeps_upper_rax_unlike_unicorn() -> None:
    """The SDM leaves RAX untouched on success; unicorn 2.1.4 zero-extends it (issue #2332)."""
    regs = {"rax": 0xABCD_0000_0000_0005, "rcx": 9, "rdx": HIGH_MMIO, "rflags": 2}
    mmio = (HIGH_MMIO, 0x1000)
    truth = run_one(b"\x0f\xb1\x0a", 64, RIP, regs, mmio, 5, default_ram_regions(RIP, mmio))
    assert truth.reg("rax") == 5  # the deviation, pinned: fails if unicorn is fixed
    cpu = BatchCpu(64, regs, mmio, 5, default_ram_regions(RIP, mmio))
    cpu.write_mem(RIP, b"\x0f\xb1\x0a")
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rax") == 0xABCD_0000_0000_0005 and cpu.get("rflags") & ZF


def test_misaligned_movdqa_faults_unlike_unicorn() -> None:
    """SDM: #GP on a misaligned 16-byte MOVDQA operand; unicorn 2.1.4 performs the access."""
    regs = {"rdx": HIGH_MMIO + 8, "rflags": 2}
    mmio = (HIGH_MMIO, 0x1000)
    truth = run_one(b"\x66\x0f\x6f\x0a", 64, RIP, regs, mmio, 7, default_ram_regions(RIP, mmio))
    assert truth.fault is None and len(truth.accesses) == 2  # the deviation, pinned
    cpu = BatchCpu(64, regs, mmio, 7, default_ram_regions(RIP, mmio))
    cpu.write_mem(RIP, b"\x66\x0f\x6f\x0a")
    with pytest.raises(EmulationError, match="#GP"):
        emulate_at(cpu, RIP, 64)
    assert cpu.accesses == []


def test_access_leaving_mmio_is_split_and_rest_goes_to_ram() -> None:
    mmio = (LOW_MMIO, 0x1000)
    ram = default_ram_regions(RIP, mmio) + ((LOW_MMIO + 0x1000, 0x1000),)
    cpu = BatchCpu(64, {"rdx": LOW_MMIO + 0xFFD, "rax": 0x1122334455667788}, mmio, 0, ram)
    cpu.write_mem(RIP, b"\x48\x89\x02")
    out = emulate_at(cpu, RIP, 64)
    assert [(a.gpa, a.size, a.value) for a in out.accesses] == [(LOW_MMIO + 0xFFD, 3, 0x667788)]
    assert cpu.read_mem(LOW_MMIO + 0x1000, 5) == bytes.fromhex("5544332211")


def test_access_leaving_mmio_into_nothing_is_an_error() -> None:
    mmio = (HIGH_MMIO, 0x1000)
    cpu = BatchCpu(64, {"rdx": HIGH_MMIO + 0xFFE}, mmio, 0, default_ram_regions(RIP, mmio))
    cpu.write_mem(RIP, b"\x8b\x02")
    with pytest.raises(EmulationError, match="unmapped"):
        emulate_at(cpu, RIP, 64)


def test_bt_register_offset_reaches_outside_operand() -> None:
    mmio = (HIGH_MMIO, 0x1000)
    cpu = BatchCpu(64, {"rdx": HIGH_MMIO + 0x100, "rax": (-33) & M64, "rflags": 2}, mmio, 1 << 31,
                   default_ram_regions(RIP, mmio))
    cpu.write_mem(RIP, b"\x0f\xa3\x02")  # bt [rdx], eax with eax = -33: dword at rdx-8, bit 31
    emulate_at(cpu, RIP, 64)
    assert cpu.accesses[0].gpa == HIGH_MMIO + 0xF8 and cpu.get("rflags") & CF


def test_high_byte_registers_only_without_rex() -> None:
    mmio = (HIGH_MMIO, 0x1000)
    for code, expect in ((b"\x88\x22", 0x12), (b"\x40\x88\x22", 0x34)):  # [rdx] <- ah / spl
        cpu = BatchCpu(64, {"rdx": HIGH_MMIO, "rax": 0x1200, "rsp": 0x34}, mmio, 0,
                       default_ram_regions(RIP, mmio))
        cpu.write_mem(RIP, code)
        assert emulate_at(cpu, RIP, 64).accesses[0].value == expect


def test_32bit_write_zero_extends_and_8bit_merges() -> None:
    mmio = (HIGH_MMIO, 0x1000)
    for code, expect in ((b"\x8b\x02", 0x55667788), (b"\x8a\x02", 0xFFFFFFFFFFFFFF88),
                         (b"\x66\x8b\x02", 0xFFFFFFFFFFFF7788)):
        cpu = BatchCpu(64, {"rdx": HIGH_MMIO, "rax": M64}, mmio, 0x1122334455667788,
                       default_ram_regions(RIP, mmio))
        cpu.write_mem(RIP, code)
        emulate_at(cpu, RIP, 64)
        assert cpu.get("rax") == expect


def test_rep_budget_leaves_rip_on_instruction(monkeypatch: pytest.MonkeyPatch) -> None:
    """A huge REP count is done in slices: RIP stays on the instruction, like an interrupted REP."""
    from emu.semantics import string as em  # REP_BUDGET lives with the string family now
    monkeypatch.setattr(em, "REP_BUDGET", 10)
    mmio = (HIGH_MMIO, 0x1000)
    cpu = BatchCpu(64, {"rcx": 15, "rdi": HIGH_MMIO}, mmio, 0, default_ram_regions(RIP, mmio))
    cpu.write_mem(RIP, b"\xf3\xaa")
    out = emulate_at(cpu, RIP, 64)
    assert out.next_rip == RIP and cpu.get("rcx") == 5 and len(out.accesses) == 10
    out = emulate_at(cpu, RIP, 64)
    assert out.next_rip == RIP + 2 and cpu.get("rcx") == 0 and len(out.accesses) == 5
