"""The I/O-space planner behind `exitlab ioplan`: why I/O BARs stop at 15 hot-pluggable devices and
assigned 2-byte ports reach ~2000.

Model: every hot-pluggable device sits alone behind a root port or switch downstream port, i.e. a
PCI-to-PCI bridge. A bridge forwards I/O only through its I/O window, which has 4 KiB granularity
and alignment, so each device with an I/O BAR costs a whole 4 KiB of the 64 KiB x86 I/O space, of
which 0-0xFFF is legacy (ISA, PIC, PIT, 0xCF8 ...) and reserved. Option 3 instead reserves one
4 KiB range at the platform level and hands out 2 bytes per device. MMIO notify windows are
counted in a stated 32-bit hole, where bridge memory windows are 1 MiB-granular.

The same `io_windows` allocation is what `emu.pciboard` uses to decide which devices get an I/O
BAR, so the planner and the emulated platform cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from emu.errors import ExitlabError
from emu.platform import ASSIGNED_PORT_BASE, ASSIGNED_PORT_SIZE, NOTIFY_PORT, NOTIFY_PORT_SIZE

IO_SPACE = 0x10000  # x86 port space: 64 KiB
LEGACY_END = 0x1000  # 0-0xFFF: legacy devices, never handed to a bridge window
IO_WINDOW = 0x1000  # PCI-to-PCI bridge I/O window granularity and alignment
PORT_BYTES = 2  # an assigned notify port: `out dx, ax`
MMIO_HOLE_BASE = 0xC0000000  # assumption: the 32-bit PCI hole is 0xC0000000 ...
MMIO_HOLE_END = 0xFEC00000  # ... up to the IOAPIC at 0xFEC00000 (exclusive)
BRIDGE_MEM_GRANULE = 0x100000  # bridge memory windows: 1 MiB granularity
NOTIFY_PAGE = 0x1000  # a separately trappable notify window is one page
MAX_DEVICES = 1 << 20


class IoPlanError(ExitlabError):
    """A planner input is out of range."""


def _overlaps(base: int, size: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(b < base + size and base < b + s for b, s in ranges)


def io_windows(reserved: Sequence[tuple[int, int]] = ()) -> list[int]:
    """Bases of the 4 KiB bridge I/O windows above the legacy range that avoid every `reserved`
    (base, size) range — the windows a firmware could give hot-pluggable ports."""
    return [b for b in range(LEGACY_END, IO_SPACE, IO_WINDOW) if not _overlaps(b, IO_WINDOW, reserved)]


ASSIGNED_RANGE = (ASSIGNED_PORT_BASE, ASSIGNED_PORT_SIZE)
PLATFORM_RESERVED = (ASSIGNED_RANGE, (NOTIFY_PORT, NOTIFY_PORT_SIZE))
"""What exitlab's PCI board keeps out of bridge windows: the assigned-port range and the legacy
notify device's port at NOTIFY_PORT (its 4 KiB-aligned page can no longer be a bridge window)."""


@dataclass(frozen=True, slots=True)
class Fit:
    """How many of the requested devices a mechanism serves; devices are numbered from 0, so the
    ones that do not fit are `fit .. devices-1`."""

    limit: int
    fit: int
    short: int


@dataclass(frozen=True, slots=True)
class IoPlan:
    devices: int
    queues: int
    notify_off_multiplier: int
    io_space: int
    legacy_end: int
    io_window: int
    io_windows: int
    assigned_base: int
    assigned_size: int
    port_bytes: int
    assigned_ports: int
    io_windows_beside_assigned: int
    platform_io_windows: int
    mmio_hole_base: int
    mmio_hole_end: int
    notify_page: int
    notify_pages: int
    notify_bytes: int
    notify_packed: int
    bridge_mem_granule: int
    bridge_mem_windows: int
    io_bar: Fit
    assigned: Fit
    mmio: Fit

    @property
    def mmio_hole_size(self) -> int:
        return self.mmio_hole_end - self.mmio_hole_base

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["mmio_hole_size"] = self.mmio_hole_size
        return out


def _fit(limit: int, devices: int) -> Fit:
    fit = min(limit, devices)
    return Fit(limit=limit, fit=fit, short=devices - fit)


