"""Carry out a decoded `Access` on a `Cpu` with exact x86 semantics.

`SEMANTICS` maps every `Op` of emu/decode.py's table to one function. The MOV, ALU, BT* and SSE
families and the string instructions live here; newer families are modules of emu/semantics/
(muldiv, shift, bitscan, cond, stack, atomic, vector, misc), merged into the one table below.
emu/semantics/core.py owns what all share (`Exec`: register widths, memory routing, precise faults).

Undefined flags follow Unicorn (QEMU), the oracle the tests compare with, where that is a function
of the operands: logical ops clear AF. BT/BTS/BTR/BTC change only CF (Unicorn's value for the
others depends on the previous instruction; docs/known-discrepancies.md). Each family module
documents its own undefined flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from emu.access import Access, Op
from emu.cpu import Cpu, Outcome
from emu.decode import effective_address
from emu.errors import GuestFault, UnmappedAccess
from emu.semantics import atomic, bitscan, cond, misc, muldiv, shift, stack, vector
from emu.semantics.core import (
    AF,
    CF,
    DF,
    GP,
    OF,
    PF,
    SF,
    STATUS,
    ZF,
    Exec,
    add_flags,
    logic_flags,
    mask,
    sub_flags,
)

__all__ = ["AF", "CF", "DF", "OF", "PF", "SF", "STATUS", "ZF", "REP_BUDGET", "SEMANTICS", "execute",
           "add_flags", "logic_flags", "sub_flags"]

# A REP instruction stops after this many iterations with RIP left on it, as an interrupted REP
# does on hardware: the guest re-executes it and the rest happens on the next exit.
REP_BUDGET = 1 << 16

_Exec = Exec
_mask = mask


# semantics, one function per Op -----------------------------------------------------------------

def _mov(x: _Exec) -> None:
    a = x.a
    addr = x.ea()
    if a.mem_is_dest:
        value = a.imm if a.imm is not None else x.get_reg(a.reg or "")
        x.write(addr, a.size, value)
    else:
        x.set_reg(a.reg or "", x.read(addr, a.size))


def _movzx(x: _Exec) -> None:
    x.set_reg(x.a.reg or "", x.read(x.ea(), x.a.size))


def _movsx(x: _Exec) -> None:
    size = x.a.size
    v = x.read(x.ea(), size)
    if v >> (8 * size - 1):
        v -= 1 << (8 * size)
    x.set_reg(x.a.reg or "", v)


def _source(x: _Exec) -> int:
    a = x.a
    if a.imm is not None:
        return a.imm
    return x.get_reg(a.reg or "")


_BINARY: dict[Op, Callable[[int, int, int, int], tuple[int, int]]] = {
    Op.ADD: lambda d, s, c, n: add_flags(d, s, 0, n),
    Op.ADC: lambda d, s, c, n: add_flags(d, s, c, n),
    Op.SUB: lambda d, s, c, n: sub_flags(d, s, 0, n),
    Op.SBB: lambda d, s, c, n: sub_flags(d, s, c, n),
    Op.CMP: lambda d, s, c, n: sub_flags(d, s, 0, n),
    Op.AND: lambda d, s, c, n: (d & s, logic_flags(d & s, n)),
    Op.TEST: lambda d, s, c, n: (d & s, logic_flags(d & s, n)),
    Op.OR: lambda d, s, c, n: (d | s, logic_flags(d | s, n)),
    Op.XOR: lambda d, s, c, n: (d ^ s, logic_flags(d ^ s, n)),
}


def _binary(x: _Exec) -> None:
    """Two-operand ALU op; memory is the destination or the source. CMP and TEST write nothing."""
    a = x.a
    size = a.size
    addr = x.ea()
    mem = x.read(addr, size)
    fn = _BINARY[a.op]
    writes = a.op not in (Op.CMP, Op.TEST)
    if a.mem_is_dest:
        result, flags = fn(mem, _source(x), x.cf(), size)
        if writes:
            x.write(addr, size, result)
    else:
        result, flags = fn(x.get_reg(a.reg or ""), mem, x.cf(), size)
        if writes:
            x.set_reg(a.reg or "", result)
    x.set_status(flags)


def _unary(x: _Exec) -> None:
    a = x.a
    size = a.size
    addr = x.ea()
    v = x.read(addr, size)
    if a.op is Op.NOT:
        x.write(addr, size, ~v & _mask(size))
        return
    if a.op is Op.NEG:
        r, f = sub_flags(0, v, 0, size)
        x.write(addr, size, r)
        x.set_status(f)
        return
    r, f = add_flags(v, 1, 0, size) if a.op is Op.INC else sub_flags(v, 1, 0, size)
    x.write(addr, size, r)
    x.set_status(f, keep=CF)


def _xchg(x: _Exec) -> None:
    a = x.a
    addr = x.ea()
    old = x.read(addr, a.size)
    x.write(addr, a.size, x.get_reg(a.reg or ""))
    x.set_reg(a.reg or "", old)


def _xadd(x: _Exec) -> None:
    a = x.a
    addr = x.ea()
    old = x.read(addr, a.size)
    r, f = add_flags(old, x.get_reg(a.reg or ""), 0, a.size)
    x.write(addr, a.size, r)
    x.set_reg(a.reg or "", old)
    x.set_status(f)


def _cmpxchg(x: _Exec) -> None:
    """Compare the accumulator with memory; the destination is written either way (SDM: on failure
    it is written back unchanged), the accumulator only on failure."""
    a = x.a
    acc = {1: "al", 2: "ax", 4: "eax", 8: "rax"}[a.size]
    addr = x.ea()
    old = x.read(addr, a.size)
    _, f = sub_flags(x.get_reg(acc), old, 0, a.size)
    if f & ZF:
        x.write(addr, a.size, x.get_reg(a.reg or ""))
    else:
        x.write(addr, a.size, old)
        x.set_reg(acc, old)
    x.set_status(f)


def _bitop(x: _Exec) -> None:
    """BT/BTS/BTR/BTC. With a register offset the offset is signed and may address memory outside
    the operand: the operand moves by (offset >> log2(bits)) operands."""
    a = x.a
    size = a.size
    bits = 8 * size
    addr = x.ea()
    if a.imm is not None:
        bit = a.imm % bits
    else:
        off = x.get_reg(a.reg or "")
        if off >> (bits - 1):
            off -= 1 << bits
        # The byte offset joins the displacement, so it wraps at the address size like the rest.
        moved = replace(a.mem, disp=a.mem.disp + (off >> (bits.bit_length() - 1)) * size)
        addr = effective_address(moved, x.cpu.get, x.next_rip, x.mode)
        bit = off & (bits - 1)
    v = x.read(addr, size)
    cf = v >> bit & 1
    if a.op is Op.BTS:
        x.write(addr, size, v | (1 << bit))
    elif a.op is Op.BTR:
        x.write(addr, size, v & ~(1 << bit))
    elif a.op is Op.BTC:
        x.write(addr, size, v ^ (1 << bit))
    x.set_status(CF if cf else 0, keep=STATUS & ~CF)


_STRING_OPS = frozenset({Op.MOVS, Op.STOS, Op.LODS, Op.CMPS, Op.SCAS})


def _string(x: Exec) -> Outcome:
    """MOVS/STOS/LODS/CMPS/SCAS, one element per iteration.

    With REP, RCX (ECX/CX under the address size) counts down and registers are updated after each
    element, as an interruptible REP does; CMPS/SCAS stop early when REPE finds ZF=0 or REPNE ZF=1.
    Every operand of an iteration is probed before its first access, so a fault (SEMANTICS rule 6)
    leaves the faulting iteration undone and the earlier ones done. At most `x.max_iterations`
    (the remaining instruction budget) and REP_BUDGET iterations run; if RCX is not exhausted by
    then, RIP stays on the instruction (an interrupted REP).
    """
    a = x.a
    asz = a.mem.addr_size
    names = {8: ("rcx", "rsi", "rdi"), 4: ("ecx", "esi", "edi"), 2: ("cx", "si", "di")}[asz]
    step = -a.size if x.rflags() & DF else a.size
    count_left = x.get_reg(names[0]) if a.rep else 1
    limit = REP_BUDGET if x.max_iterations is None else min(REP_BUDGET, x.max_iterations)
    compares = a.op in (Op.CMPS, Op.SCAS)
    x.iterations = 0
    while count_left:
        if x.iterations == limit:
            return x.outcome(x.rip)
        dst = effective_address(a.mem, x.cpu.get, x.next_rip, x.mode)
        if a.op is Op.MOVS or a.op is Op.CMPS:
            assert a.src_mem is not None
            src = effective_address(a.src_mem, x.cpu.get, x.next_rip, x.mode)
            x.probe(src, a.size, False)
            x.probe(dst, a.size, a.op is Op.MOVS)
            value = x.read(src, a.size)
            if a.op is Op.MOVS:
                x.write(dst, a.size, value)
            else:  # CMPS compares DS:[rsi] - ES:[rdi]
                x.set_status(sub_flags(value, x.read(dst, a.size), 0, a.size)[1])
            x.set_reg(names[1], x.get_reg(names[1]) + step)
            x.set_reg(names[2], x.get_reg(names[2]) + step)
        elif a.op is Op.STOS:
            x.write(dst, a.size, x.get_reg(a.reg or ""))
            x.set_reg(names[2], x.get_reg(names[2]) + step)
        elif a.op is Op.SCAS:  # accumulator - ES:[rdi]
            x.set_status(sub_flags(x.get_reg(a.reg or ""), x.read(dst, a.size), 0, a.size)[1])
            x.set_reg(names[2], x.get_reg(names[2]) + step)
        else:
            x.set_reg(a.reg or "", x.read(dst, a.size))
            x.set_reg(names[1], x.get_reg(names[1]) + step)
        x.iterations += 1
        count_left -= 1
        if a.rep:
            x.set_reg(names[0], count_left)
            if compares and bool(x.rflags() & ZF) == a.repne:
                break
    if not a.rep:
        x.iterations = 1
    return x.outcome()


SEMANTICS: dict[Op, Callable[[Exec], None]] = {
    Op.MOV: _mov,
    Op.MOVZX: _movzx,
    Op.MOVSX: _movsx,
    **{op: _binary for op in _BINARY},
    Op.INC: _unary, Op.DEC: _unary, Op.NOT: _unary, Op.NEG: _unary,
    Op.XCHG: _xchg,
    Op.XADD: _xadd,
    Op.CMPXCHG: _cmpxchg,
    Op.BT: _bitop, Op.BTS: _bitop, Op.BTR: _bitop, Op.BTC: _bitop,
    **muldiv.SEMANTICS,
    **shift.SEMANTICS,
    **bitscan.SEMANTICS,
    **cond.SEMANTICS,
    **stack.SEMANTICS,
    **atomic.SEMANTICS,
    **vector.SEMANTICS,
    **misc.SEMANTICS,
}

# Ops that only read their memory operand even when it is the first operand.
_READ_ONLY = frozenset({Op.CMP, Op.TEST, Op.BT, Op.LODS, Op.CMPS, Op.SCAS, Op.PUSH, Op.CALL, Op.JMP})


def execute(access: Access, cpu: Cpu, rip: int, mode: int, max_iterations: int | None = None) -> Outcome:
    """Carry out `access` (decoded at `rip`) on `cpu`; return the device accesses and next RIP.

    Registers, flags and RAM are updated on `cpu`; device accesses go through cpu.mmio_read/write
    in program order. `max_iterations` caps the iterations of a REP string instruction (the
    remaining instruction budget, SEMANTICS rule 1); `Outcome.iterations` says how many ran.
    Raises UnmappedAccess (rule 6: precise, nothing accessed), GuestFault (#DE, #GP, ...: nothing
    accessed) or EmulationError (RIP and bytes) for what the path cannot deliver. The two fault
    types carry `iterations` and `accesses`: what earlier REP iterations did before the fault.
    """
    if max_iterations is not None and max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1 (got {max_iterations})")
    x = Exec(access, cpu, rip, mode, max_iterations)
    if (mode != 64 and access.mem.segment == "cs" and access.mem_is_dest
            and access.op not in _READ_ONLY):
        # Flat 32-bit model: CS is an execute/read code segment, so a write through a CS override
        # is #GP(0) (SDM vol. 3 5.4.1), before any access; in 64-bit mode the override is ignored.
        raise x.fault(GP, "write through a CS override (code segments are not writable)")
    try:
        if access.op in _STRING_OPS:
            return _string(x)
        SEMANTICS[access.op](x)
    except (UnmappedAccess, GuestFault) as exc:
        exc.iterations = x.iterations if access.rep else 0
        exc.accesses = tuple(x.accesses)
        raise
    return x.outcome()
