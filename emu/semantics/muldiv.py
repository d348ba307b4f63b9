"""MUL, IMUL (one, two and three operands), DIV, IDIV with a memory operand.

Flags (SDM): MUL/IMUL set CF=OF when the result does not fit the destination half; SF ZF AF PF
are undefined. Unicorn (QEMU's CC_OP_MUL) computes them from the low half of the result — SF its
top bit, ZF whether it is 0, PF its low byte — and clears AF; the generic path does the same so the
two agree bit for bit. DIV/IDIV leave every status flag undefined; Unicorn leaves them unchanged,
and so does the generic path. A zero divisor or a quotient that does not fit is #DE: a GuestFault
raised after the read (the fault happens on the divide) with no register changed.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Op
from emu.semantics.core import AF, CF, DE, OF, SF, ZF, Exec, mask, parity, signed

_HALVES = {1: ("al", "ah"), 2: ("ax", "dx"), 4: ("eax", "edx"), 8: ("rax", "rdx")}


def mul_flags(low: int, overflow: bool, size: int) -> int:
    """QEMU's compute_all_mul: CF=OF=overflow, SF ZF PF from the low half, AF 0."""
    low &= mask(size)
    f = CF | OF if overflow else 0
    f |= ZF if low == 0 else 0
    f |= SF if low >> (8 * size - 1) & 1 else 0
    return f | parity(low)


def _mul(x: Exec) -> None:
    """MUL r/m, IMUL r/m: rDX:rAX (AX for bytes) = rAX * r/m, unsigned or signed."""
    a = x.a
    n = a.size
    src = x.read(x.ea(), n)
    lo_name, hi_name = _HALVES[n]
    acc = x.get_reg(lo_name)
    if a.op is Op.MUL:
        prod = acc * src
        overflow = prod >> (8 * n) != 0
    else:
        prod = signed(acc, n) * signed(src, n)
        overflow = prod != signed(prod, n)
    prod &= mask(2 * n)
    if n == 1:
        x.set_reg("ax", prod)
    else:
        x.set_reg(lo_name, prod & mask(n))
        x.set_reg(hi_name, prod >> (8 * n))
    x.set_status(mul_flags(prod, overflow, n))


def _imul(x: Exec) -> None:
    """IMUL: the one-operand form is _mul; IMUL r, r/m and IMUL r, r/m, imm truncate to r."""
    a = x.a
    if a.reg is None:
        _mul(x)
        return
    n = a.size
    src = x.read(x.ea(), n)
    other = a.imm if a.imm is not None else x.get_reg(a.reg)
    prod = signed(src, n) * signed(other, n)
    x.set_reg(a.reg, prod)
    x.set_status(mul_flags(prod, prod != signed(prod, n), n))


def _div(x: Exec) -> None:
    """DIV/IDIV r/m: rDX:rAX (AX for bytes) / r/m -> quotient in rAX, remainder in rDX (AH)."""
    a = x.a
    n = a.size
    divisor = x.read(x.ea(), n)
    lo_name, hi_name = _HALVES[n]
    if n == 1:
        dividend = x.get_reg("ax")
    else:
        dividend = x.get_reg(hi_name) << (8 * n) | x.get_reg(lo_name)
    if divisor == 0:
        raise x.fault(DE, "divide by zero")
    if a.op is Op.DIV:
        q, r = divmod(dividend, divisor)
        fits = q <= mask(n)
    else:
        sd, sv = signed(dividend, 2 * n), signed(divisor, n)
        q = abs(sd) // abs(sv)
        q = -q if (sd < 0) != (sv < 0) else q
        r = sd - q * sv  # the remainder has the dividend's sign (truncating division)
        fits = q == signed(q, n)
    if not fits:
        raise x.fault(DE, "quotient too large")
    x.set_reg(lo_name, q)
    x.set_reg(hi_name, r)


SEMANTICS: dict[Op, Callable[[Exec], None]] = {Op.MUL: _mul, Op.IMUL: _imul, Op.DIV: _div, Op.IDIV: _div}
_ = AF
