"""What every instruction family shares: flag arithmetic and `Exec`, one instruction being carried out.

`Exec` owns the rules common to all instructions: register write widths (a 32-bit write
zero-extends, 8/16-bit writes merge), memory routing and the order of device accesses.

Memory routing (KVM's `emulator_read_write`, SEMANTICS rules 4 and 6):
- an access is first *planned*: split where it crosses between RAM and MMIO or between two MMIO
  regions (devices), each piece checked; a byte that is neither RAM nor MMIO raises
  `UnmappedAccess` with the first such address before any piece reaches a device or RAM, and a
  non-canonical address raises #GP the same way;
- then performed, each MMIO piece as device accesses of at most 8 bytes, low address first (KVM's
  `vcpu_mmio_read/write` and its user-space fragments use 8-byte chunks: a 16-byte SSE access is
  two 8-byte device accesses, a 32-byte AVX access four).
Instructions with more than one memory operand (MOVS, CMPS, PUSH m, CALL m, ...) `probe` every
operand before the first access, so a fault on the second leaves the first untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import SUBREGS, Access, MemOperand
from emu.cpu import Cpu, DeviceAccess, Outcome
from emu.decode import effective_address, read_subreg
from emu.errors import EmulationError, GuestFault, UnmappedAccess

CF, PF, AF, ZF, SF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x400, 0x800
STATUS = CF | PF | AF | ZF | SF | OF
DE, UD, SS, GP = 0, 6, 12, 13
M64 = (1 << 64) - 1


def canonical(addr: int) -> bool:
    """Bits 63..47 all equal (48-bit linear addresses)."""
    top = addr >> 47
    return top == 0 or top == (1 << 17) - 1


def mask(size: int) -> int:
    return (1 << (8 * size)) - 1


def signed(value: int, size: int) -> int:
    value &= mask(size)
    return value - (1 << (8 * size)) if value >> (8 * size - 1) else value


def parity(value: int) -> int:
    return PF if bin(value & 0xFF).count("1") % 2 == 0 else 0


def szp(result: int, size: int) -> int:
    bits = 8 * size
    return (ZF if result & mask(size) == 0 else 0) | (SF if result >> (bits - 1) & 1 else 0) | parity(result)


def add_flags(a: int, b: int, carry: int, size: int) -> tuple[int, int]:
    """(result, status flags) of a + b + carry at `size` bytes (ADD, ADC, INC, XADD)."""
    bits, m = 8 * size, mask(size)
    full = a + b + carry
    r = full & m
    f = szp(r, size) | (CF if full >> bits else 0) | ((a ^ b ^ r) & AF)
    f |= OF if ((a ^ r) & (b ^ r)) >> (bits - 1) & 1 else 0
    return r, f


def sub_flags(a: int, b: int, borrow: int, size: int) -> tuple[int, int]:
    """(result, status flags) of a - b - borrow at `size` bytes (SUB, SBB, CMP, DEC, NEG, CMPXCHG)."""
    bits, m = 8 * size, mask(size)
    r = (a - b - borrow) & m
    f = szp(r, size) | (CF if a < b + borrow else 0) | ((a ^ b ^ r) & AF)
    f |= OF if ((a ^ b) & (a ^ r)) >> (bits - 1) & 1 else 0
    return r, f


def logic_flags(r: int, size: int) -> int:
    """AND/OR/XOR/TEST: CF=OF=0, SF ZF PF from the result; AF (undefined) 0 as Unicorn does."""
    return szp(r, size)


def condition(cc: int, rflags: int) -> bool:
    """The x86 condition `cc` (0..15, the low nibble of Jcc/SETcc/CMOVcc) on `rflags`."""
    cf, zf, sf, of, pf = (bool(rflags & f) for f in (CF, ZF, SF, OF, PF))
    base = (of, cf, zf, cf or zf, sf, pf, sf != of, zf or sf != of)[cc >> 1]
    return base != bool(cc & 1)


# A stack operand: SS:[rsp] (flat; used only for its segment when checking writes).
STACK_OPERAND = MemOperand(base=None, index=None, scale=1, disp=0, segment="ss", addr_size=8)

Piece = tuple[int, int, object]  # (start, length, region: None = RAM, else the MMIO region's key)


class Exec:
    """State of one instruction being carried out: operands, registers, device accesses so far."""

    def __init__(self, access: Access, cpu: Cpu, rip: int, mode: int,
                 max_iterations: int | None = None) -> None:
        self.a = access
        self.cpu = cpu
        self.rip = rip
        self.mode = mode
        self.next_rip = (rip + access.length) & (M64 if mode == 64 else 0xFFFFFFFF)  # EIP wraps
        self.accesses: list[DeviceAccess] = []
        self.amask = (1 << mode) - 1
        self.max_iterations = max_iterations
        self.iterations = 1

    def fail(self, why: str) -> EmulationError:
        return EmulationError(f"{why} in '{self.a.mnemonic}'", self.rip, self.a.raw)

    def fault(self, vector: int, why: str) -> GuestFault:
        return GuestFault(vector, f"{why} in '{self.a.mnemonic}'", self.rip, self.a.raw)

    # registers -------------------------------------------------------------------------------
    def get_reg(self, name: str) -> int:
        return read_subreg(self.cpu.get, name)

    def set_reg(self, name: str, value: int) -> None:
        """Write a (sub-)register: 32-bit writes zero-extend, 8/16-bit writes keep the rest."""
        full, shift, size = SUBREGS[name]
        value &= mask(size)
        if size >= 4:
            self.cpu.set(full, value)
            return
        old = self.cpu.get(full)
        self.cpu.set(full, (old & ~(mask(size) << shift)) | (value << shift))

    def rflags(self) -> int:
        return self.cpu.get("rflags")

    def set_status(self, flags: int, keep: int = 0) -> None:
        """Replace the status flags except those in `keep` (INC/DEC keep CF, BT* keep all but CF)."""
        replace = STATUS & ~keep
        rf = self.cpu.get("rflags")
        self.cpu.set("rflags", (rf & ~replace) | (flags & replace))

    def cf(self) -> int:
        return self.cpu.get("rflags") & CF

    def accumulator(self, size: int) -> str:
        return {1: "al", 2: "ax", 4: "eax", 8: "rax"}[size]

    # vector registers -----------------------------------------------------------------------
    def get_vec(self, name: str) -> int:
        """xmmN (128 bits), ymmN (256 bits) or mmN (64 bits, MMX)."""
        if name.startswith("mm"):
            return self._optional("get_mm", "MMX")(int(name[2:]))
        index = int(name[3:])
        if name.startswith("ymm"):
            return self._ymm("get_ymm")(index)
        return self.cpu.get_xmm(index)

    def set_vec(self, name: str, value: int, vex: bool) -> None:
        """Write xmmN/ymmN. A VEX-encoded write zeroes the register above its width (to bit 255);
        a legacy SSE write to xmmN keeps bits 255:128 (SDM vol. 1 14.1.2). mmN: 64 bits."""
        if name.startswith("mm"):
            self._optional("set_mm", "MMX")(int(name[2:]), value & mask(8))
            return
        index = int(name[3:])
        if name.startswith("ymm") or vex:
            self._ymm("set_ymm")(index, value & mask(32))
        else:
            self.cpu.set_xmm(index, value & mask(16))

    def _ymm(self, method: str) -> Callable[..., int]:
        return self._optional(method, "YMM")

    def _optional(self, method: str, what: str) -> Callable[..., int]:
        fn = getattr(self.cpu, method, None)
        if fn is None:
            raise self.fail(f"this guest state has no {what} registers")
        return fn  # type: ignore[no-any-return]

    # memory ----------------------------------------------------------------------------------
    def ea(self, mem: MemOperand | None = None) -> int:
        """Linear address of `mem` (default: the instruction's memory operand), alignment checked."""
        mem = self.a.mem if mem is None else mem
        ea = effective_address(mem, self.cpu.get, self.next_rip, self.mode)
        align = self.a.align or (16 if self.a.align16 else 0)
        if mem is self.a.mem and align and ea % align:
            raise self.fault(GP, f"misaligned {align}-byte operand at {ea:#x}")
        return ea

    def plan(self, addr: int, size: int, write: bool) -> list[Piece]:
        """Split [addr, addr+size) into RAM and per-region MMIO pieces; fault before any access."""
        addr &= self.amask
        if self.mode == 64 and not (canonical(addr) and canonical((addr + size - 1) & self.amask)):
            # SDM vol. 3 6.15: a non-canonical linear address is #GP (#SS for stack references)
            raise self.fault(GP, f"non-canonical address {addr:#x}")
        region_of = getattr(self.cpu, "mmio_region", None)
        last = (addr + size - 1) & self.amask
        pieces: list[Piece] = []
        if last >= addr:  # common case first: the whole access in one region (regions are intervals)
            r0 = self._region(addr, region_of)
            if r0 is not None and self._region(last, region_of) == r0:
                return [(addr, size, r0)]
            if r0 is None and size <= 16 and not self.cpu.is_mmio(last):
                pieces = [(addr, size, None)]
        if not pieces:
            for i in range(size):
                a = (addr + i) & self.amask
                region = self._region(a, region_of)
                if pieces and pieces[-1][2] == region and pieces[-1][0] + pieces[-1][1] == a:
                    pieces[-1] = (pieces[-1][0], pieces[-1][1] + 1, region)
                else:
                    pieces.append((a, 1, region))
        for start, n, region in pieces:
            if region is None:
                got = len(self.cpu.read_mem(start, n))
                if got != n:
                    raise UnmappedAccess(start + got, write, self.rip, self.a.raw)
        return pieces

    def _region(self, a: int, region_of: Callable[[int], object] | None) -> object:
        """None for RAM (or nothing), else the MMIO region key ("mmio" if the Cpu names no regions)."""
        if not self.cpu.is_mmio(a):
            return None
        return region_of(a) if region_of is not None else "mmio"

    def probe(self, addr: int, size: int, write: bool) -> None:
        """Check an access that will happen later in this instruction (faults now, accesses nothing)."""
        self.plan(addr, size, write)

    def read(self, addr: int, size: int) -> int:
        value, shift = 0, 0
        for start, n, region in self.plan(addr, size, False):
            if region is None:
                value |= int.from_bytes(self.cpu.read_mem(start, n), "little") << shift
            else:
                for off in range(0, n, 8):
                    k = min(8, n - off)
                    got = self.cpu.mmio_read(start + off, k) & mask(k)
                    self.accesses.append(DeviceAccess(start + off, k, False, got))
                    value |= got << (shift + 8 * off)
            shift += 8 * n
        return value

    def write(self, addr: int, size: int, value: int) -> None:
        shift = 0
        for start, n, region in self.plan(addr, size, True):
            part = (value >> shift) & mask(n)
            if region is None:
                self.cpu.write_mem(start, part.to_bytes(n, "little"))
            else:
                for off in range(0, n, 8):
                    k = min(8, n - off)
                    chunk = (part >> (8 * off)) & mask(k)
                    self.cpu.mmio_write(start + off, k, chunk)
                    self.accesses.append(DeviceAccess(start + off, k, True, chunk))
            shift += 8 * n

    # the stack --------------------------------------------------------------------------------
    def stack_size(self) -> int:
        """Address size of the stack pointer: RSP in 64-bit mode, ESP in 32-bit flat mode."""
        return 8 if self.mode == 64 else 4

    def sp_name(self) -> str:
        return "rsp" if self.mode == 64 else "esp"

    def outcome(self, next_rip: int | None = None) -> Outcome:
        return Outcome(self.next_rip if next_rip is None else next_rip, tuple(self.accesses), self.iterations)
