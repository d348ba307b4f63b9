"""Random CPU state aimed at an MMIO window, so that random bytes actually exit.

Random registers almost never point a memory operand at a device, so the state is *solved*: the
bytes are decoded once by iced-x86 (an independent decoder, used here only to learn which
registers form the address — never as an oracle of its own output) and the base (or index, or
RSI/RDI of a string instruction) is set so that the operand lands inside the window, straddles
one of its edges, or misses it on purpose. Everything else is random: other registers, the
unused upper halves of 32/16-bit address registers, RFLAGS with DF, segment bases, XMM values.

The windows mirror the C extension's device model, so that the C paths can be compared on reads:
the register device (REGS_MMIO) answers with its memory — filled here with one repeated byte —,
the notify device (the pv window) reads 0, an unclaimed address reads all-ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import iced_x86 as iced

from emu.access import SUBREGS
from emu.exits import GPR_NAMES
from emu.platform import NOTIFY_MMIO, PAGE, REGS_MMIO
from exitlab.tools.fuzz.case import DEFAULT_RIP, Case

M64 = (1 << 64) - 1
ALL_ONES = M64


@dataclass(frozen=True, slots=True)
class Window:
    """An MMIO window and what the C device model reads there (None: any value the case picks)."""

    name: str
    base: int
    size: int


REGS_WINDOW = Window("regs", REGS_MMIO, PAGE)
NOTIFY_WINDOW = Window("notify", NOTIFY_MMIO, PAGE)  # also the pv window of contract v1
LOW_WINDOW = Window("low", 0x10000000, PAGE)  # reachable by disp32 / absolute addressing
W16_WINDOW = Window("w16", 0xA000, PAGE)  # reachable by 16-bit addressing (0x67 in 32-bit code)
WINDOWS = (REGS_WINDOW, NOTIFY_WINDOW, LOW_WINDOW, W16_WINDOW)

_REG_NAME: dict[int, str] = {v: k.lower() for k, v in vars(iced.Register).items() if isinstance(v, int)}
_STR_SRC = {iced.OpKind.MEMORY_SEG_SI: 2, iced.OpKind.MEMORY_SEG_ESI: 4, iced.OpKind.MEMORY_SEG_RSI: 8}
_STR_DST = {iced.OpKind.MEMORY_ESDI: 2, iced.OpKind.MEMORY_ESEDI: 4, iced.OpKind.MEMORY_ESRDI: 8}
_SIZES = (1, 2, 4, 8, 16)


def c_device_read(case: Case) -> int | None:
    """What the C device model answers to a read in the case's window, or None when it cannot
    be made to answer `case.read_value` (then the C paths are compared on writes only)."""
    base = case.mmio[0]
    v = case.read_value
    if base == REGS_WINDOW.base:
        return v if v == (v & 0xFF) * 0x0101010101010101 else None
    if base == NOTIFY_WINDOW.base:
        return v if v == 0 else None
    return v if v == ALL_ONES else None


def decode_iced(code: bytes, mode: int, rip: int = DEFAULT_RIP, padded: bool = False) -> iced.Instruction:
    """iced-x86's view of the first instruction (invalid-prefix checks off: lengths only).

    `padded` decodes what the CPU fetches: the bytes followed by the zeros of the RAM after them.
    """
    data = bytes(code) + bytes(15) if padded else bytes(code)
    return iced.Decoder(mode, data, ip=rip, options=iced.DecoderOptions.NO_INVALID_CHECK).decode()


def _random_value(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.2:
        return 0
    if r < 0.4:
        return rng.randrange(0x100)
    if r < 0.5:
        return rng.choice(
            (
                0x7F,
                0x80,
                0xFF,
                0x7FFF,
                0x8000,
                0xFFFF,
                0x7FFFFFFF,
                0x80000000,
                0xFFFFFFFF,
                1 << 63,
                M64,
                (1 << 63) - 1,
            )
        )
    return rng.getrandbits(64)


def _read_value(rng: random.Random, window: Window) -> int:
    if window is REGS_WINDOW:
        return rng.choice((0x80, 0xFF, 0x7F, 0x01, 0xA5, rng.randrange(256))) * 0x0101010101010101
    if window is NOTIFY_WINDOW:
        return 0 if rng.random() < 0.8 else rng.getrandbits(64)
    r = rng.random()
    return (
        ALL_ONES if r < 0.4 else (rng.getrandbits(64) if r < 0.8 else rng.choice((0x80, 0x8000, 0x80000000)))
    )


def _set_sub(regs: dict[str, int], name: str, value: int) -> None:
    """Set a (sub-)register by name (e.g. 'esi', 'bx'), keeping the other bits random as they were."""
    full, shift, size = SUBREGS[name]
    m = ((1 << (8 * size)) - 1) << shift
    regs[full] = (regs.get(full, 0) & ~m & M64) | ((value << shift) & m)


def _target(rng: random.Random, window: Window, size: int, mode: int) -> int:
    """Where the operand should start: inside (mostly), straddling an edge, or missing the window."""
    r = rng.random()
    if r < 0.75:
        span = max(window.size - size, 0)
        align = rng.choice((1, size, size, 8))
        return window.base + (rng.randrange(span + 1) // align) * align
    if r < 0.87:
        k = rng.randrange(1, 8)
        return window.base + window.size - k if rng.random() < 0.5 else window.base - k
    if r < 0.95:
        return rng.randrange(0x2000, 0x3F0000)  # RAM: no exit, but RAM semantics still compared
    return rng.getrandbits(mode)


def solve_state(
    rng: random.Random, code: bytes, mode: int, window: Window | None = None, gen: str = "", index: int = -1
) -> Case:
    """A random register file for `code` whose memory operand is aimed at a window."""
    names = GPR_NAMES[: 16 if mode == 64 else 8]
    regs: dict[str, int] = {n: _random_value(rng) for n in names}
    regs["rcx"] = rng.randrange(8) if rng.random() < 0.8 else regs["rcx"]  # keep REP short
    flags = 0x2 | (rng.getrandbits(12) & 0x8D5)
    if rng.random() < 0.25:
        flags |= 0x400
    else:
        flags &= ~0x400
    regs["rflags"] = flags
    ins = decode_iced(code, mode, padded=True)
    kinds = [ins.op_kind(i) for i in range(ins.op_count)] if ins.code != iced.Code.INVALID else []
    if ins.code != iced.Code.INVALID and (ins.has_rep_prefix or ins.has_repne_prefix):
        regs["rcx"] = rng.randrange(8)  # a REP string runs RCX iterations in the one-step oracle
    uses16 = any(k in (_STR_SRC | _STR_DST) and (_STR_SRC | _STR_DST)[k] == 2 for k in kinds) or (
        iced.OpKind.MEMORY in kinds and _REG_NAME.get(ins.memory_base, "none") in ("bx", "bp", "si", "di")
    )
    if (
        iced.OpKind.MEMORY in kinds
        and ins.memory_base == iced.Register.NONE
        and mode == 32
        and ins.memory_displ_size == 2
    ):
        uses16 = True
    if window is None:
        if uses16:
            window = W16_WINDOW
        else:
            window = rng.choice((REGS_WINDOW, REGS_WINDOW, NOTIFY_WINDOW, LOW_WINDOW))
    size = ins.memory_size and _mem_bytes(ins) or rng.choice(_SIZES)
    seg_base = 0
    if mode == 64 and rng.random() < 0.15:
        regs["fs_base"] = rng.choice((0, 0x1000, rng.getrandbits(64)))
        regs["gs_base"] = rng.choice((0, 0x1000, rng.getrandbits(64)))
    if mode == 64 and ins.code != iced.Code.INVALID:
        seg = ins.memory_segment
        if seg == iced.Register.FS:
            seg_base = regs.get("fs_base", 0)
        elif seg == iced.Register.GS:
            seg_base = regs.get("gs_base", 0)
    for k in kinds:
        if k == iced.OpKind.MEMORY:
            _aim_modrm(rng, ins, regs, window, size, mode, seg_base)
        elif k in _STR_SRC:
            t = _target(rng, window, size, mode)
            _set_sub(regs, {2: "si", 4: "esi", 8: "rsi"}[_STR_SRC[k]], (t - seg_base) & M64)
        elif k in _STR_DST:
            t = _target(rng, window, size, mode) if rng.random() < 0.7 else rng.randrange(0x2000, 0x3F0000)
            _set_sub(regs, {2: "di", 4: "edi", 8: "rdi"}[_STR_DST[k]], t)
    xmm = {i: rng.getrandbits(128) for i in range(16 if mode == 64 else 8)} if rng.random() < 0.5 else {}
    return Case.make(
        code, mode, regs, (window.base, window.size), _read_value(rng, window), xmm, DEFAULT_RIP, gen, index
    )


def _mem_bytes(ins: iced.Instruction) -> int:
    try:
        n = int(iced.MemorySizeInfo(ins.memory_size).size)
    except ValueError:  # exotic sizes: any aim will do
        n = 0
    return n if n in _SIZES else 8


def _aim_modrm(
    rng: random.Random,
    ins: iced.Instruction,
    regs: dict[str, int],
    window: Window,
    size: int,
    mode: int,
    seg_base: int,
) -> int | None:
    """Solve base (or index) so that base + index*scale + disp lands on a chosen target."""
    if rng.random() < 0.05:
        return None  # leave the registers random: the address is wherever it falls
    base = _REG_NAME.get(ins.memory_base, "none")
    index = _REG_NAME.get(ins.memory_index, "none")
    scale = ins.memory_index_scale or 1
    if base in ("rip", "eip"):
        return None
    target = _target(rng, window, size, mode)
    if base not in SUBREGS and index not in SUBREGS:
        return None  # absolute address: nothing to aim
    bits = 8 * SUBREGS[base if base in SUBREGS else index][2]
    amask = (1 << bits) - 1
    disp = ins.memory_displacement
    want = (target - seg_base - disp) & amask
    if base in SUBREGS and index in SUBREGS and SUBREGS[base][0] == SUBREGS[index][0]:
        mult = 1 + scale
        if mult % 2 == 0:
            want &= ~1
            value = (want // 2) + (rng.randrange(2) << (bits - 1))
        else:
            value = want * pow(mult, -1, 1 << bits)
        _set_sub(regs, base, value & amask)
        return target
    if base in SUBREGS:
        idx = 0
        if index in SUBREGS:
            imask = (1 << (8 * SUBREGS[index][2])) - 1
            idx = rng.choice((0, rng.randrange(0x100), regs.get(SUBREGS[index][0], 0) & imask))
            _set_sub(regs, index, idx)
        _set_sub(regs, base, (want - idx * scale) & amask)
        return target
    _set_sub(regs, index, (want // scale) & amask)
    return target


def may_modify_own_code(case: Case) -> bool:
    """True when the instruction may write its own bytes (self-modifying code).

    Unicorn restarts an instruction that rewrote itself, so the one-step oracle would re-run it
    until its step limit (seconds per case) and the result would say nothing about MMIO. Checked
    from iced-x86's operand formula, RSI/RDI (strings) and RSP (stack), with a margin.
    """
    ins = decode_iced(case.code, case.mode, case.rip, padded=True)
    regs = case.reg_dict()
    # Unicorn invalidates by page; a block store (FXSAVE/XSAVE, or an unknown size: up to a few
    # KiB) starting up to a page below the code still reaches it.
    ins0 = decode_iced(case.code, case.mode, case.rip, padded=True)
    try:
        span = int(iced.MemorySizeInfo(ins0.memory_size).size) if ins0.code != iced.Code.INVALID else 0
    except ValueError:
        span = PAGE
    lo = (case.rip & ~(PAGE - 1)) - (PAGE if span == 0 or span > 64 else 64)
    hi = ((case.rip + 15) | (PAGE - 1)) + 1 + 64
    lo_regs = (case.rip & ~(PAGE - 1)) - 64

    def near(addr: int) -> bool:
        return lo <= addr & ((1 << case.mode) - 1) < hi

    def value(reg: int) -> int:
        name = _REG_NAME.get(reg, "none")
        if name not in SUBREGS:
            return 0
        full, shift, size = SUBREGS[name]
        return (regs.get(full, 0) >> shift) & ((1 << (8 * size)) - 1)

    if ins.code == iced.Code.INVALID:
        return False
    base = _REG_NAME.get(ins.memory_base, "none")
    if base in ("rip", "eip"):
        if near(ins.memory_displacement):
            return True
    elif any(ins.op_kind(i) == iced.OpKind.MEMORY for i in range(ins.op_count)):
        ea = value(ins.memory_base) + value(ins.memory_index) * (ins.memory_index_scale or 1)
        ea += ins.memory_displacement
        if case.mode == 64 and ins.memory_segment in (iced.Register.FS, iced.Register.GS):
            ea += regs.get("fs_base" if ins.memory_segment == iced.Register.FS else "gs_base", 0)
        if near(ea):
            return True
    return any(lo_regs <= (regs.get(r, 0) + d) & ((1 << case.mode) - 1) < hi
               for r in ("rsi", "rdi", "rsp", "rbp") for d in (-64, 0, 64))


def idiv_traps_host(regs: dict[str, int]) -> bool:
    """EDX:EAX = 2**63 or DX:AX = 2**31 (the most negative dividend): unicorn 2.1.4 divides it by
    the divisor with a host `idiv` (QEMU helper_idivl_EAX / helper_idivw_AX), so a divisor of -1
    kills the whole process with SIGFPE instead of raising #DE in the guest (found by `exitlab fuzz
    --family muldiv`; docs/known-discrepancies.md). IDIV with that dividend is skipped whatever
    the divisor and operand size (the divisor may come from a device)."""
    eax, edx = regs.get("rax", 0), regs.get("rdx", 0)
    most_negative_32 = edx & 0xFFFFFFFF == 0x80000000 and eax & 0xFFFFFFFF == 0
    return most_negative_32 or (edx & 0xFFFF == 0x8000 and eax & 0xFFFF == 0)


def unicorn_would_abort(case: Case) -> bool:
    """True for LOCK with no memory operand: #UD on hardware, but unicorn 2.1.4 abort()s the whole
    process for some of them (found by this fuzzer: `f0 0f ab c8`, LOCK BTS eax, ecx), so such a
    case is never handed to the in-process oracle. Nothing of it could reach a device anyway.
    Also IDIV of the most negative dividend, which can SIGFPE the process (idiv_traps_host)."""
    ins = decode_iced(case.code, case.mode, case.rip, padded=True)
    if ins.code == iced.Code.INVALID:
        return False
    if ins.mnemonic == iced.Mnemonic.IDIV and idiv_traps_host(case.reg_dict()):
        return True
    if ins.code == iced.Code.INVALID or not ins.has_lock_prefix:
        return False
    mem = {iced.OpKind.MEMORY} | set(_STR_SRC) | set(_STR_DST)
    return not any(ins.op_kind(i) in mem for i in range(ins.op_count))


def rep_too_long(case: Case, limit: int = 64) -> bool:
    """True for a REP-prefixed instruction whose count register exceeds `limit`: the one-step oracle
    would single-step every iteration (up to its step limit, minutes per case). Generated cases keep
    RCX small; this guards the variants the minimizer and the corpus produce."""
    ins = decode_iced(case.code, case.mode, case.rip, padded=True)
    if ins.code == iced.Code.INVALID or not (ins.has_rep_prefix or ins.has_repne_prefix):
        return False
    return case.reg_dict().get("rcx", 0) & ((1 << case.mode) - 1) > limit
