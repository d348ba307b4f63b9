"""Carry out a decoded `Access` on a `Cpu` with exact x86 semantics.

`SEMANTICS` maps every `Op` of emu/decode.py's table to one function; each instruction family is a
module of emu/semantics/ (mov, alu, bit, string, muldiv, shift, bitscan, cond, stack, atomic,
vector, misc) exporting its part of the table, merged below. emu/semantics/core.py owns what all
share (`Exec`: register widths, memory routing, precise faults). This module is the entry point.

Undefined flags follow Unicorn (QEMU), the oracle the tests compare with, where that is a function
of the operands: logical ops clear AF. BT/BTS/BTR/BTC change only CF (Unicorn's value for the
others depends on the previous instruction; docs/known-discrepancies.md). Each family module
documents its own undefined flags.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Access, Op
from emu.cpu import Cpu, Outcome
from emu.errors import GuestFault, UnmappedAccess
from emu.opmap import READ_ONLY, STRING_OPS
from emu.semantics import alu, atomic, bit, bitscan, cond, misc, mov, muldiv, shift, stack, string, vector
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
    sub_flags,
)
from emu.semantics.string import REP_BUDGET

__all__ = ["AF", "CF", "DF", "OF", "PF", "SF", "STATUS", "ZF", "REP_BUDGET", "SEMANTICS", "execute",
           "add_flags", "logic_flags", "sub_flags"]

# Op -> semantic function: the union of the family tables (string ops run through
# emu.semantics.string.execute_string, which owns the REP loop).
SEMANTICS: dict[Op, Callable[[Exec], None]] = {
    **mov.SEMANTICS,
    **alu.SEMANTICS,
    **bit.SEMANTICS,
    **muldiv.SEMANTICS,
    **shift.SEMANTICS,
    **bitscan.SEMANTICS,
    **cond.SEMANTICS,
    **stack.SEMANTICS,
    **atomic.SEMANTICS,
    **vector.SEMANTICS,
    **misc.SEMANTICS,
}

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
            and access.op not in READ_ONLY):
        # READ_ONLY (the map's `readonly` ops): memory operand 0 is only read (MUL/IMUL/DIV/IDIV r/m
        # name their source first). Flat 32-bit model: CS is an execute/read code segment, so a write
        # through a CS override is #GP(0) (SDM vol. 3 5.4.1), before any access; in 64-bit mode the
        # override is ignored.
        raise x.fault(GP, "write through a CS override (code segments are not writable)")
    try:
        if access.op in STRING_OPS:
            return string.execute_string(x)
        SEMANTICS[access.op](x)
    except (UnmappedAccess, GuestFault) as exc:
        exc.iterations = x.iterations if access.rep else 0
        exc.accesses = tuple(x.accesses)
        raise
    return x.outcome()
