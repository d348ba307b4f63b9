"""The I/O bus: guest-physical and port ranges dispatched to devices.

Two address spaces (MMIO and port I/O), each a sorted list of non-overlapping ranges. Overlaps are
rejected when a device is added, so a lookup is one bisect and never ambiguous.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from typing import Any, Protocol

from emu.errors import BusError


class Space(enum.Enum):
    MMIO = "mmio"
    PIO = "pio"


class Device(Protocol):
    """What the bus needs of a device: offset-relative reads and writes, and a JSON-able state."""

    name: str

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...

    def state(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Mapping:
    space: Space
    base: int
    size: int
    device: Device

    @property
    def end(self) -> int:
        return self.base + self.size


class Bus:
    """Routes accesses to devices; an access nobody claims reads all-ones, as on a real PCI bus."""

    def __init__(self) -> None:
        self._maps: dict[Space, list[Mapping]] = {Space.MMIO: [], Space.PIO: []}
        self._starts: dict[Space, list[int]] = {Space.MMIO: [], Space.PIO: []}
        self.unclaimed: dict[str, int] = {"mmio_read": 0, "mmio_write": 0, "pio_in": 0, "pio_out": 0}

    def add(self, space: Space, base: int, size: int, device: Device) -> Mapping:
        if size <= 0:
            raise BusError(f"{device.name}: {space.value} range at {base:#x} has size {size}")
        limit = 1 << 16 if space is Space.PIO else 1 << 64
        if base < 0 or base + size > limit:
            raise BusError(f"{device.name}: {space.value} range {base:#x}+{size:#x} is outside the space")
        new = Mapping(space, base, size, device)
        for m in self._maps[space]:
            if m.base < new.end and new.base < m.end:
                raise BusError(
                    f"{space.value} range {base:#x}-{new.end - 1:#x} of {device.name} overlaps "
                    f"{m.base:#x}-{m.end - 1:#x} of {m.device.name}"
                )
        i = bisect.bisect(self._starts[space], base)
        self._maps[space].insert(i, new)
        self._starts[space].insert(i, base)
        return new

    def mappings(self, space: Space) -> list[Mapping]:
        return list(self._maps[space])

    def find(self, space: Space, addr: int) -> Mapping | None:
        i = bisect.bisect(self._starts[space], addr) - 1
        if i >= 0:
            m = self._maps[space][i]
            if addr < m.end:
                return m
        return None

    def claims(self, space: Space, addr: int) -> bool:
        return self.find(space, addr) is not None

    def read(self, space: Space, addr: int, size: int) -> int:
        m = self.find(space, addr)
        if m is None:
            self.unclaimed["mmio_read" if space is Space.MMIO else "pio_in"] += 1
            return (1 << (8 * size)) - 1
        return m.device.read(addr - m.base, size) & ((1 << (8 * size)) - 1)

    def write(self, space: Space, addr: int, size: int, value: int) -> None:
        m = self.find(space, addr)
        if m is None:
            self.unclaimed["mmio_write" if space is Space.MMIO else "pio_out"] += 1
            return
        m.device.write(addr - m.base, size, value & ((1 << (8 * size)) - 1))

    def notify(self, addr: int) -> None:
        """An address-only MMIO notification (no data), like a zero-length ioeventfd: the device
        learns which of its addresses was hit. Devices without a `notify` method see nothing."""
        m = self.find(Space.MMIO, addr)
        handler = getattr(m.device, "notify", None) if m is not None else None
        if handler is None:
            self.unclaimed["mmio_write"] += 1
            return
        assert m is not None
        handler(addr - m.base)

    def devices(self) -> dict[str, Device]:
        out: dict[str, Device] = {}
        for space in Space:
            for m in self._maps[space]:
                out.setdefault(m.device.name, m.device)
        return out
