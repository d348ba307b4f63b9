"""A board: the bus with its devices wired at the platform's addresses.

`default_board()` is the platform every snippet sees (see emu/platform.py and the README table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emu.bus import Bus, Space
from emu.devices import ConsoleDevice, NotifyDevice, RegisterDevice
from emu.platform import (
    CONSOLE_PORT,
    CONSOLE_PORT_SIZE,
    NOTIFY_MMIO,
    NOTIFY_MMIO_SIZE,
    NOTIFY_PORT,
    NOTIFY_PORT_SIZE,
    REGS_MMIO,
    REGS_MMIO_SIZE,
    PlatformSpec,
)


@dataclass
class Board:
    spec: PlatformSpec
    bus: Bus
    notify: NotifyDevice
    regs: RegisterDevice
    console: ConsoleDevice
    pv_windows: list[tuple[int, int]] = field(default_factory=list)
    pci: Any = None  # an emu.pci.PciHost on boards built by emu.pciboard.pci_board, else None

    def state(self) -> dict[str, Any]:
        return {name: dev.state() for name, dev in self.bus.devices().items()}


def default_board(console_echo: Callable[[str], None] | None = None) -> Board:
    bus = Bus()
    notify = NotifyDevice()
    regs = RegisterDevice()
    console = ConsoleDevice(echo=console_echo)
    bus.add(Space.MMIO, NOTIFY_MMIO, NOTIFY_MMIO_SIZE, notify)
    bus.add(Space.PIO, NOTIFY_PORT, NOTIFY_PORT_SIZE, notify)
    bus.add(Space.MMIO, REGS_MMIO, REGS_MMIO_SIZE, regs)
    bus.add(Space.PIO, CONSOLE_PORT, CONSOLE_PORT_SIZE, console)
    return Board(PlatformSpec(), bus, notify, regs, console, pv_windows=[(NOTIFY_MMIO, NOTIFY_MMIO_SIZE)])