def plan(devices: int = 64, queues: int = 4, notify_off_multiplier: int = 4) -> IoPlan:
    """Compute every limit for `devices` hot-pluggable devices with `queues` queues each."""
    if not 0 <= devices <= MAX_DEVICES:
        raise IoPlanError(f"--devices must be between 0 and {MAX_DEVICES} (got {devices})")
    if not 1 <= queues <= 0x10000:
        raise IoPlanError(f"--queues must be between 1 and 65536 (got {queues})")
    if notify_off_multiplier < 2 or notify_off_multiplier & (notify_off_multiplier - 1):
        raise IoPlanError(
            f"--multiplier must be a power of two of at least 2, the size of a 16-bit notify "
            f"write (got {notify_off_multiplier})"
        )
    windows = len(io_windows())
    hole = MMIO_HOLE_END - MMIO_HOLE_BASE
    notify_bytes = notify_off_multiplier * queues
    notify_pages = hole // NOTIFY_PAGE
    bridge_windows = hole // BRIDGE_MEM_GRANULE
    return IoPlan(
        devices=devices,
        queues=queues,
        notify_off_multiplier=notify_off_multiplier,
        io_space=IO_SPACE,
        legacy_end=LEGACY_END,
        io_window=IO_WINDOW,
        io_windows=windows,
        assigned_base=ASSIGNED_PORT_BASE,
        assigned_size=ASSIGNED_PORT_SIZE,
        port_bytes=PORT_BYTES,
        assigned_ports=ASSIGNED_PORT_SIZE // PORT_BYTES,
        io_windows_beside_assigned=len(io_windows([ASSIGNED_RANGE])),
        platform_io_windows=len(io_windows(PLATFORM_RESERVED)),
        mmio_hole_base=MMIO_HOLE_BASE,
        mmio_hole_end=MMIO_HOLE_END,
        notify_page=NOTIFY_PAGE,
        notify_pages=notify_pages,
        notify_bytes=notify_bytes,
        notify_packed=hole // notify_bytes,
        bridge_mem_granule=BRIDGE_MEM_GRANULE,
        bridge_mem_windows=bridge_windows,
        io_bar=_fit(windows, devices),
        assigned=_fit(ASSIGNED_PORT_SIZE // PORT_BYTES, devices),
        mmio=_fit(min(notify_pages, bridge_windows), devices),
    )


def _range(f: Fit, devices: int) -> str:
    if f.short == 0:
        return "all fit"
    return f"devices {f.fit}..{devices - 1} ({f.short}) do not fit"


def format_text(p: IoPlan) -> str:
    """Each limit with its formula and numbers, so the reader can check the arithmetic."""
    hole = p.mmio_hole_size
    lines = [
        f"I/O space: {p.io_space:#x} bytes; legacy {0:#06x}-{p.legacy_end - 1:#06x} reserved; bridge I/O "
        f"windows are {p.io_window:#x}-aligned and -granular",
        f"  I/O BAR windows  = ({p.io_space:#x} - {p.legacy_end:#x}) / {p.io_window:#x} = {p.io_windows}"
        f"   -> at most {p.io_windows} hot-pluggable devices with an I/O BAR",
        f"  assigned ports   = {p.assigned_size:#x} / {p.port_bytes} = {p.assigned_ports}"
        f"   (range {p.assigned_base:#x}-{p.assigned_base + p.assigned_size - 1:#x}: ~2000 devices)",
        f"  the reserved range costs one window: {p.io_windows} - 1 = {p.io_windows_beside_assigned} "
        f"windows left; exitlab's PCI board also loses the page of NOTIFY_PORT: {p.platform_io_windows}",
        f"MMIO notify (assumed 32-bit hole {p.mmio_hole_base:#x}-{p.mmio_hole_end - 1:#x} = "
        f"{hole:#x} bytes):",
        f"  page windows     = {hole:#x} / {p.notify_page:#x} = {p.notify_pages}",
        f"  packed windows   = {hole:#x} / ({p.notify_off_multiplier} x {p.queues} queues = "
        f"{p.notify_bytes:#x}) = {p.notify_packed}",
        f"  bridge windows   = {hole:#x} / {p.bridge_mem_granule:#x} = {p.bridge_mem_windows}"
        f"   -> at most {p.mmio.limit} hot-pluggable devices behind their own ports",
        f"for {p.devices} devices:",
        f"  I/O BARs:        {p.io_bar.fit} get one; {_range(p.io_bar, p.devices)}",
        f"  assigned ports:  {p.assigned.fit} get one; {_range(p.assigned, p.devices)}",
        f"  MMIO notify:     {p.mmio.fit} get a window; {_range(p.mmio, p.devices)}",
    ]
    return "\n".join(lines)
