"""MOVS, STOS, LODS, CMPS, SCAS with REP/REPE/REPNE, DF and the 0x67 address size."""

from __future__ import annotations

from emu.access import Op
from emu.cpu import Outcome
from emu.decode import effective_address
from emu.semantics.core import DF, ZF, Exec, sub_flags

# A REP instruction stops after this many iterations with RIP left on it, as an interrupted REP
# does on hardware: the guest re-executes it and the rest happens on the next exit.
REP_BUDGET = 1 << 16


def execute_string(x: Exec) -> Outcome:
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
