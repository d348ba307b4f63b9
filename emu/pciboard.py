"""A board with a PCI bus: the default platform plus N hot-pluggable virtio-style devices, each
behind its own root port, as firmware would leave them (bridges programmed, BARs assigned,
device command registers cleared for the driver to enable).

Why a separate builder: `default_board()` stays exactly as every other guest expects; the PCI bus
only appears when asked for (`exitlab run --devices N`).

Topology for device i (0-based): root port at 00:(1 + i//8).(i%8) with secondary bus i+1, the device
at (i+1):00.0; its 1 MiB bridge memory window at PCI_MMIO_BASE + i MiB holds BAR 4 (4 KiB); an I/O
window and BAR 0 only while `emu.ioplan.io_windows(PLATFORM_RESERVED)` has one left (13 on this
platform); its assigned notify port is ASSIGNED_PORT_BASE + 2*i.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.board import Board, default_board
from emu.bus import Space
from emu.ioplan import PLATFORM_RESERVED, io_windows
from emu.pci import (
    IO_BAR_SIZE,
    MAX_QUEUES,
    MEM_BAR_SIZE,
    PV_OFF,
    WINDOW_LEN,
    BusRegion,
    DeviceOffers,
    HostBridge,
    Mechanism,
    PciError,
    PciHost,
    RootPort,
    VirtioDevice,
)
from emu.platform import (
    ASSIGNED_PORT_BASE,
    ASSIGNED_PORT_SIZE,
    HC_MMIO_WRITE,
    PCI_CONFIG_ADDRESS,
    PCI_MMIO_BASE,
    PCI_MMIO_WINDOW,
)

M = Mechanism
MAX_PCI_DEVICES = 31 * 8  # root ports fill bus 0 slots 1-31, eight functions each
ROTATION: tuple[frozenset[Mechanism], ...] = (
    frozenset({M.PV, M.PORT, M.HYPERCALL, M.MMIO}),  # picks pv
    frozenset({M.PORT, M.HYPERCALL, M.MMIO}),  # picks port
    frozenset({M.HYPERCALL, M.MMIO}),  # picks hypercall
    frozenset({M.MMIO}),  # plain virtio: no exitlab capability at all
    frozenset({M.IOBAR}),  # legacy-only: no capabilities, just an I/O BAR (if a window is left)
)
POLICIES: dict[str, Callable[[int], frozenset[Mechanism]]] = {
    "rotate": lambda i: ROTATION[i % len(ROTATION)],
    "all": lambda i: frozenset(Mechanism),
    "ports": lambda i: frozenset({M.PORT, M.IOBAR}),
    "iobar": lambda i: frozenset({M.IOBAR}),
    "mmio": lambda i: frozenset({M.MMIO}),
}
"""Offer policies: `rotate` exercises all five mechanisms in one run; `iobar` shows the window
limit (devices past the 13th get nothing); `ports` shows option 3 serving them all."""


def device_offers(policy: str, i: int) -> DeviceOffers:
    """Device i's offers under `policy`; queues rotate 1..4 so per-queue counts differ."""
    if policy not in POLICIES:
        raise PciError(f"unknown offer policy {policy!r} (choose from {', '.join(POLICIES)})")
    return DeviceOffers(POLICIES[policy](i), queues=1 + i % 4)


def pci_board(
    devices: int = 5,
    offers: str | Callable[[int], DeviceOffers] = "rotate",
    console_echo: Callable[[str], None] | None = None,
) -> Board:
    """The default board plus a host bridge, `devices` root ports and one device behind each."""
    if not 0 <= devices <= MAX_PCI_DEVICES:
        raise PciError(
            f"--devices must be between 0 and {MAX_PCI_DEVICES} (got {devices}): "
            "root ports fill bus 0, 31 slots x 8 functions"
        )
    pick = (lambda i: device_offers(offers, i)) if isinstance(offers, str) else offers
    board = default_board(console_echo=console_echo)
    host = PciHost([HostBridge()])
    board.bus.add(Space.PIO, PCI_CONFIG_ADDRESS, 8, host)
    free_io = io_windows(PLATFORM_RESERVED)
    for i in range(devices):
        off = pick(i)
        if off.queues > MAX_QUEUES:
            raise PciError(f"device {i}: {off.queues} queues (at most {MAX_QUEUES})")
        slot, fn = 1 + i // 8, i % 8
        io_window = free_io.pop(0) if Mechanism.IOBAR in off.mechanisms and free_io else None
        mem_window = PCI_MMIO_BASE + i * PCI_MMIO_WINDOW
        port = RootPort(
            (0, slot, fn),
            secondary=i + 1,
            multifunction=fn == 0 and devices > i + 1,
            io_window=io_window,
            mem_window=mem_window,
            mem_size=PCI_MMIO_WINDOW,
        )
        assigned = ASSIGNED_PORT_BASE + 2 * i if Mechanism.PORT in off.mechanisms else None
        if assigned is not None and assigned + 2 > ASSIGNED_PORT_BASE + ASSIGNED_PORT_SIZE:
            raise PciError(f"device {i}: the assigned-port range is exhausted")
        dev = VirtioDevice(
            (i + 1, 0, 0),
            i,
            off,
            port,
            mem_base=mem_window if off.modern else None,
            io_base=io_window,
            assigned_port=assigned,
            hypercall_nr=HC_MMIO_WRITE,
        )
        host.add(port)
        host.add(dev)
        if dev.mem_base is not None:
            board.bus.add(Space.MMIO, dev.mem_base, MEM_BAR_SIZE, BusRegion(dev, "mem", dev.mem_base))
            if Mechanism.PV in off.mechanisms:
                board.pv_windows.append((dev.mem_base + PV_OFF, WINDOW_LEN))
        if io_window is not None:
            board.bus.add(Space.PIO, io_window, IO_BAR_SIZE, BusRegion(dev, "io", io_window))
        if assigned is not None:
            board.bus.add(Space.PIO, assigned, 2, BusRegion(dev, "port", assigned))
    board.pci = host
    return board
