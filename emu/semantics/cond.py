"""CMOVcc r, m and SETcc m8.

CMOVcc reads its memory operand whatever the condition (SDM: "the source operand is read even if
the condition is false", so a device sees the read either way); a false condition leaves the
destination unchanged except that a 32-bit destination is zero-extended in 64-bit mode. SETcc
always writes its byte (1 or 0). No flag changes.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Op
from emu.semantics.core import Exec, condition


def _cmov(x: Exec) -> None:
    a = x.a
    v = x.read(x.ea(), a.size)
    reg = a.reg or ""
    assert a.cond is not None
    x.set_reg(reg, v if condition(a.cond, x.rflags()) else x.get_reg(reg))


def _setcc(x: Exec) -> None:
    a = x.a
    assert a.cond is not None
    x.write(x.ea(), 1, 1 if condition(a.cond, x.rflags()) else 0)


SEMANTICS: dict[Op, Callable[[Exec], None]] = {Op.CMOV: _cmov, Op.SETCC: _setcc}
