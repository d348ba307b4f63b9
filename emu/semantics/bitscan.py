"""BSF, BSR, POPCNT, LZCNT, TZCNT with a memory source.

- BSF/BSR: a zero source sets ZF and leaves the destination's value (the SDM says "undefined";
  AMD documents "unchanged"); like Unicorn/QEMU the old value is written back at the operand size,
  so in 64-bit mode a 32-bit destination's upper half is cleared, as for CMOVcc with a false
  condition (hardware behaviour here is not documented). The other flags are undefined: Unicorn computes
  them as a logical operation on the *source* (SF = its top bit, PF its low byte's parity,
  CF=OF=AF=0) and the generic path does the same.
- LZCNT/TZCNT (F3 0F BD / F3 0F BC): CF = source is zero, ZF = result is zero; OF SF PF AF undefined
  (Unicorn: 0, SF from the result = 0). On a CPU without ABM/BMI1 the F3 prefix is ignored and the
  bytes are BSR/BSF; Capstone and this platform's CPU model (Unicorn's default, and any KVM host
  since Haswell) have them, so they are LZCNT/TZCNT here.
- POPCNT: ZF = source is zero, the other five status flags cleared.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Op
from emu.semantics.core import CF, ZF, Exec, logic_flags


def _scan(x: Exec) -> None:
    a = x.a
    n, bits = a.size, 8 * a.size
    v = x.read(x.ea(), n)
    reg = a.reg or ""
    op = a.op
    if op in (Op.BSF, Op.BSR):
        # a zero source writes the old value back: a 32-bit destination is zero-extended (Unicorn)
        r = ((v & -v).bit_length() - 1 if op is Op.BSF else v.bit_length() - 1) if v else x.get_reg(reg)
        x.set_reg(reg, r)
        x.set_status(logic_flags(v, n))
        return
    if op is Op.POPCNT:
        x.set_reg(reg, bin(v).count("1"))
        x.set_status(0 if v else ZF)
        return
    if op is Op.LZCNT:
        r = bits - v.bit_length()
    else:
        r = (v & -v).bit_length() - 1 if v else bits
    x.set_reg(reg, r)
    x.set_status((CF if v == 0 else 0) | (ZF if r == 0 else 0))


SEMANTICS: dict[Op, Callable[[Exec], None]] = {
    op: _scan for op in (Op.BSF, Op.BSR, Op.POPCNT, Op.LZCNT, Op.TZCNT)
}
