"""Decode one instruction with Capstone into an `Access`, and compute its effective address.

One table, `FORMS`, keyed by Capstone instruction id, says what the generic path supports (KVM's
opcode-table idea): it names the operation and its properties (LOCK permitted, alignment, sizing).
It is built from the opcode map (emu/x86-opcode-map.txt, generated into emu/opmap.py), the one
source the C tables are generated from too. emu/emulate.py gives each `Op` its semantics; anything not
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
from emu.opmap import (
    FORM_ROWS,
    IMM8_OPS,
    MMX_FORMS,
    MOVE_OPS,
    NEVER_LOCKED,
    NO_66,
    OP_KIND,
    REFUSED_ROWS,
    SSE_PREFIX,
    STACK_OPS,
    STRING_OPS,
)

_LEGACY_PREFIXES = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})


@dataclass(frozen=True, slots=True)
class Form:
    """One table entry: the operation and what the encoding allows.

    `align`: the memory operand must be aligned to this many bytes (#GP otherwise); 0 = none,
    -1 = aligned to its own size (VEX aligned moves: 16 or 32). `sized`: for 2/4/8-byte operands
    the size comes from the raw prefixes (66, REX.W), as the CPU does (see `_operand_size`).
    `np`: no 66/F2/F3 allowed (#UD).
    """

    op: Op
    lockable: bool = False
    align16: bool = False
    align: int = 0
    sized: bool = False
    np: bool = False  # "NP" in the SDM: a 66/F2/F3 prefix makes it #UD
    no_f2f3: bool = False  # F2/F3 make it another instruction or #UD (MOVBE: F2 is CRC32)


def _capstone_id(name: str) -> int:
    return int(getattr(X, f"X86_INS_{name}"))


# Capstone id -> Form: THE opcode table of the generic path, built from the opcode map
# (emu/x86-opcode-map.txt [forms] -> emu/opmap.py FORM_ROWS; KVM's opcode_table idea). SSE moves
# carry SSE_LOAD; the direction is fixed from the operands.
FORMS: dict[int, Form] = {
    _capstone_id(name): Form(op, **props) for name, op, _cc, props in FORM_ROWS
}
# CMOVcc/SETcc: Capstone id -> the condition code (low nibble of the opcode)
_COND: dict[int, int] = {_capstone_id(name): cc for name, _op, cc, _props in FORM_ROWS if cc is not None}

# Instructions refused on purpose, with the reason (a clear stop, never a skip).
REFUSED: dict[int, str] = {_capstone_id(name): why for name, why in REFUSED_ROWS.items()}

_MMX_IDS = frozenset(_capstone_id(name) for name in MMX_FORMS)
_MODES = {64: capstone.CS_MODE_64, 32: capstone.CS_MODE_32}


@functools.cache
def _capstone(mode: int) -> capstone.Cs:
    """One Cs per mode, detail on; cached because creating one costs far more than a decode."""
    if mode not in _MODES:
        raise EmulationError(f"unsupported mode {mode} (the generic path handles 64 and 32)")
    cs = capstone.Cs(capstone.CS_ARCH_X86, _MODES[mode])
    cs.detail = True
    return cs


def _prefixes(code: bytes, mode: int) -> tuple[bool, bool, bool]:
    """(lock, rep, repne) from the raw legacy prefixes (Capstone hides some of them).

    When F2 and F3 are both present the last one decides REPE/REPNE, as the CPU does.
    """
    lock = rep = repne = False
    for b in code[:MAX_INSN_LEN]:
        if b in _LEGACY_PREFIXES:
            lock |= b == 0xF0
            if b in (0xF2, 0xF3):
                rep, repne = True, b == 0xF2
        elif mode == 64 and 0x40 <= b <= 0x4F:
            continue
        else:
            break
    return lock, rep, repne


def _opcode_at(code: bytes, mode: int) -> int:
    """Index of the first opcode byte (after legacy prefixes and REX)."""
    for i, b in enumerate(code[:MAX_INSN_LEN]):
        if b in _LEGACY_PREFIXES or (mode == 64 and 0x40 <= b <= 0x4F):
            continue
        return i
    return len(code)


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


mem_operand = _mem_operand  # the public name (emu/inplace.py judges a wide access by its whole operand)


def _stack_size(code: bytes, mode: int) -> int:
    """The element size of a stack operation (PUSH/POP, LEAVE): 8 in 64-bit mode, 4 in 32-bit mode,
    2 under 66 -- except that REX.W wins over 66 in 64-bit mode (SDM vol. 1 table 3-4; iced-x86 decodes
    `66 48 ff 30` as `push qword ptr [rax]`; Capstone says word; found by `exitlab fuzz --family stack`)."""
    if mode == 64 and _operand_size(code, mode) == 8:
        return 8
    return 2 if 0x66 in _legacy_prefixes(code, mode) else (8 if mode == 64 else 4)


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




def _fail(why: str, rip: int, raw: bytes) -> EmulationError:
    return EmulationError(why, rip, raw)


_F3_FORMS = (b"\x0f\xb8", b"\x0f\xbc", b"\x0f\xbd")  # POPCNT, TZCNT, LZCNT (F3 mandatory)


def _for_capstone(window: bytes, mode: int) -> bytes:
    """The bytes Capstone is asked to decode: `window`, except that for POPCNT/TZCNT/LZCNT the F3
    moves behind the other legacy prefixes (same length, same meaning).

    Capstone drops the F3 when another prefix separates it from a later 66: `f3 26 66 0f bd 27` is
    `lzcnt sp, es:[edi]` (iced-x86, QEMU, the CPU) but BSR to Capstone, and `f3 26 66 0f b8 27` does
    not decode at all (found by `exitlab fuzz --seed 4`). With F2 also present the forms stay as they
    are (which of the two counts differs between CPUs and QEMU)."""
    i = _opcode_at(window, mode)
    legacy = _legacy_prefixes(window, mode)
    if window[i : i + 2] not in _F3_FORMS or 0xF3 not in legacy or 0xF2 in legacy:
        return window
    if window[: len(legacy)] != legacy:  # a REX between legacy prefixes (ignored by the CPU): as is
        return window
    ordered = bytes(b for b in legacy if b != 0xF3) + bytes(b for b in legacy if b == 0xF3)
    return ordered + window[len(legacy) :]  # a REX stays right before the opcode


def decode(code: bytes, mode: int, rip: int = 0) -> Access:
    """Decode the first instruction of `code` (up to 15 bytes fetched at `rip`) into an Access.

    Raises EmulationError naming RIP and the bytes when the bytes are invalid or truncated, when
    the instruction has no memory operand, or when the generic path does not support it.
    """
    window = bytes(code[:MAX_INSN_LEN])
    try:
        insn = next(_capstone(mode).disasm(_for_capstone(window, mode), rip, count=1))
    except StopIteration:
        why = "invalid instruction" if len(window) >= MAX_INSN_LEN else (
            f"invalid or truncated instruction ({len(window)} bytes readable)")
        raise EmulationError(why, rip, window) from None
    raw = window[: insn.size]
    name = f"{insn.mnemonic} {insn.op_str}".strip()
    if insn.id in REFUSED:
        raise _fail(f"unsupported instruction '{name}': {REFUSED[insn.id]}", rip, raw)
    form = FORMS.get(insn.id)
    if form is None:
        raise _fail(f"unsupported instruction '{name}'", rip, raw)
    ops = list(insn.operands)
    mems = [o for o in ops if o.type == X.X86_OP_MEM]
    regs = [o for o in ops if o.type == X.X86_OP_REG]
    imms = [o for o in ops if o.type == X.X86_OP_IMM]
    lock, rep, repne = _prefixes(raw, mode)
    reg_names = [insn.reg_name(r.reg) for r in regs]
    op = form.op
    if any(r.startswith(("zmm", "k")) or r.startswith("st") for r in reg_names):
        raise _fail(f"unsupported instruction '{name}' (AVX-512/x87 register)", rip, raw)
    if any(r.startswith("mm") for r in reg_names) and insn.id not in _MMX_IDS:
        raise _fail(f"unsupported instruction '{name}' (MMX register)", rip, raw)
    if op is Op.CMPS and any(n.startswith(("xmm", "ymm")) for n in reg_names):
        # Capstone gives the SSE compares with a named predicate the ids of the string CMPS: LE
        # CMPSB, UNORD CMPSD, NEQ CMPSQ, NLE CMPSW (`0f c2 52 f8 03` is CMPUNORDPS; found by
        # `exitlab fuzz --seed 10` for CMPSD, by the opcode-map baseline for the others: the string
        # decode crashed with StopIteration)
        raise _fail(f"unsupported instruction '{name}' (SSE compare)", rip, raw)
    if insn.id == X.X86_INS_MOVSD and any(n.startswith("xmm") for n in reg_names):
        op = Op.SSE_LOAD  # SSE2 MOVSD xmm, m64 / m64, xmm: not the string MOVSD
    elif op in STRING_OPS:
        if lock:
            raise _fail(f"LOCK prefix not allowed on '{name}' (#UD)", rip, raw)
        return _decode_string(insn, op, mems, raw, rep, repne)
    if lock and op in NEVER_LOCKED:
        raise _fail(f"LOCK prefix not allowed on '{name}' (#UD)", rip, raw)
    if op in NO_66 and 0x66 in _legacy_prefixes(raw, mode):
        raise _fail(f"unsupported instruction '{name}': operand-size override on a near branch or ENTER "
                    "(16-bit IP/frame; Intel and AMD differ in 64-bit mode)", rip, raw)
    if op in (Op.CALL, Op.JMP) and insn.opcode[0] == 0xFF and (insn.modrm >> 3) & 7 in (3, 5):
        # FF /3 and FF /5 are the far forms (m16:32 / m16:64: a selector load); Capstone names
        # them CALL/JMP like the near ones (found by exitlab fuzz: `ff 29` in 64-bit mode)
        raise _fail(f"unsupported instruction '{name}': far CALL/JMP through memory", rip, raw)
    if op in STACK_OPS and not (op in (Op.PUSH, Op.CALL, Op.POP) and mems):
        return _decode_stack(insn, op, raw, reg_names, imms, mode, rip, name)
    if op is Op.XLAT:
        mem = MemOperand(base={8: "rbx", 4: "ebx", 2: "bx"}[insn.addr_size], index=None, scale=1, disp=0,
                         segment=_segment_override(raw, mode), addr_size=insn.addr_size)
        return Access(kind=AccessKind.READ, op=op, mnemonic=insn.mnemonic, length=insn.size, size=1,
                      mem=mem, mem_is_dest=False, reg="al", reg_size=1, raw=raw)
    if not mems:
        raise _fail(f"'{name}' has no memory operand", rip, raw)
    if len(mems) != 1:
        raise _fail(f"'{name}' has {len(mems)} memory operands", rip, raw)
    mem_op = mems[0]
    mem = _mem_operand(insn, mem_op)
    mem_is_dest = ops[0].type == X.X86_OP_MEM
    vecs = [n for n in reg_names if n.startswith(("xmm", "ymm", "mm"))]
    reg = reg_names[0] if reg_names else None
    reg_size = regs[0].size if regs else 0
    reg2 = reg_names[1] if len(reg_names) > 1 else None
    size = mem_op.size
    if form.sized and size in (2, 4, 8):
        size = _operand_size(raw, mode)
    if form.np and any(b in (0x66, 0xF2, 0xF3) for b in _legacy_prefixes(raw, mode)):
        raise _fail(f"'{name}' does not allow a 66/F2/F3 prefix (#UD)", rip, raw)
    if form.no_f2f3 and any(b in (0xF2, 0xF3) for b in _legacy_prefixes(raw, mode)):
        # F2 0F 38 F0/F1 is CRC32 (F3: #UD); Capstone says MOVBE when another prefix sits between
        # F2 and 66 (`f2 36 66 49 0f 38 f1 2f`, found by exitlab fuzz)
        raise _fail(f"unsupported instruction '{name}': F2/F3 on 0F 38 F0/F1 is CRC32 or #UD", rip, raw)
    if op in (Op.PUSH, Op.POP):
        size = _stack_size(raw, mode)  # PUSH/POP m: Capstone sizes `66 48 ff 30` word (REX.W wins)
    if insn.id == X.X86_INS_MOVSXD and reg_size == 2:
        size = 2  # Intel SDM: 66 63 /r is MOVSXD r16, r/m16 (docs/known-discrepancies.md)
    imm = imms[0].imm & ((1 << (8 * size)) - 1) if imms else None
    if op in IMM8_OPS and imms:
        imm = imms[0].imm & 0xFF  # shift counts and bit offsets (the map's `imm8`, as sem.c reads it)
    if op is Op.IMUL and imms:
        imm = imms[0].imm & ((1 << (8 * size)) - 1)  # sign-extended by Capstone, masked to the size
    for rn in reg_names:
        if rn not in SUBREGS and not rn.startswith(("xmm", "ymm", "mm")):
            raise _fail(f"unsupported register operand '{rn}' in '{name}'", rip, raw)
    align = 0
    vex = False
    cond = None
    if op is Op.SSE_LOAD:
        if not vecs:
            raise _fail(f"unsupported instruction '{name}'", rip, raw)
        reg, reg_size = vecs[0], {"y": 32, "x": 16, "m": 8}[vecs[0][0]]
        op = Op.SSE_STORE if mem_is_dest else Op.SSE_LOAD
        vex = raw[_opcode_at(raw, mode)] in (0xC4, 0xC5)
        if not vex and _sse_prefix(raw, mode) != _sse_required(insn, reg, mem_is_dest):
            raise _fail(f"unsupported instruction '{name}': its 66/F2/F3 prefixes select another "
                        "instruction or #UD (SDM: the last F2/F3 is the mandatory prefix, 66 only without "
                        "them; Capstone decodes the prefix-less form)", rip, raw)
        if form.align == -1:
            align = size
    elif vecs:
        raise _fail(f"unsupported instruction '{name}'", rip, raw)
    elif form.align:
        align = form.align
    if op is Op.MOVDIR64B:
        # MOVDIR64B r, m512: the destination is ES:[r] (64-byte aligned), the source the ModRM operand.
        assert reg is not None
        reg2 = reg
        mem_is_dest = False
    if op in (Op.CMOV, Op.SETCC):
        cond = _COND[insn.id]
    if lock and not (form.lockable and mem_is_dest):
        raise _fail(f"LOCK prefix not allowed on '{name}' (#UD)", rip, raw)
    kind = _kind(op, mem_is_dest, imm is not None)
    return Access(kind=kind, op=op, mnemonic=insn.mnemonic, length=insn.size, size=size, mem=mem,
                  mem_is_dest=mem_is_dest, reg=reg, reg_size=reg_size, imm=imm, lock=lock, raw=raw,
                  align16=form.align16 and size == 16, align=align, cond=cond, reg2=reg2, vex=vex)


def _sse_prefix(raw: bytes, mode: int) -> int:
    """The mandatory prefix of a legacy SSE/MMX move: the last F2/F3, else 66, else none (0)."""
    last, has66 = 0, False
    for b in _legacy_prefixes(raw, mode):
        if b in (0xF2, 0xF3):
            last = b
        has66 |= b == 0x66
    return last or (0x66 if has66 else 0)


_SSE_PREFIX = {_capstone_id(name): pfx for name, pfx in SSE_PREFIX.items()}


def _sse_required(insn: capstone.CsInsn, reg: str | None, store: bool) -> int:
    """The mandatory prefix of the form Capstone decoded: the map's `pfx` (none for MOVUPS/MOVAPS/
    MOVNTPS, F3 for MOVSS/MOVDQU, F2 for MOVSD/LDDQU), 0 for the MMX forms, F3 for MOVQ xmm, m64
    (F3 0F 7E), 66 for the other XMM forms."""
    if (reg or "").startswith("mm"):
        return 0
    if insn.id in _SSE_PREFIX:
        return _SSE_PREFIX[insn.id]
    if insn.id == X.X86_INS_MOVQ and insn.opcode[1] == 0x7E and not store:
        return 0xF3
    return 0x66


def _segment_override(raw: bytes, mode: int) -> str | None:
    """The last segment-override prefix, by name (only FS/GS matter in 64-bit mode)."""
    names = {0x2E: "cs", 0x36: "ss", 0x3E: "ds", 0x26: "es", 0x64: "fs", 0x65: "gs"}
    seg = None
    for b in _legacy_prefixes(raw, mode):
        seg = names.get(b, seg)
    return seg


def _stack_operand(sp: str, disp: int, addr_size: int) -> MemOperand:
    return MemOperand(base=sp, index=None, scale=1, disp=disp, segment="ss", addr_size=addr_size)


def _decode_stack(insn: capstone.CsInsn, op: Op, raw: bytes, reg_names: list[str],
                  imms: list[capstone.x86.X86Op], mode: int, rip: int, name: str) -> Access:
    """PUSH/POP reg or imm, CALL rel/reg, RET [imm16], LEAVE, ENTER: the memory is the stack.

    `mem` is the stack slot the instruction accesses first ([rsp - size] for a push, [rsp] for a
    pop, [rbp] for LEAVE); `size` the element size (`_stack_size`: 8/4, 2 under 66 without REX.W).
    """
    width = 8 if mode == 64 else 4
    size = _stack_size(raw, mode)
    sp = "rsp" if mode == 64 else "esp"
    reg = None
    if reg_names:
        reg = reg_names[0]
        if reg not in SUBREGS:
            raise _fail(f"unsupported register operand '{reg}' in '{name}'", rip, raw)
    imm = imms[0].imm if imms else None
    reg2 = None
    if op is Op.ENTER:
        imm = imms[0].imm & 0xFFFF
        level = imms[1].imm & 0x1F
        reg2 = str(level)  # nesting level (ENTER's second immediate), as text to keep Access flat
    if op is Op.RET and imm is not None:
        imm &= 0xFFFF
    if op is Op.PUSH and imm is not None:
        imm &= (1 << (8 * size)) - 1
    if op is Op.CALL and imm is not None:
        imm &= (1 << mode) - 1  # the target (Capstone resolves rel16/rel32 to an absolute address)
    if op in (Op.PUSH, Op.CALL, Op.ENTER):
        mem = _stack_operand(sp, -size, width)
    elif op is Op.LEAVE:
        mem = _stack_operand("rbp" if mode == 64 else "ebp", 0, width)
    else:
        mem = _stack_operand(sp, 0, width)
    return Access(kind=AccessKind.STACK, op=op, mnemonic=insn.mnemonic, length=insn.size, size=size,
                  mem=mem, mem_is_dest=op in (Op.PUSH, Op.CALL, Op.ENTER), reg=reg,
                  reg_size=SUBREGS[reg][2] if reg else 0, imm=imm, raw=raw, reg2=reg2)


def _kind(op: Op, mem_is_dest: bool, has_imm: bool) -> AccessKind:
    """The map's kind of `op` ([ops]): a move by direction, a fixed kind, else RMW or READ."""
    if op in MOVE_OPS:
        if mem_is_dest:
            return AccessKind.WRITE_IMM if has_imm else AccessKind.WRITE
        return AccessKind.READ
    fixed = OP_KIND.get(op)
    if fixed is not None:
        return fixed
    return AccessKind.RMW if mem_is_dest else AccessKind.READ


def _decode_string(insn: capstone.CsInsn, op: Op, mems: list[capstone.x86.X86Op],
                   raw: bytes, rep: bool, repne: bool) -> Access:
    """MOVS/CMPS: `mem` = ES:[rdi], `src_mem` = [rsi] (segment overridable). STOS/SCAS: ES:[rdi];
    LODS: [rsi]. The accumulator is `reg`."""
    size = mems[0].size
    named = [_mem_operand(insn, m) for m in mems]
    if op in (Op.MOVS, Op.CMPS):
        dst = next(m for m in named if (m.base or "").endswith("di"))
        src = next(m for m in named if (m.base or "").endswith("si"))
        return Access(kind=AccessKind.STRING, op=op, mnemonic=insn.mnemonic, length=insn.size, size=size,
                      mem=dst, mem_is_dest=op is Op.MOVS, src_mem=src, rep=rep, repne=repne, raw=raw)
    acc = {1: "al", 2: "ax", 4: "eax", 8: "rax"}[size]
    return Access(kind=AccessKind.STRING, op=op, mnemonic=insn.mnemonic, length=insn.size, size=size,
                  mem=named[0], mem_is_dest=op is Op.STOS, reg=acc, reg_size=size,
                  rep=rep, repne=repne, raw=raw)


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
