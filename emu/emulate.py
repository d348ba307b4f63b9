"""Carry out a decoded `Access` on a `Cpu` with exact x86 semantics.

`SEMANTICS` maps every `Op` of emu/decode.py's table to one function; the function reads operands,
computes, and writes back through `_Exec`, which owns the rules every instruction shares:
register write widths (a 32-bit write zero-extends, 8/16-bit writes merge), memory routing (MMIO
pieces to the device, the rest to RAM, split at region boundaries, 16-byte accesses as two 8-byte
halves, low first) and the order of device accesses.

Undefined flags follow Unicorn (QEMU), the oracle the tests compare with: logical ops clear AF;
BT/BTS/BTR/BTC change only CF. docs/known-discrepancies.md lists where the SDM and Unicorn part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from emu.access import SUBREGS, Access, Op
from emu.cpu import Cpu, DeviceAccess, Outcome
from emu.decode import effective_address, read_subreg
from emu.errors import EmulationError

CF, PF, AF, ZF, SF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x400, 0x800
STATUS = CF | PF | AF | ZF | SF | OF

# A REP instruction stops after this many iterations with RIP left on it, as an interrupted REP
# does on hardware: the guest re-executes it and the rest happens on the next exit.
REP_BUDGET = 1 << 16


def _canonical(addr: int) -> bool:
    """Bits 63..47 all equal (48-bit linear addresses)."""
    top = addr >> 47
    return top == 0 or top == (1 << 17) - 1


def _mask(size: int) -> int:
    return (1 << (8 * size)) - 1


def _parity(value: int) -> int:
    return PF if bin(value & 0xFF).count("1") % 2 == 0 else 0


def _szp(result: int, size: int) -> int:
    bits = 8 * size
    return (ZF if result == 0 else 0) | (SF if result >> (bits - 1) & 1 else 0) | _parity(result)


def add_flags(a: int, b: int, carry: int, size: int) -> tuple[int, int]:
    """(result, status flags) of a + b + carry at `size` bytes (ADD, ADC, INC, XADD)."""
    bits, m = 8 * size, _mask(size)
    full = a + b + carry
    r = full & m
    f = _szp(r, size) | (CF if full >> bits else 0) | ((a ^ b ^ r) & AF)
    f |= OF if ((a ^ r) & (b ^ r)) >> (bits - 1) & 1 else 0
    return r, f


def sub_flags(a: int, b: int, borrow: int, size: int) -> tuple[int, int]:
    """(result, status flags) of a - b - borrow at `size` bytes (SUB, SBB, CMP, DEC, NEG, CMPXCHG)."""
    bits, m = 8 * size, _mask(size)
    r = (a - b - borrow) & m
    f = _szp(r, size) | (CF if a < b + borrow else 0) | ((a ^ b ^ r) & AF)
    f |= OF if ((a ^ b) & (a ^ r)) >> (bits - 1) & 1 else 0
    return r, f


def logic_flags(r: int, size: int) -> int:
    """AND/OR/XOR/TEST: CF=OF=0, SF ZF PF from the result; AF (undefined) 0 as Unicorn does."""
    return _szp(r, size)


class _Exec:
    """State of one instruction being carried out: operands, registers, device accesses so far."""

    def __init__(self, access: Access, cpu: Cpu, rip: int, mode: int) -> None:
        self.a = access
        self.cpu = cpu
        self.rip = rip
        self.mode = mode
        self.next_rip = (rip + access.length) & ((1 << 64) - 1 if mode == 64 else 0xFFFFFFFF)  # EIP wraps
        self.accesses: list[DeviceAccess] = []
        self.amask = (1 << mode) - 1

    def fail(self, why: str) -> EmulationError:
        return EmulationError(f"{why} in '{self.a.mnemonic}'", self.rip, self.a.raw)

    # registers -------------------------------------------------------------------------------
    def get_reg(self, name: str) -> int:
        return read_subreg(self.cpu.get, name)

    def set_reg(self, name: str, value: int) -> None:
        """Write a (sub-)register: 32-bit writes zero-extend, 8/16-bit writes keep the rest."""
        full, shift, size = SUBREGS[name]
        value &= _mask(size)
        if size >= 4:
            self.cpu.set(full, value)
            return
        old = self.cpu.get(full)
        self.cpu.set(full, (old & ~(_mask(size) << shift)) | (value << shift))

    def set_status(self, flags: int, keep: int = 0) -> None:
        """Replace the status flags except those in `keep` (INC/DEC keep CF, BT* keep all but CF)."""
        replace = STATUS & ~keep
        rf = self.cpu.get("rflags")
        self.cpu.set("rflags", (rf & ~replace) | (flags & replace))

    def cf(self) -> int:
        return self.cpu.get("rflags") & CF

    # memory ----------------------------------------------------------------------------------
    def ea(self) -> int:
        ea = effective_address(self.a.mem, self.cpu.get, self.next_rip, self.mode)
        if self.a.align16 and ea % 16:
            raise self.fail(f"general-protection fault (#GP): misaligned 16-byte operand at {ea:#x}")
        return ea

    def read(self, addr: int, size: int) -> int:
        value = 0
        for off in range(0, size, 8):
            value |= self._piece(addr + off, min(8, size - off), None) << (8 * off)
        return value

    def write(self, addr: int, size: int, value: int) -> None:
        for off in range(0, size, 8):
            n = min(8, size - off)
            self._piece(addr + off, n, (value >> (8 * off)) & _mask(n))

    def _piece(self, addr: int, size: int, value: int | None) -> int:
        """One access of at most 8 bytes, split where it crosses between MMIO and RAM."""
        addr &= self.amask
        if self.mode == 64 and not (_canonical(addr) and _canonical((addr + size - 1) & self.amask)):
            # SDM vol. 3 6.15: a non-canonical linear address is #GP (#SS for stack references)
            raise self.fail(f"general-protection fault (#GP): non-canonical address {addr:#x}")
        runs: list[tuple[int, int, bool]] = []
        for i in range(size):
            a = (addr + i) & self.amask
            mmio = self.cpu.is_mmio(a)
            if runs and runs[-1][2] == mmio and runs[-1][0] + runs[-1][1] == a:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1, mmio)
            else:
                runs.append((a, 1, mmio))
        result, shift = 0, 0
        for start, n, mmio in runs:
            part = None if value is None else (value >> shift) & _mask(n)
            if mmio:
                if part is None:
                    got = self.cpu.mmio_read(start, n) & _mask(n)
                    self.accesses.append(DeviceAccess(start, n, False, got))
                    result |= got << shift
                else:
                    self.cpu.mmio_write(start, n, part)
                    self.accesses.append(DeviceAccess(start, n, True, part))
            else:
                data = self.cpu.read_mem(start, n)
                if len(data) != n:
                    raise self.fail(f"access to unmapped memory at {start + len(data):#x}")
                if part is None:
                    result |= int.from_bytes(data, "little") << shift
                else:
                    self.cpu.write_mem(start, part.to_bytes(n, "little"))
            shift += 8 * n
        return result

    def outcome(self, next_rip: int | None = None) -> Outcome:
        return Outcome(self.next_rip if next_rip is None else next_rip, tuple(self.accesses))


# semantics, one function per Op -----------------------------------------------------------------

def _mov(x: _Exec) -> None:
    a = x.a
    addr = x.ea()
    if a.mem_is_dest:
        value = a.imm if a.imm is not None else x.get_reg(a.reg or "")
        x.write(addr, a.size, value)
    else:
        x.set_reg(a.reg or "", x.read(addr, a.size))


def _movzx(x: _Exec) -> None:
    x.set_reg(x.a.reg or "", x.read(x.ea(), x.a.size))


def _movsx(x: _Exec) -> None:
    size = x.a.size
    v = x.read(x.ea(), size)
    if v >> (8 * size - 1):
        v -= 1 << (8 * size)
    x.set_reg(x.a.reg or "", v)


def _source(x: _Exec) -> int:
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


def _binary(x: _Exec) -> None:
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


def _unary(x: _Exec) -> None:
    a = x.a
    size = a.size
    addr = x.ea()
    v = x.read(addr, size)
    if a.op is Op.NOT:
        x.write(addr, size, ~v & _mask(size))
        return
    if a.op is Op.NEG:
        r, f = sub_flags(0, v, 0, size)
        x.write(addr, size, r)
        x.set_status(f)
        return
    r, f = add_flags(v, 1, 0, size) if a.op is Op.INC else sub_flags(v, 1, 0, size)
    x.write(addr, size, r)
    x.set_status(f, keep=CF)


def _xchg(x: _Exec) -> None:
    a = x.a
    addr = x.ea()
    old = x.read(addr, a.size)
    x.write(addr, a.size, x.get_reg(a.reg or ""))
    x.set_reg(a.reg or "", old)


def _xadd(x: _Exec) -> None:
    a = x.a
    addr = x.ea()
    old = x.read(addr, a.size)
    r, f = add_flags(old, x.get_reg(a.reg or ""), 0, a.size)
    x.write(addr, a.size, r)
    x.set_reg(a.reg or "", old)
    x.set_status(f)


def _cmpxchg(x: _Exec) -> None:
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


def _bitop(x: _Exec) -> None:
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


def _sse(x: _Exec) -> None:
    a = x.a
    index = int((a.reg or "xmm")[3:])
    addr = x.ea()
    if a.op is Op.SSE_STORE:
        x.write(addr, a.size, x.cpu.get_xmm(index) & _mask(a.size))
    else:
        x.cpu.set_xmm(index, x.read(addr, a.size))  # MOVD/MOVQ loads zero the rest of the register


def _string(x: _Exec) -> Outcome:
    """MOVS/STOS/LODS, one element per iteration; with REP, RCX (ECX/CX under the address size)
    counts down and registers are updated after each element, as an interruptible REP does."""
    a = x.a
    asz = a.mem.addr_size
    names = {8: ("rcx", "rsi", "rdi"), 4: ("ecx", "esi", "edi"), 2: ("cx", "si", "di")}[asz]
    step = -a.size if x.cpu.get("rflags") & DF else a.size
    count_left = x.get_reg(names[0]) if a.rep else 1
    done = 0
    while count_left:
        if done == REP_BUDGET:
            return x.outcome(x.rip)
        if a.op is Op.MOVS:
            assert a.src_mem is not None
            src = effective_address(a.src_mem, x.cpu.get, x.next_rip, x.mode)
            value = x.read(src, a.size)
            x.write(effective_address(a.mem, x.cpu.get, x.next_rip, x.mode), a.size, value)
            x.set_reg(names[1], x.get_reg(names[1]) + step)
            x.set_reg(names[2], x.get_reg(names[2]) + step)
        elif a.op is Op.STOS:
            x.write(effective_address(a.mem, x.cpu.get, x.next_rip, x.mode), a.size, x.get_reg(a.reg or ""))
            x.set_reg(names[2], x.get_reg(names[2]) + step)
        else:
            value = x.read(effective_address(a.mem, x.cpu.get, x.next_rip, x.mode), a.size)
            x.set_reg(a.reg or "", value)
            x.set_reg(names[1], x.get_reg(names[1]) + step)
        done += 1
        count_left -= 1
        if a.rep:
            x.set_reg(names[0], count_left)
    return x.outcome()


SEMANTICS: dict[Op, Callable[[_Exec], None]] = {
    Op.MOV: _mov,
    Op.MOVZX: _movzx,
    Op.MOVSX: _movsx,
    **{op: _binary for op in _BINARY},
    Op.INC: _unary, Op.DEC: _unary, Op.NOT: _unary, Op.NEG: _unary,
    Op.XCHG: _xchg,
    Op.XADD: _xadd,
    Op.CMPXCHG: _cmpxchg,
    Op.BT: _bitop, Op.BTS: _bitop, Op.BTR: _bitop, Op.BTC: _bitop,
    Op.SSE_LOAD: _sse, Op.SSE_STORE: _sse,
}


def execute(access: Access, cpu: Cpu, rip: int, mode: int) -> Outcome:
    """Carry out `access` (decoded at `rip`) on `cpu`; return the device accesses and next RIP.

    Registers, flags and RAM are updated on `cpu`; device accesses go through cpu.mmio_read/write
    in program order. Raises EmulationError (RIP and bytes) for faults the path cannot deliver.
    """
    x = _Exec(access, cpu, rip, mode)
    if access.op in (Op.MOVS, Op.STOS, Op.LODS):
        return _string(x)
    SEMANTICS[access.op](x)
    return x.outcome()
