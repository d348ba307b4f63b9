"""BT, BTS, BTR, BTC with a memory operand (immediate or register bit offset).

Only CF changes: OF SF AF PF are undefined (SDM) and ZF unchanged; the generic path leaves all of
them as they were. Unicorn's values for the undefined ones depend on the previous instruction
(docs/known-discrepancies.md, issue 11 (a)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from emu.access import Op
from emu.decode import effective_address
from emu.semantics.core import CF, STATUS, Exec


def _bitop(x: Exec) -> None:
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


SEMANTICS: dict[Op, Callable[[Exec], None]] = {op: _bitop for op in (Op.BT, Op.BTS, Op.BTR, Op.BTC)}
