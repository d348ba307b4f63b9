"""A `Cpu` rebuilt from one ExitRecord, so recorded exits can be handled again by any path.

Registers come from the record's snapshot (writes stay local to the replay), the only guest memory
is the instruction bytes the record carries at its RIP, and device accesses go to a board's bus, so
replaying a trace into a fresh board must leave the same device state as the live run did.
"""

from __future__ import annotations

from emu.bus import Bus, Space
from emu.errors import EmulationError
from emu.exits import REG_NAMES, ExitRecord


class ReplayCpu:
    def __init__(self, rec: ExitRecord, bus: Bus, windows: list[tuple[int, int]]) -> None:
        self.mode = rec.mode
        self.rec = rec
        self.regs = dict(zip(REG_NAMES, rec.regs, strict=True))
        self.bus = bus
        self.windows = windows

    def get(self, name: str) -> int:
        return self.regs[name]

    def set(self, name: str, value: int) -> None:
        self.regs[name] = value

    def get_xmm(self, index: int) -> int:
        raise EmulationError("a trace record carries no XMM registers", self.rec.rip, self.rec.insn)

    def set_xmm(self, index: int, value: int) -> None:
        raise EmulationError("a trace record carries no XMM registers", self.rec.rip, self.rec.insn)

    def read_mem(self, addr: int, size: int) -> bytes:
        off = addr - self.rec.rip
        if 0 <= off < len(self.rec.insn):
            return self.rec.insn[off : off + size]
        raise EmulationError(
            f"a trace record carries no guest memory at {addr:#x}", self.rec.rip, self.rec.insn
        )

    def write_mem(self, addr: int, data: bytes) -> None:
        raise EmulationError(
            f"a trace record carries no guest memory at {addr:#x}", self.rec.rip, self.rec.insn
        )

    def is_mmio(self, gpa: int) -> bool:
        return any(base <= gpa < base + size for base, size in self.windows)

    def mmio_read(self, gpa: int, size: int) -> int:
        return self.bus.read(Space.MMIO, gpa, size)

    def mmio_write(self, gpa: int, size: int, value: int) -> None:
        self.bus.write(Space.MMIO, gpa, size, value)
