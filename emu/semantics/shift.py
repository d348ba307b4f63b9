"""SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR (by 1, CL, imm8) and SHLD/SHRD on a memory operand.

The count is masked to 5 bits (6 with REX.W). A masked count of 0 changes no flag; the memory is
still read and written back (QEMU and KVM both write the operand back; a device sees the write).
RCL/RCR rotate through CF by count mod 9 (bytes) / 17 (words).

Undefined flags, as Unicorn (QEMU 5) computes them and the generic path reproduces:
- SHL/SHR/SAR/SHLD/SHRD with a count > 1: OF = top bit of (value shifted by count-1) XOR top bit
  of the result (the SDM defines OF only for 1-bit shifts); AF = 0. For SHLD/SHRD with a count
  larger than the operand (16-bit forms, count 17..31) the result and CF follow Intel's behaviour
  ("A:B:A" shifted), as QEMU implements it; the SDM leaves the result undefined.
- ROL/ROR/RCL/RCR: OF computed by the 1-bit formula for every count; SF ZF AF PF unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Op
from emu.semantics.core import CF, OF, STATUS, Exec, mask, szp


def _count(x: Exec) -> int:
    """The masked count: the immediate (1 for the D0/D1 forms) or CL."""
    a = x.a
    raw = a.imm if a.imm is not None else x.get_reg("cl")
    return raw & (0x3F if a.size == 8 else 0x1F)


def _shift_flags(result: int, shm1: int, n: int, right: bool) -> int:
    """QEMU's CC_OP_SHL/CC_OP_SAR from (result, value shifted by count-1)."""
    bits = 8 * n
    cf = shm1 & 1 if right else shm1 >> (bits - 1) & 1
    of = ((shm1 ^ result) >> (bits - 1)) & 1
    return szp(result & mask(n), n) | (CF if cf else 0) | (OF if of else 0)


def _shift(x: Exec) -> None:
    a = x.a
    n, bits = a.size, 8 * a.size
    addr = x.ea()
    v = x.read(addr, n)
    c = _count(x)
    op = a.op
    flags: int | None = None
    keep = 0
    if op in (Op.SHL, Op.SHR, Op.SAR):
        if c:
            if op is Op.SHL:
                shm1, r = v << (c - 1), v << c
            elif op is Op.SHR:
                shm1, r = v >> (c - 1), v >> c
            else:
                sv = v - (1 << bits) if v >> (bits - 1) else v
                shm1, r = sv >> (c - 1), sv >> c
            r &= mask(n)
            flags = _shift_flags(r, shm1 & ((1 << (bits + 1)) - 1) if op is Op.SHL else shm1 & mask(n), n,
                                 op is not Op.SHL)
        else:
            r = v
    elif op in (Op.ROL, Op.ROR):
        r = v
        if c:
            k = c % bits
            if op is Op.ROL:
                r = ((v << k) | (v >> (bits - k))) & mask(n) if k else v
                cf = r & 1
                of = (r >> (bits - 1) & 1) ^ cf
            else:
                r = ((v >> k) | (v << (bits - k))) & mask(n) if k else v
                cf = r >> (bits - 1) & 1
                of = cf ^ (r >> (bits - 2) & 1)
            flags, keep = (CF if cf else 0) | (OF if of else 0), STATUS & ~(CF | OF)
    else:  # RCL / RCR through CF
        k = c % (bits + 1)
        r = v
        if k:
            cin = x.cf()
            wide = v | (cin << bits) if op is Op.RCL else (cin << bits) | v
            if op is Op.RCL:
                wide = ((wide << k) | (wide >> (bits + 1 - k))) & ((1 << (bits + 1)) - 1)
            else:
                wide = ((wide >> k) | (wide << (bits + 1 - k))) & ((1 << (bits + 1)) - 1)
            r, cf = wide & mask(n), wide >> bits & 1
            of = ((v ^ r) >> (bits - 1)) & 1
            flags, keep = (CF if cf else 0) | (OF if of else 0), STATUS & ~(CF | OF)
    x.write(addr, n, r)
    if flags is not None:
        x.set_status(flags, keep=keep)


def _double(x: Exec) -> None:
    """SHLD/SHRD r/m, r, imm8/CL: shift the destination, filling from the source register."""
    a = x.a
    n = a.size
    addr = x.ea()
    dst = x.read(addr, n)
    src = x.get_reg(a.reg or "")
    c = _count(x)
    right = a.op is Op.SHRD
    if c == 0:
        x.write(addr, n, dst)
        return
    if n == 8:
        if right:
            r = (dst >> c) | (src << (64 - c))
            shm1 = dst >> (c - 1)
        else:
            r = (dst << c) | (src >> (64 - c))
            shm1 = dst << (c - 1)
    else:
        # QEMU: 16-bit operands are widened to dst:src:dst (Intel's behaviour for counts > 16),
        # 32-bit operands to a 64-bit pair, then shifted as one value.
        if n == 2:
            wide = dst << 32 | src << 16 | dst
        else:
            wide = src << 32 | dst if right else dst << 32 | src
        if right:
            r, shm1 = wide >> c, wide >> (c - 1)
        else:
            r, shm1 = (wide << c) >> 32, (wide << (c - 1)) >> 32
    r &= mask(n)
    x.write(addr, n, r)
    x.set_status(_shift_flags(r, shm1 & mask(n), n, right))


SEMANTICS: dict[Op, Callable[[Exec], None]] = {
    **{op: _shift for op in (Op.SHL, Op.SHR, Op.SAR, Op.ROL, Op.ROR, Op.RCL, Op.RCR)},
    Op.SHLD: _double,
    Op.SHRD: _double,
}
