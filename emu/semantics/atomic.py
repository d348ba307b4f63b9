"""CMPXCHG8B, CMPXCHG16B, MOVBE, MOVDIR64B.

CMPXCHG8B/16B compare EDX:EAX (RDX:RAX) with the operand; equal: ZF=1 and ECX:EBX (RCX:RBX) is
written, else ZF=0, the accumulator pair is loaded and the old value is written back (SDM: a
locked read is always followed by a write, so the device sees the write either way). Only ZF
changes. CMPXCHG16B needs a 16-byte aligned operand (#GP otherwise, checked before any access).
An 8/16-byte operand reaches a device as 8-byte accesses, low half first (KVM's 8-byte chunks).
On success the SDM leaves EDX:EAX untouched; Unicorn rewrites EAX/EDX from the old value, which
zero-extends RAX/RDX in 64-bit mode (docs/known-discrepancies.md) — the generic path keeps them.

MOVBE swaps bytes between memory and a register. MOVDIR64B reads 64 bytes from the source operand
and writes them to ES:[reg] (64-byte aligned, #GP otherwise) as eight 8-byte device writes, low
first (a device cannot take one 64-byte access through the exit interface; KVM does not emulate
MOVDIR64B at all).
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import MemOperand, Op
from emu.decode import effective_address
from emu.semantics.core import GP, ZF, Exec, mask


def _cmpxchg_wide(x: Exec) -> None:
    a = x.a
    half = a.size // 2
    lo, hi = ("eax", "edx") if half == 4 else ("rax", "rdx")
    new_lo, new_hi = ("ebx", "ecx") if half == 4 else ("rbx", "rcx")
    addr = x.ea()
    old = x.read(addr, a.size)
    cmp = x.get_reg(hi) << (8 * half) | x.get_reg(lo)
    if old == cmp:
        x.write(addr, a.size, x.get_reg(new_hi) << (8 * half) | x.get_reg(new_lo))
        x.set_status(ZF, keep=~ZF)
    else:
        x.write(addr, a.size, old)
        x.set_reg(lo, old & mask(half))
        x.set_reg(hi, old >> (8 * half))
        x.set_status(0, keep=~ZF)


def _movbe(x: Exec) -> None:
    a = x.a
    n = a.size
    addr = x.ea()
    if a.mem_is_dest:
        x.write(addr, n, int.from_bytes(x.get_reg(a.reg or "").to_bytes(n, "little"), "big"))
    else:
        x.set_reg(a.reg or "", int.from_bytes(x.read(addr, n).to_bytes(n, "little"), "big"))


def _movdir64b(x: Exec) -> None:
    a = x.a
    src = x.ea()
    reg = a.reg2 or ""
    dst_op = MemOperand(base=reg, index=None, scale=1, disp=0, segment="es", addr_size=a.mem.addr_size)
    dst = effective_address(dst_op, x.cpu.get, x.next_rip, x.mode)
    if dst % 64:
        raise x.fault(GP, f"MOVDIR64B destination {dst:#x} is not 64-byte aligned")
    x.probe(src, 64, False)
    x.probe(dst, 64, True)
    x.write(dst, 64, x.read(src, 64))


SEMANTICS: dict[Op, Callable[[Exec], None]] = {
    Op.CMPXCHG8B: _cmpxchg_wide, Op.MOVBE: _movbe, Op.MOVDIR64B: _movdir64b,
}
