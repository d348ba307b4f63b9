"""Two-operand ALU ops (ADD OR ADC SBB AND SUB XOR CMP TEST), INC DEC NOT NEG, XCHG, XADD, CMPXCHG,
CRC32.

Flags are exact (SDM); the one undefined flag, AF after a logical op, is 0 as Unicorn computes it.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Op
from emu.semantics.core import CF, ZF, Exec, add_flags, logic_flags, mask, sub_flags


def _source(x: Exec) -> int:
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


def _binary(x: Exec) -> None:
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


def _unary(x: Exec) -> None:
    a = x.a
    size = a.size
    addr = x.ea()
    v = x.read(addr, size)
    if a.op is Op.NOT:
        x.write(addr, size, ~v & mask(size))
        return
    if a.op is Op.NEG:
        r, f = sub_flags(0, v, 0, size)
        x.write(addr, size, r)
        x.set_status(f)
        return
    r, f = add_flags(v, 1, 0, size) if a.op is Op.INC else sub_flags(v, 1, 0, size)
    x.write(addr, size, r)
    x.set_status(f, keep=CF)


def _xchg(x: Exec) -> None:
    a = x.a
    addr = x.ea()
    old = x.read(addr, a.size)
    x.write(addr, a.size, x.get_reg(a.reg or ""))
    x.set_reg(a.reg or "", old)


def _xadd(x: Exec) -> None:
    a = x.a
    addr = x.ea()
    old = x.read(addr, a.size)
    r, f = add_flags(old, x.get_reg(a.reg or ""), 0, a.size)
    x.write(addr, a.size, r)
    x.set_reg(a.reg or "", old)
    x.set_status(f)


def _cmpxchg(x: Exec) -> None:
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


_CRC32C = 0x82F63B78  # the Castagnoli polynomial, bit-reflected (Intel SDM CRC32)
_LEGACY = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})


def _crc32(x: Exec) -> None:
    """CRC32 r32/r64, r/m8/16/32/64 (SSE4.2; F2 0F 38 F0 /r byte, F1 /r word/dword/qword): the
    register's low 32 bits are the running CRC-32C, the source's bytes go in low address first
    (bit-reflected, no inversion), the 32-bit result is zero-extended into the register. No flag
    changes. An F3 prefix next to the mandatory F2 is refused: Unicorn (QEMU) raises #UD for it,
    Capstone still decodes CRC32, and the SDM leaves the combination undefined."""
    a = x.a
    prefixes = []
    for b in a.raw:
        if b not in _LEGACY and not (x.mode == 64 and b & 0xF0 == 0x40):
            break
        prefixes.append(b)
    if 0xF3 in prefixes:
        raise x.fail(f"unsupported instruction '{a.mnemonic}': F3 with the mandatory F2 of CRC32 "
                     "(#UD under Unicorn)")
    crc = x.get_reg(a.reg or "") & 0xFFFFFFFF
    v = x.read(x.ea(), a.size)
    for i in range(a.size):
        crc ^= (v >> (8 * i)) & 0xFF
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C if crc & 1 else 0)
    x.set_reg(a.reg or "", crc)


SEMANTICS: dict[Op, Callable[[Exec], None]] = {
    **{op: _binary for op in _BINARY},
    Op.INC: _unary, Op.DEC: _unary, Op.NOT: _unary, Op.NEG: _unary,
    Op.XCHG: _xchg,
    Op.XADD: _xadd,
    Op.CMPXCHG: _cmpxchg,
    Op.CRC32: _crc32,
}
