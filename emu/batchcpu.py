"""BatchCpu: a `Cpu` made of a dict and bytearrays, for `emulate --batch`, replay and tests.

It models the smallest machine an MMIO exit needs: a register file, sparse RAM over a few regions,
and one MMIO window whose device answers every read with a fixed value (truncated to the access
size) and records every access; port I/O is answered and recorded the same way. Nothing here
runs guest code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emu.cpu import DeviceAccess
from emu.errors import EmulationError
from emu.exits import REG_NAMES
from emu.platform import PAGE, RAM_BASE, RAM_SIZE

_M64 = (1 << 64) - 1


def default_ram_regions(rip: int, mmio: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The RAM a batch case has: the platform RAM plus the pages holding the instruction, minus the
    MMIO window. Shared with emu/oracle.py so both sides see the same memory map."""
    pages = set(range(RAM_BASE // PAGE, (RAM_BASE + RAM_SIZE) // PAGE))
    pages |= set(range(rip // PAGE, (rip + 15) // PAGE + 1))
    base, size = mmio
    pages -= set(range(base // PAGE, (base + size + PAGE - 1) // PAGE))
    regions: list[tuple[int, int]] = []
    for p in sorted(pages):
        if regions and regions[-1][0] + regions[-1][1] == p * PAGE:
            regions[-1] = (regions[-1][0], regions[-1][1] + PAGE)
        else:
            regions.append((p * PAGE, PAGE))
    return tuple(regions)


class BatchCpu:
    """A `Cpu` over plain data. `accesses` lists the device accesses in order."""

    def __init__(
        self,
        mode: int,
        regs: Mapping[str, int] | None = None,
        mmio: tuple[int, int] = (0, 0),
        read_value: int = 0,
        ram: Iterable[tuple[int, int]] = (),
        xmm: Mapping[int, int] | None = None,
        ymm: Mapping[int, int] | None = None,
        regions: Iterable[tuple[int, int]] = (),
        cr0: int | None = None,
    ) -> None:
        self.mode = mode
        self.regs: dict[str, int] = {name: 0 for name in REG_NAMES}
        for name, value in (regs or {}).items():
            if name not in self.regs:
                raise ValueError(f"unknown register {name!r} (known: {', '.join(REG_NAMES)})")
            self.regs[name] = value & _M64
        # 256-bit vector registers; xmmN is the low half of ymmN
        self.ymm: dict[int, int] = {i: 0 for i in range(16)}
        for i, v in (ymm or {}).items():
            self.ymm[i] = v & ((1 << 256) - 1)
        for i, v in (xmm or {}).items():
            self.set_xmm(i, v)
        self.mm: dict[int, int] = {i: 0 for i in range(8)}  # MMX registers (x87 mantissas)
        self.cr0 = cr0  # None: the case has no CR0 (SMSW declines)
        self.mmio = mmio
        # devices inside the window: an access crossing two is split per device (SEMANTICS rule 4)
        self.regions = tuple(regions)
        self.read_value = read_value
        self.ram_regions = tuple(ram)
        self.pages: dict[int, bytearray] = {}
        self.accesses: list[DeviceAccess] = []

    def get(self, name: str) -> int:
        return self.regs[name]

    def set(self, name: str, value: int) -> None:
        if name not in self.regs:
            raise KeyError(name)
        self.regs[name] = value & _M64

    @property
    def xmm(self) -> dict[int, int]:
        """The low 128 bits of each YMM register (read-only view)."""
        return {i: v & ((1 << 128) - 1) for i, v in self.ymm.items()}

    def get_xmm(self, index: int) -> int:
        return self.ymm[index] & ((1 << 128) - 1)

    def set_xmm(self, index: int, value: int) -> None:
        """A legacy-SSE write: bits 255:128 are kept."""
        self.ymm[index] = (self.ymm[index] & ~((1 << 128) - 1)) | (value & ((1 << 128) - 1))

    def get_cr0(self) -> int:
        if self.cr0 is None:
            raise EmulationError("this case gives no CR0 (needed by SMSW)")
        return self.cr0

    def get_mm(self, index: int) -> int:
        return self.mm[index]

    def set_mm(self, index: int, value: int) -> None:
        self.mm[index] = value & _M64

    def get_ymm(self, index: int) -> int:
        return self.ymm[index]

    def set_ymm(self, index: int, value: int) -> None:
        self.ymm[index] = value & ((1 << 256) - 1)

    def _is_ram(self, addr: int) -> bool:
        return any(b <= addr < b + s for b, s in self.ram_regions)

    def read_mem(self, addr: int, size: int) -> bytes:
        """Bytes from RAM, stopping early at the first byte that is not RAM."""
        out = bytearray()
        for a in range(addr, addr + size):
            if not self._is_ram(a):
                break
            page = self.pages.get(a // PAGE)
            out.append(page[a % PAGE] if page is not None else 0)
        return bytes(out)

    def write_mem(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            a = addr + i
            if not self._is_ram(a):
                raise EmulationError(f"write to unmapped memory at {a:#x}")
            self.pages.setdefault(a // PAGE, bytearray(PAGE))[a % PAGE] = b

    def is_mmio(self, gpa: int) -> bool:
        base, size = self.mmio
        return base <= gpa < base + size

    def mmio_region(self, gpa: int) -> tuple[int, int] | None:
        """The device region holding `gpa`: one of `regions`, else the whole window."""
        for base, size in self.regions:
            if base <= gpa < base + size:
                return base, size
        return self.mmio if self.is_mmio(gpa) else None

    def mmio_read(self, gpa: int, size: int) -> int:
        value = self.read_value & ((1 << (8 * size)) - 1)
        self.accesses.append(DeviceAccess(gpa, size, False, value))
        return value

    def mmio_write(self, gpa: int, size: int, value: int) -> None:
        self.accesses.append(DeviceAccess(gpa, size, True, value))

    def mmio_claims(self, gpa: int) -> bool:
        """The one window's device claims all of it."""
        return self.is_mmio(gpa)

    # Port I/O: every port answers reads with the same fixed value; accesses are recorded in order
    def pio_read(self, port: int, size: int) -> int:
        value = self.read_value & ((1 << (8 * size)) - 1)
        self.accesses.append(DeviceAccess(port, size, False, value, pio=True))
        return value

    def pio_write(self, port: int, size: int, value: int) -> None:
        self.accesses.append(DeviceAccess(port, size, True, value & ((1 << (8 * size)) - 1), pio=True))
