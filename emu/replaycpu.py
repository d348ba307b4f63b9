"""A `Cpu` rebuilt from one ExitRecord, so recorded exits can be handled again by any path.

Registers come from the record's snapshot (writes stay local to the replay), the only guest memory
is the instruction bytes the record carries at its RIP, the vector registers are the ones it
carries (SSE/AVX/MMX moves, SMSW), and device accesses (MMIO and port I/O) go to a board's bus, so
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
        self.vec = dict(rec.vec)
        self.bus = bus
        self.windows = windows

    def get(self, name: str) -> int:
        return self.regs[name]

    def set(self, name: str, value: int) -> None:
        self.regs[name] = value

    # Vector registers and CR0: the ones the record carries (ExitRecord.vec, emu/vecstate.py);
    # any other is an EmulationError, so a record without them declines before any access.
    def _vec(self, name: str, alt: str | None = None) -> int:
        if name in self.vec:
            return self.vec[name]
        if alt is not None and alt in self.vec:
            return self.vec[alt] & ((1 << 128) - 1)
        raise EmulationError(f"a trace record carries no {name} register", self.rec.rip, self.rec.insn)

    def get_xmm(self, index: int) -> int:
        return self._vec(f"xmm{index}", f"ymm{index}")

    def set_xmm(self, index: int, value: int) -> None:
        """A legacy-SSE write (bits 255:128 of a recorded YMM kept)."""
        if f"ymm{index}" in self.vec:
            old = self.vec[f"ymm{index}"]
            self.vec[f"ymm{index}"] = (old & ~((1 << 128) - 1)) | (value & ((1 << 128) - 1))
        else:
            self._vec(f"xmm{index}")
            self.vec[f"xmm{index}"] = value & ((1 << 128) - 1)

    def get_ymm(self, index: int) -> int:
        return self._vec(f"ymm{index}")

    def set_ymm(self, index: int, value: int) -> None:
        self._vec(f"ymm{index}")
        self.vec[f"ymm{index}"] = value & ((1 << 256) - 1)

    def get_mm(self, index: int) -> int:
        return self._vec(f"mm{index}")

    def set_mm(self, index: int, value: int) -> None:
        self._vec(f"mm{index}")
        self.vec[f"mm{index}"] = value & ((1 << 64) - 1)

    def get_cr0(self) -> int:
        return self._vec("cr0")

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

    def mmio_region(self, gpa: int) -> tuple[int, int] | None:
        """The device range holding `gpa`, else its window (an access crossing a device's end is
        split there, rule 4), as on the live engine."""
        m = self.bus.find(Space.MMIO, gpa)
        if m is not None:
            return m.base, m.size
        return next(((b, s) for b, s in self.windows if b <= gpa < b + s), None)

    def mmio_claims(self, gpa: int) -> bool:
        return self.bus.claims(Space.MMIO, gpa)

    def pio_read(self, port: int, size: int) -> int:
        return self.bus.read(Space.PIO, port, size)

    def pio_write(self, port: int, size: int, value: int) -> None:
        self.bus.write(Space.PIO, port, size, value)
