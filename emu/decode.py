"""Decode one instruction with Capstone into an `Access`, and compute its effective address.

One table, `FORMS`, keyed by Capstone instruction id, is the single source of truth for what the
generic path supports (KVM's opcode-table idea): it names the operation and its properties (LOCK
permitted, 16-byte alignment required). emu/emulate.py gives each `Op` its semantics; anything not
in the table is an `EmulationError` carrying RIP and the bytes, never a skip.

Capstone is trusted for lengths, operands and sizes (tests cross-check it against iced-x86) but
not for prefixes: it drops some (a REP on MOV) and refuses others (LOCK MOV), so LOCK and REP are
read from the raw bytes here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import capstone
from capstone import x86_const as X

from emu.access import SUBREGS, Access, AccessKind, MemOperand, Op
from emu.errors import EmulationError
from emu.exits import MAX_INSN_LEN

_LEGACY_PREFIXES = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})


@dataclass(frozen=True, slots=True)
class Form:
    """One table entry: the operation and what the encoding allows."""

    op: Op
    lockable: bool = False
    align16: bool = False


_ALU = {
    X.X86_INS_ADD: Op.ADD, X.X86_INS_OR: Op.OR, X.X86_INS_ADC: Op.ADC, X.X86_INS_SBB: Op.SBB,
    X.X86_INS_AND: Op.AND, X.X86_INS_SUB: Op.SUB, X.X86_INS_XOR: Op.XOR,
}

# Capstone id -> Form. SSE moves carry SSE_LOAD; the direction is fixed from the operands.
FORMS: dict[int, Form] = {
    X.X86_INS_MOV: Form(Op.MOV),
    X.X86_INS_MOVABS: Form(Op.MOV),
    X.X86_INS_MOVNTI: Form(Op.MOV),
    X.X86_INS_MOVZX: Form(Op.MOVZX),
    X.X86_INS_MOVSX: Form(Op.MOVSX),
    X.X86_INS_MOVSXD: Form(Op.MOVSX),
    **{ins: Form(op, lockable=True) for ins, op in _ALU.items()},
    X.X86_INS_CMP: Form(Op.CMP),
    X.X86_INS_TEST: Form(Op.TEST),
    X.X86_INS_INC: Form(Op.INC, lockable=True),
    X.X86_INS_DEC: Form(Op.DEC, lockable=True),
    X.X86_INS_NOT: Form(Op.NOT, lockable=True),
    X.X86_INS_NEG: Form(Op.NEG, lockable=True),
    X.X86_INS_XCHG: Form(Op.XCHG, lockable=True),
    X.X86_INS_XADD: Form(Op.XADD, lockable=True),
    X.X86_INS_CMPXCHG: Form(Op.CMPXCHG, lockable=True),
    X.X86_INS_BT: Form(Op.BT),
    X.X86_INS_BTS: Form(Op.BTS, lockable=True),
    X.X86_INS_BTR: Form(Op.BTR, lockable=True),
    X.X86_INS_BTC: Form(Op.BTC, lockable=True),
    **{ins: Form(Op.MOVS) for ins in (X.X86_INS_MOVSB, X.X86_INS_MOVSW, X.X86_INS_MOVSD, X.X86_INS_MOVSQ)},
    **{ins: Form(Op.STOS) for ins in (X.X86_INS_STOSB, X.X86_INS_STOSW, X.X86_INS_STOSD, X.X86_INS_STOSQ)},
    **{ins: Form(Op.LODS) for ins in (X.X86_INS_LODSB, X.X86_INS_LODSW, X.X86_INS_LODSD, X.X86_INS_LODSQ)},
    X.X86_INS_MOVD: Form(Op.SSE_LOAD),
    X.X86_INS_MOVQ: Form(Op.SSE_LOAD),
    X.X86_INS_MOVDQU: Form(Op.SSE_LOAD),
    X.X86_INS_MOVUPS: Form(Op.SSE_LOAD),
    X.X86_INS_MOVUPD: Form(Op.SSE_LOAD),
    X.X86_INS_MOVDQA: Form(Op.SSE_LOAD, align16=True),
    X.X86_INS_MOVAPS: Form(Op.SSE_LOAD, align16=True),
    X.X86_INS_MOVAPD: Form(Op.SSE_LOAD, align16=True),
    X.X86_INS_MOVNTDQ: Form(Op.SSE_LOAD, align16=True),
    X.X86_INS_MOVNTPS: Form(Op.SSE_LOAD, align16=True),
    X.X86_INS_MOVNTPD: Form(Op.SSE_LOAD, align16=True),
}

_STRING_OPS = frozenset({Op.MOVS, Op.STOS, Op.LODS})
_MODES = {64: capstone.CS_MODE_64, 32: capstone.CS_MODE_32}


@functools.cache
def _capstone(mode: int) -> capstone.Cs:
    """One Cs per mode, detail on; cached because creating one costs far more than a decode."""
    if mode not in _MODES:
        raise EmulationError(f"unsupported mode {mode} (the generic path handles 64 and 32)")
    cs = capstone.Cs(capstone.CS_ARCH_X86, _MODES[mode])
    cs.detail = True
    return cs


def _prefixes(code: bytes, mode: int) -> tuple[bool, bool]:
    """(lock, rep) from the raw legacy prefixes (Capstone hides some of them)."""
    lock = rep = False
    for b in code[:MAX_INSN_LEN]:
        if b in _LEGACY_PREFIXES:
            lock |= b == 0xF0
            rep |= b in (0xF2, 0xF3)
        elif mode == 64 and 0x40 <= b <= 0x4F:
            continue
        else:
            break
    return lock, rep


def _mem_operand(insn: capstone.CsInsn, op: capstone.x86.X86Op) -> MemOperand:
    m = op.mem
    base = insn.reg_name(m.base) if m.base else None
    rip_rel = base in ("rip", "eip")
    index = insn.reg_name(m.index) if m.index else None
    if index in ("riz", "eiz"):  # SIB "no index" with a scale: Capstone names a zero register
        index = None
    return MemOperand(
        base=None if rip_rel else base,
        index=index,
        scale=m.scale if index else 1,
        disp=m.disp,
        segment=insn.reg_name(m.segment) if m.segment else None,
        addr_size=insn.addr_size,
        rip_relative=rip_rel,
    )


def _legacy_prefixes(code: bytes, mode: int) -> bytes:
    """The legacy prefix bytes in front of the opcode (REX bytes skipped)."""
    out = bytearray()
    for b in code[:MAX_INSN_LEN]:
        if b in _LEGACY_PREFIXES:
            out.append(b)
        elif not (mode == 64 and 0x40 <= b <= 0x4F):
            break
    return bytes(out)


def _operand_size(code: bytes, mode: int) -> int:
    """The operand size the prefixes select (66, REX.W); only a REX right before the opcode counts.

    Capstone mis-sizes some 0F forms when 66 and F2/F3 are both present (`66 f3 0f a3 08` is
    `bt word ptr [rax], cx`, Capstone says dword; found by exitlab fuzz), so the size of a GPR
    operation is taken from the raw prefixes, as the CPU does.
    """
    has66, rex = False, 0
    for b in code[:MAX_INSN_LEN]:
        if b in _LEGACY_PREFIXES:
            has66 |= b == 0x66
            rex = 0
        elif mode == 64 and 0x40 <= b <= 0x4F:
            rex = b
        else:
            break
    if mode == 16:
        return 4 if has66 else 2
    if rex & 0x8:
        return 8
    return 2 if has66 else 4


_SIZED_BY_PREFIXES = frozenset(
    {Op.MOV, Op.ADD, Op.OR, Op.ADC, Op.SBB, Op.AND, Op.SUB, Op.XOR, Op.CMP, Op.TEST, Op.INC, Op.DEC,
     Op.NOT, Op.NEG, Op.XCHG, Op.XADD, Op.CMPXCHG, Op.BT, Op.BTS, Op.BTR, Op.BTC}
)
_NO_MANDATORY_PREFIX = frozenset({X.X86_INS_MOVNTI})  # "NP" in the SDM: 66/F2/F3 make it #UD


def decode(code: bytes, mode: int, rip: int = 0) -> Access:
    """Decode the first instruction of `code` (up to 15 bytes fetched at `rip`) into an Access.

    Raises EmulationError naming RIP and the bytes when the bytes are invalid or truncated, when
    the instruction has no memory operand, or when the generic path does not support it.
    """
    window = bytes(code[:MAX_INSN_LEN])
    try:
        insn = next(_capstone(mode).disasm(window, rip, count=1))
    except StopIteration:
        why = "invalid instruction" if len(window) >= MAX_INSN_LEN else (
            f"invalid or truncated instruction ({len(window)} bytes readable)")
        raise EmulationError(why, rip, window) from None
    raw = window[: insn.size]
    name = f"{insn.mnemonic} {insn.op_str}".strip()
    form = FORMS.get(insn.id)
    if form is None:
        raise EmulationError(f"unsupported instruction '{name}'", rip, raw)
    ops = list(insn.operands)
    mems = [o for o in ops if o.type == X.X86_OP_MEM]
    regs = [o for o in ops if o.type == X.X86_OP_REG]
    imms = [o for o in ops if o.type == X.X86_OP_IMM]
    if not mems:
        raise EmulationError(f"'{name}' has no memory operand", rip, raw)
    lock, rep = _prefixes(raw, mode)
    reg_names = [insn.reg_name(r.reg) for r in regs]
    if any(r.startswith(("mm", "ymm", "zmm", "k")) or r.startswith("st") for r in reg_names):
        raise EmulationError(f"unsupported instruction '{name}' (MMX/AVX/x87 register)", rip, raw)
    op = form.op
    if insn.id == X.X86_INS_MOVSD and any(n.startswith("xmm") for n in reg_names):
        raise EmulationError(f"unsupported instruction '{name}' (SSE2 movsd)", rip, raw)
    if op in _STRING_OPS:
        return _decode_string(insn, op, mems, reg_names, raw, lock, rep, rip, name)
    if len(mems) != 1:
        raise EmulationError(f"'{name}' has {len(mems)} memory operands", rip, raw)
    mem_op = mems[0]
    mem = _mem_operand(insn, mem_op)
    mem_is_dest = ops[0].type == X.X86_OP_MEM
    reg = reg_names[0] if reg_names else None
    reg_size = regs[0].size if regs else 0
    size = mem_op.size
    if op in _SIZED_BY_PREFIXES and size in (2, 4, 8):
        size = _operand_size(raw, mode)
    if insn.id in _NO_MANDATORY_PREFIX and any(b in (0x66, 0xF2, 0xF3) for b in _legacy_prefixes(raw, mode)):
        raise EmulationError(f"'{name}' does not allow a 66/F2/F3 prefix (#UD)", rip, raw)
    imm = imms[0].imm & ((1 << (8 * size)) - 1) if imms else None
    if op in (Op.BT, Op.BTS, Op.BTR, Op.BTC) and imms:
        imm = imms[0].imm & 0xFF
    if reg is not None and not reg.startswith("xmm") and reg not in SUBREGS:
        raise EmulationError(f"unsupported register operand '{reg}' in '{name}'", rip, raw)
    if op is Op.SSE_LOAD:
        if reg is None or not reg.startswith("xmm"):
            raise EmulationError(f"unsupported instruction '{name}'", rip, raw)
        op = Op.SSE_STORE if mem_is_dest else Op.SSE_LOAD
    if lock and not (form.lockable and mem_is_dest):
        raise EmulationError(f"LOCK prefix not allowed on '{name}' (#UD)", rip, raw)
    kind = _kind(op, mem_is_dest, imm is not None)
    return Access(kind=kind, op=op, mnemonic=insn.mnemonic, length=insn.size, size=size, mem=mem,
                  mem_is_dest=mem_is_dest, reg=reg, reg_size=reg_size, imm=imm, lock=lock, raw=raw,
                  align16=form.align16 and size == 16)


def _kind(op: Op, mem_is_dest: bool, has_imm: bool) -> AccessKind:
    if op in (Op.MOV, Op.SSE_STORE, Op.SSE_LOAD):
        if mem_is_dest:
            return AccessKind.WRITE_IMM if has_imm else AccessKind.WRITE
        return AccessKind.READ
    if op is Op.MOVZX:
        return AccessKind.READ_ZX
    if op is Op.MOVSX:
        return AccessKind.READ_SX
    if op is Op.CMP:
        return AccessKind.CMP
    if op is Op.TEST:
        return AccessKind.TEST
    if op is Op.BT:
        return AccessKind.BIT_TEST
    return AccessKind.RMW if mem_is_dest else AccessKind.READ


def _decode_string(insn: capstone.CsInsn, op: Op, mems: list[capstone.x86.X86Op], reg_names: list[str],
                   raw: bytes, lock: bool, rep: bool, rip: int, name: str) -> Access:
    if lock:
        raise EmulationError(f"LOCK prefix not allowed on '{name}' (#UD)", rip, raw)
    size = mems[0].size
    if op is Op.MOVS:
        dst, src = _mem_operand(insn, mems[0]), _mem_operand(insn, mems[1])
        return Access(kind=AccessKind.STRING, op=op, mnemonic=insn.mnemonic, length=insn.size, size=size,
                      mem=dst, mem_is_dest=True, src_mem=src, rep=rep, raw=raw)
    acc = {1: "al", 2: "ax", 4: "eax", 8: "rax"}[size]
    return Access(kind=AccessKind.STRING, op=op, mnemonic=insn.mnemonic, length=insn.size, size=size,
                  mem=_mem_operand(insn, mems[0]), mem_is_dest=op is Op.STOS, reg=acc, reg_size=size,
                  rep=rep, raw=raw)


def read_subreg(get: Callable[[str], int], name: str) -> int:
    """Value of a (sub-)register by Capstone name, read through a full-register getter."""
    full, shift, size = SUBREGS[name]
    return (get(full) >> shift) & ((1 << (8 * size)) - 1)


def effective_address(mem: MemOperand, get: Callable[[str], int], next_rip: int, mode: int) -> int:
    """Linear address of `mem`: base + index*scale + disp wrapped at the address size, plus FS/GS base.

    RIP-relative operands count from the next instruction. A 0x67 prefix makes the sum wrap at 32
    bits in 64-bit mode and at 16 bits in 32-bit mode; in 32-bit mode the linear address wraps at
    4 GiB. Only FS and GS have a non-zero base (the flat model every mode here uses).
    """
    amask = (1 << (8 * mem.addr_size)) - 1
    ea = mem.disp
    if mem.rip_relative:
        ea += next_rip
    elif mem.base:
        ea += read_subreg(get, mem.base)
    if mem.index:
        ea += read_subreg(get, mem.index) * mem.scale
    ea &= amask
    if mem.segment in ("fs", "gs"):
        ea += get(f"{mem.segment}_base")
    return ea & ((1 << mode) - 1)
