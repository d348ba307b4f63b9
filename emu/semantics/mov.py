"""MOV (register, immediate, moffs; also MOVNTI, MOVDIRI), MOVZX, MOVSX/MOVSXD with a memory operand."""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Op
from emu.semantics.core import Exec


def _mov(x: Exec) -> None:
    a = x.a
    addr = x.ea()
    if a.mem_is_dest:
        value = a.imm if a.imm is not None else x.get_reg(a.reg or "")
        x.write(addr, a.size, value)
    else:
        x.set_reg(a.reg or "", x.read(addr, a.size))


def _movzx(x: Exec) -> None:
    x.set_reg(x.a.reg or "", x.read(x.ea(), x.a.size))


def _movsx(x: Exec) -> None:
    size = x.a.size
    v = x.read(x.ea(), size)
    if v >> (8 * size - 1):
        v -= 1 << (8 * size)
    x.set_reg(x.a.reg or "", v)


SEMANTICS: dict[Op, Callable[[Exec], None]] = {Op.MOV: _mov, Op.MOVZX: _movzx, Op.MOVSX: _movsx}
