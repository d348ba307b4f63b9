"""PCI configuration space behind ports 0xCF8/0xCFC, and the functions on the bus: a host bridge,
root ports (PCI-to-PCI bridges) and virtio-style devices whose capabilities say how to notify them.

Why: the seed's three notify options only matter if a driver can *discover* which one a device
supports. Here it does so as a real driver would: walk config space, read BARs, follow the
capability list (virtio 1.x `virtio_pci_cap` layout) and read one vendor capability that offers a
pv-notify window (option 2), an assigned 2-byte I/O port (option 3) and the hypercall MMIO write
(option 1). docs/pci.md has the layouts as tables.

Every notify mechanism lands in one `VirtioDevice`, which counts kicks per mechanism and queue, so a
test can check both *that* every queue was kicked and *how*.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from emu.errors import ExitlabError

# -- configuration mechanism #1 --------------------------------------------------------------------
CONFIG_ENABLE = 1 << 31
CONFIG_ADDRESS_MASK = 0x80FFFFFC  # bits 30:24 reserved, bits 1:0 always 0: read back as 0
CONFIG_SPACE_SIZE = 0x100

# -- header registers ---------------------------------------------------------------------------
VENDOR_ID, DEVICE_ID, COMMAND, STATUS = 0x00, 0x02, 0x04, 0x06
CLASS_REV, HEADER_TYPE = 0x08, 0x0E
BAR0, CAP_PTR = 0x10, 0x34
PRIMARY_BUS, SECONDARY_BUS, SUBORDINATE_BUS = 0x18, 0x19, 0x1A
IO_BASE, IO_LIMIT, MEM_BASE, MEM_LIMIT, PREF_BASE, PREF_LIMIT = 0x1C, 0x1D, 0x20, 0x22, 0x24, 0x26
CMD_IO, CMD_MEM, CMD_MASTER = 1, 2, 4
STATUS_CAP_LIST = 0x10
HEADER_MULTIFUNCTION = 0x80
BAR_IO = 1

# -- IDs ----------------------------------------------------------------------------------------
VENDOR_REDHAT_QEMU = 0x1B36
HOST_BRIDGE_ID = 0x0008  # QEMU's generic PCIe host bridge
ROOT_PORT_ID = 0x000C  # QEMU's pcie-root-port
VENDOR_VIRTIO = 0x1AF4
VIRTIO_MODERN_ID = 0x10F7  # 0x1040 + 0xB7: a virtio type number no spec assigns
VIRTIO_LEGACY_ID = 0x103F  # transitional range: a legacy-only device with just an I/O BAR
EXITLAB_VENDOR_ID = 0xE817  # the vendor capability's `vendor_id` ("exitlab"; not a PCI-SIG ID)

# -- capabilities -------------------------------------------------------------------------------
CAP_ID_PM = 0x01
CAP_ID_VNDR = 0x09
CAP_START = 0x40
VIRTIO_CAP_LEN = 16
VIRTIO_NOTIFY_CAP_LEN = 20
EXITLAB_CAP_LEN = 28
EXITLAB_CAP_VERSION = 1


class CfgType(enum.IntEnum):
    """`cfg_type` of a virtio_pci_cap (virtio 1.x, and 1.2 for VENDOR)."""

    COMMON = 1
    NOTIFY = 2
    ISR = 3
    DEVICE = 4
    PCI_CFG = 5
    VENDOR = 9


class Offer(enum.IntFlag):
    """Bits of the exitlab capability's `offers` byte: the seed's options 1-3."""

    HYPERCALL = 1  # option 1: HC_MMIO_WRITE to the hypercall window
    PV = 2  # option 2: `mov word ptr [rdx], ax` (66 89 02) in the pv window
    PORT = 4  # option 3: `out dx, ax` to an assigned 2-byte port


class Mechanism(enum.Enum):
    """How a kick reached a device, in the order a driver should prefer them."""

    PV = "pv"
    PORT = "port"
    HYPERCALL = "hypercall"
    MMIO = "mmio"
    IOBAR = "iobar"


PREFERENCE = tuple(Mechanism)

# -- the memory BAR (BAR 4, 4 KiB) of a modern device ------------------------------------------------
MEM_BAR_INDEX = 4
MEM_BAR_SIZE = 0x1000
COMMON_OFF, COMMON_LEN = 0x000, 0x38
ISR_OFF, ISR_LEN = 0x100, 0x4
DEVICE_OFF, DEVICE_LEN = 0x200, 0x10
NOTIFY_OFF, PV_OFF, HC_OFF = 0x400, 0x800, 0xC00  # one notify window per MMIO mechanism
WINDOW_LEN = 0x400
NOTIFY_OFF_MULTIPLIER = 4
MAX_QUEUES = 16

# virtio_pci_common_cfg offsets (the subset this device implements)
CC_NUM_QUEUES, CC_DEVICE_STATUS, CC_QUEUE_SELECT = 0x12, 0x14, 0x16
CC_QUEUE_SIZE, CC_QUEUE_ENABLE, CC_QUEUE_NOTIFY_OFF = 0x18, 0x1C, 0x1E
QUEUE_SIZE = 256

# -- the I/O BAR (BAR 0, 32 bytes) in the legacy virtio layout -------------------------------------------
IO_BAR_INDEX = 0
IO_BAR_SIZE = 0x20
LEGACY_QUEUE_NUM, LEGACY_QUEUE_SEL, LEGACY_QUEUE_NOTIFY = 0x0C, 0x0E, 0x10


class PciError(ExitlabError):
    """Bad input to the PCI model: a malformed capability list, an out-of-range queue, a bad offer."""


def _le(value: int, size: int) -> bytes:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


class ConfigSpace:
    """256 bytes with a per-bit write mask: a BAR's mask is `~(size-1)`, so writing all-ones and
    reading back yields the size (BAR sizing) with no special case; read-only bits never change."""

    def __init__(self) -> None:
        self.data = bytearray(CONFIG_SPACE_SIZE)
        self.mask = bytearray(CONFIG_SPACE_SIZE)

    def set(self, offset: int, size: int, value: int, writable: int = 0) -> None:
        self.data[offset : offset + size] = _le(value, size)
        self.mask[offset : offset + size] = _le(writable, size)

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        for i, byte in enumerate(_le(value, size)):
            m = self.mask[offset + i]
            self.data[offset + i] = (self.data[offset + i] & ~m & 0xFF) | (byte & m)


class Function:
    """One PCI function: its config space; subclasses decide what it decodes."""

    def __init__(self, name: str, bdf: tuple[int, int, int]) -> None:
        self.name = name
        self.bdf = bdf
        self.config = ConfigSpace()
        self.config.set(COMMAND, 2, 0, writable=CMD_IO | CMD_MEM | CMD_MASTER)

    @property
    def command(self) -> int:
        return self.config.read(COMMAND, 2)

    def bar(self, index: int) -> int:
        return self.config.read(BAR0 + 4 * index, 4)

    def state(self) -> dict[str, Any]:
        b, d, f = self.bdf
        return {"bdf": f"{b:02x}:{d:02x}.{f}", "command": self.command}


class HostBridge(Function):
    def __init__(self) -> None:
        super().__init__("pci-host-bridge", (0, 0, 0))
        self.config.set(VENDOR_ID, 2, VENDOR_REDHAT_QEMU)
        self.config.set(DEVICE_ID, 2, HOST_BRIDGE_ID)
        self.config.set(CLASS_REV, 4, 0x06000000)


class RootPort(Function):
    """A PCI-to-PCI bridge (type 1 header) that forwards I/O and memory only inside its windows and
    only while its command register enables them — what limits I/O BARs to 4 KiB-aligned windows."""

    def __init__(
        self,
        bdf: tuple[int, int, int],
        secondary: int,
        multifunction: bool,
        io_window: int | None,
        mem_window: int,
        mem_size: int,
    ) -> None:
        super().__init__(f"root-port-{bdf[0]:02x}:{bdf[1]:02x}.{bdf[2]}", bdf)
        c = self.config
        c.set(VENDOR_ID, 2, VENDOR_REDHAT_QEMU)
        c.set(DEVICE_ID, 2, ROOT_PORT_ID)
        c.set(CLASS_REV, 4, 0x06040000)
        c.set(HEADER_TYPE, 1, 0x01 | (HEADER_MULTIFUNCTION if multifunction else 0))
        c.set(COMMAND, 2, CMD_IO | CMD_MEM | CMD_MASTER, writable=CMD_IO | CMD_MEM | CMD_MASTER)
        c.set(PRIMARY_BUS, 1, bdf[0], writable=0xFF)
        c.set(SECONDARY_BUS, 1, secondary, writable=0xFF)
        c.set(SUBORDINATE_BUS, 1, secondary, writable=0xFF)
        if io_window is None:  # closed: base above limit
            c.set(IO_BASE, 1, 0xF0, writable=0xF0)
            c.set(IO_LIMIT, 1, 0x00, writable=0xF0)
        else:
            c.set(IO_BASE, 1, (io_window >> 8) & 0xF0, writable=0xF0)
            c.set(IO_LIMIT, 1, ((io_window + 0xFFF) >> 8) & 0xF0, writable=0xF0)
        c.set(MEM_BASE, 2, (mem_window >> 16) & 0xFFF0, writable=0xFFF0)
        c.set(MEM_LIMIT, 2, ((mem_window + mem_size - 1) >> 16) & 0xFFF0, writable=0xFFF0)
        c.set(PREF_BASE, 2, 0xFFF0)  # no prefetchable window
        c.set(PREF_LIMIT, 2, 0x0000)

    @property
    def secondary(self) -> int:
        return self.config.read(SECONDARY_BUS, 1)

    @property
    def subordinate(self) -> int:
        return self.config.read(SUBORDINATE_BUS, 1)

    def forwards_io(self, port: int, size: int) -> bool:
        base = (self.config.read(IO_BASE, 1) & 0xF0) << 8
        limit = ((self.config.read(IO_LIMIT, 1) & 0xF0) << 8) | 0xFFF
        return bool(self.command & CMD_IO) and base <= port and port + size - 1 <= limit

    def forwards_mem(self, addr: int, size: int) -> bool:
        base = (self.config.read(MEM_BASE, 2) & 0xFFF0) << 16
        limit = ((self.config.read(MEM_LIMIT, 2) & 0xFFF0) << 16) | 0xFFFFF
        return bool(self.command & CMD_MEM) and base <= addr and addr + size - 1 <= limit


@dataclass(frozen=True, slots=True)
class DeviceOffers:
    """What one device offers. MMIO = a virtio notify capability; IOBAR = wants an I/O BAR (it gets
    one only if a bridge window is free); the rest go into the exitlab vendor capability."""

    mechanisms: frozenset[Mechanism]
    queues: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.queues <= MAX_QUEUES:
            raise PciError(f"a device has 1..{MAX_QUEUES} queues (got {self.queues})")

    @property
    def modern(self) -> bool:
        """A memory BAR with virtio capabilities, unless the device is legacy-only (I/O BAR only)."""
        return bool(self.mechanisms - {Mechanism.IOBAR})

    @property
    def offer_bits(self) -> Offer:
        bits = Offer(0)
        for mech, bit in (
            (Mechanism.HYPERCALL, Offer.HYPERCALL),
            (Mechanism.PV, Offer.PV),
            (Mechanism.PORT, Offer.PORT),
        ):
            if mech in self.mechanisms:
                bits |= bit
        return bits


class VirtioDevice(Function):
    """A virtio-style device: common/notify/ISR/device capabilities over BAR 4, a legacy I/O BAR 0
    when it was given one, and the exitlab vendor capability. Counts kicks per mechanism and queue;
    a kick at an address or with a queue index no queue owns is counted in `bad_notify`, never
    raised, because a device must survive whatever a guest writes."""

    def __init__(
        self,
        bdf: tuple[int, int, int],
        index: int,
        offers: DeviceOffers,
        parent: RootPort,
        mem_base: int | None,
        io_base: int | None,
        assigned_port: int | None,
        hypercall_nr: int,
    ) -> None:
        super().__init__(f"virtio-{bdf[0]:02x}:{bdf[1]:02x}.{bdf[2]}", bdf)
        self.index = index
        self.offers = offers
        self.parent = parent
        self.queues = offers.queues
        self.mem_base = mem_base
        self.io_base = io_base
        self.assigned_port = assigned_port
        self.kicks: dict[Mechanism, Counter[int]] = {m: Counter() for m in Mechanism}
        self.bad_notify = 0
        self.bad_data = 0
        self.dropped = 0
        self.queue_select = 0
        self.common = bytearray(COMMON_LEN)
        self.device_status = 0
        c = self.config
        c.set(VENDOR_ID, 2, VENDOR_VIRTIO)
        c.set(DEVICE_ID, 2, VIRTIO_MODERN_ID if offers.modern else VIRTIO_LEGACY_ID)
        c.set(CLASS_REV, 4, 0x00FF0001)
        c.set(0x2C, 4, (index << 16) | VENDOR_VIRTIO)  # subsystem vendor, subsystem id = index
        if io_base is not None:
            c.set(BAR0 + 4 * IO_BAR_INDEX, 4, io_base | BAR_IO, writable=~(IO_BAR_SIZE - 1) & 0xFFFFFFFF)
        if mem_base is not None:
            c.set(BAR0 + 4 * MEM_BAR_INDEX, 4, mem_base, writable=~(MEM_BAR_SIZE - 1) & 0xFFFFFFFF)
        if offers.modern:
            self._build_caps(hypercall_nr)

    def _build_caps(self, hypercall_nr: int) -> None:
        c = self.config
        caps: list[bytes] = [bytes([CAP_ID_PM, 0, 0x03, 0x00, 0, 0, 0, 0])]  # a cap drivers skip

        def vcap(cfg: CfgType, off: int, length: int, extra: bytes = b"") -> bytes:
            return (
                bytes([CAP_ID_VNDR, 0, VIRTIO_CAP_LEN + len(extra), cfg, MEM_BAR_INDEX, 0, 0, 0])
                + _le(off, 4)
                + _le(length, 4)
                + extra
            )

        caps.append(vcap(CfgType.COMMON, COMMON_OFF, COMMON_LEN))
        if Mechanism.MMIO in self.offers.mechanisms:
            caps.append(vcap(CfgType.NOTIFY, NOTIFY_OFF, WINDOW_LEN, _le(NOTIFY_OFF_MULTIPLIER, 4)))
        caps.append(vcap(CfgType.ISR, ISR_OFF, ISR_LEN))
        caps.append(vcap(CfgType.DEVICE, DEVICE_OFF, DEVICE_LEN))
        bits = self.offers.offer_bits
        if bits:
            caps.append(exitlab_cap(bits, self.assigned_port or 0, hypercall_nr))
        at = CAP_START
        c.set(CAP_PTR, 1, at)
        c.set(STATUS, 2, STATUS_CAP_LIST)
        for i, cap in enumerate(caps):
            nxt = at + ((len(cap) + 3) & ~3) if i + 1 < len(caps) else 0
            c.data[at : at + len(cap)] = bytes([cap[0], nxt]) + cap[2:]
            at = nxt
        self.common[CC_NUM_QUEUES : CC_NUM_QUEUES + 2] = _le(self.queues, 2)

    # -- decoding -----------------------------------------------------------------------------
    def mem_decodes(self, addr: int, size: int) -> bool:
        return (
            self.mem_base is not None
            and bool(self.command & CMD_MEM)
            and self.bar(MEM_BAR_INDEX) == self.mem_base
            and self.parent.forwards_mem(addr, size)
        )

    def io_decodes(self, port: int, size: int) -> bool:
        return (
            self.io_base is not None
            and bool(self.command & CMD_IO)
            and self.bar(IO_BAR_INDEX) == self.io_base | BAR_IO
            and self.parent.forwards_io(port, size)
        )

    @staticmethod
    def notify_off(queue: int, queues: int) -> int:
        """queue_notify_off: reversed order, so a driver that assumes `off == queue` is caught."""
        return queues - 1 - queue

    def notify_address(self, mechanism: Mechanism, queue: int) -> int:
        """Where to kick `queue` with an MMIO mechanism: window base + queue_notify_off x multiplier."""
        if not 0 <= queue < self.queues:
            raise PciError(f"{self.name}: queue {queue} is out of range (the device has {self.queues})")
        window = {Mechanism.MMIO: NOTIFY_OFF, Mechanism.PV: PV_OFF, Mechanism.HYPERCALL: HC_OFF}.get(
            mechanism
        )
        if window is None or self.mem_base is None or mechanism not in self.offers.mechanisms:
            raise PciError(
                f"{self.name}: {mechanism.value} is not an MMIO notify mechanism this device offers"
            )
        return notify_address(
            self.mem_base + window, self.notify_off(queue, self.queues), NOTIFY_OFF_MULTIPLIER, WINDOW_LEN
        )

    def _kick(self, mechanism: Mechanism, queue: int, value: int) -> None:
        if not 0 <= queue < self.queues:
            self.bad_notify += 1
            return
        if value != queue:
            self.bad_data += 1
        self.kicks[mechanism][queue] += 1

    def mem_read(self, offset: int, size: int) -> int:
        if COMMON_OFF <= offset < COMMON_OFF + COMMON_LEN:
            self._refresh_queue_regs()
            return int.from_bytes(self.common[offset : offset + size].ljust(size, b"\0"), "little")
        if DEVICE_OFF <= offset < DEVICE_OFF + DEVICE_LEN:
            return int.from_bytes((_le(self.index, 4) + bytes(12))[offset - DEVICE_OFF :][:size], "little")
        return 0

    def _refresh_queue_regs(self) -> None:
        q = self.queue_select
        ok = q < self.queues
        self.common[CC_QUEUE_SIZE : CC_QUEUE_SIZE + 2] = _le(QUEUE_SIZE if ok else 0, 2)
        self.common[CC_QUEUE_NOTIFY_OFF : CC_QUEUE_NOTIFY_OFF + 2] = _le(
            self.notify_off(q, self.queues) if ok else 0, 2
        )
        self.common[CC_DEVICE_STATUS] = self.device_status

    def mem_write(self, offset: int, size: int, value: int) -> None:
        for window, mech in (
            (NOTIFY_OFF, Mechanism.MMIO),
            (PV_OFF, Mechanism.PV),
            (HC_OFF, Mechanism.HYPERCALL),
        ):
            if window <= offset < window + WINDOW_LEN:
                rel = offset - window
                if mech not in self.offers.mechanisms or rel % NOTIFY_OFF_MULTIPLIER:
                    self.bad_notify += 1
                    return
                self._kick(mech, self.queues - 1 - rel // NOTIFY_OFF_MULTIPLIER, value)
                return
        if offset == CC_QUEUE_SELECT and size == 2:
            self.queue_select = value
        elif offset == CC_DEVICE_STATUS and size == 1:
            self.device_status = value

    def io_read(self, offset: int, size: int) -> int:
        if offset == LEGACY_QUEUE_NUM and size == 2:
            return QUEUE_SIZE if self.queue_select < self.queues else 0
        if offset == LEGACY_QUEUE_SEL and size == 2:
            return self.queue_select
        return 0

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == LEGACY_QUEUE_SEL and size == 2:
            self.queue_select = value
        elif offset == LEGACY_QUEUE_NOTIFY and size == 2:
            self._kick(Mechanism.IOBAR, value, value)

    def port_write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 2:
            self._kick(Mechanism.PORT, value, value)
        else:
            self.bad_notify += 1

    def expected_mechanism(self) -> Mechanism | None:
        """The mechanism a driver following `PREFERENCE` picks from what the device exposes."""
        exposed = set(self.offers.mechanisms)
        if self.io_base is None:
            exposed.discard(Mechanism.IOBAR)
        return next((m for m in PREFERENCE if m in exposed), None)

    def state(self) -> dict[str, Any]:
        out = Function.state(self)
        out.update(
            {
                "offers": sorted(m.value for m in self.offers.mechanisms),
                "queues": self.queues,
                "kicks": {
                    m.value: {str(q): n for q, n in sorted(c.items())} for m, c in self.kicks.items() if c
                },
                "bad_notify": self.bad_notify,
                "bad_data": self.bad_data,
                "dropped": self.dropped,
            }
        )
        if self.mem_base is not None:
            out["mem_bar"] = self.mem_base
        if self.io_base is not None:
            out["io_bar"] = self.io_base
        if self.assigned_port is not None:
            out["assigned_port"] = self.assigned_port
        return out


def notify_address(base: int, queue_notify_off: int, multiplier: int, length: int) -> int:
    """virtio's rule, bounds-checked: the 2-byte notify must lie inside the window."""
    if queue_notify_off < 0 or multiplier < 0:
        raise PciError(f"queue_notify_off {queue_notify_off} and multiplier {multiplier} must be >= 0")
    off = queue_notify_off * multiplier
    if off + 2 > length:
        raise PciError(
            f"queue_notify_off {queue_notify_off} x notify_off_multiplier {multiplier} = {off:#x} is "
            f"outside the {length:#x}-byte notify window"
        )
    return base + off


def exitlab_cap(offers: Offer, assigned_port: int, hypercall_nr: int) -> bytes:
    """The exitlab vendor capability (28 bytes; `cap_next` filled in when it is linked)."""
    return (
        bytes([CAP_ID_VNDR, 0, EXITLAB_CAP_LEN, CfgType.VENDOR])
        + _le(EXITLAB_VENDOR_ID, 2)
        + bytes([EXITLAB_CAP_VERSION, int(offers)])
        + _le(assigned_port, 2)
        + _le(hypercall_nr, 2)
        + bytes([MEM_BAR_INDEX, MEM_BAR_INDEX])
        + _le(PV_OFF, 2)
        + _le(HC_OFF, 2)
        + _le(WINDOW_LEN, 2)
        + bytes(4)
        + _le(NOTIFY_OFF_MULTIPLIER, 4)
    )


# -- bus-facing adapters: one device, several ranges ----------------------------------------------------
class BusRegion:
    """Maps one range of a device onto the bus; the device's name and state, so `Board.state()`
    lists the device once."""

    def __init__(self, device: VirtioDevice, kind: str, base: int) -> None:
        self.device = device
        self.kind = kind
        self.base = base
        self.name = device.name

    def read(self, offset: int, size: int) -> int:
        d = self.device
        if self.kind == "mem":
            if not d.mem_decodes(self.base + offset, size):
                d.dropped += 1
                return (1 << (8 * size)) - 1
            return d.mem_read(offset, size)
        if self.kind == "io":
            if not d.io_decodes(self.base + offset, size):
                d.dropped += 1
                return (1 << (8 * size)) - 1
            return d.io_read(offset, size)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        d = self.device
        if self.kind == "mem":
            if d.mem_decodes(self.base + offset, size):
                d.mem_write(offset, size, value)
            else:
                d.dropped += 1
        elif self.kind == "io":
            if d.io_decodes(self.base + offset, size):
                d.io_write(offset, size, value)
            else:
                d.dropped += 1
        else:
            d.port_write(offset, size, value)

    def state(self) -> dict[str, Any]:
        return self.device.state()


class PciHost:
    """Configuration mechanism #1 at 0xCF8-0xCFF, as QEMU and the PCI spec behave:
    - CONFIG_ADDRESS (0xCF8) is latched only by an aligned 32-bit access; bits 30:24 and 1:0 read 0;
      byte/word accesses to 0xCF8-0xCFB are not forwarded (reads float high, writes are dropped);
    - CONFIG_DATA: each byte of 0xCFC-0xCFF is one byte lane of the dword CONFIG_ADDRESS selects, so
      `in al, 0xCFE` reads register+2 and a dword read at 0xCFD returns lanes 1-3 plus one floating
      byte (the byte at 0xD00 is outside the data port);
    - with the enable bit clear, or for an absent function, reads are all-ones and writes vanish.
    """

    name = "pci-host"

    def __init__(self, functions: Iterable[Function] = ()) -> None:
        self.address = 0
        self.functions: dict[tuple[int, int, int], Function] = {}
        self.config_reads = 0
        self.config_writes = 0
        self.ignored = 0
        for f in functions:
            self.add(f)

    def add(self, f: Function) -> None:
        if f.bdf in self.functions:
            raise PciError(f"two functions at {f.bdf[0]:02x}:{f.bdf[1]:02x}.{f.bdf[2]}")
        self.functions[f.bdf] = f

    def _target(self) -> tuple[Function | None, int]:
        if not self.address & CONFIG_ENABLE:
            return None, 0
        bdf = ((self.address >> 16) & 0xFF, (self.address >> 11) & 0x1F, (self.address >> 8) & 0x7)
        if bdf[0] and not any(
            isinstance(f, RootPort) and f.secondary <= bdf[0] <= f.subordinate
            for f in self.functions.values()
            if f.bdf[0] == 0
        ):
            return None, 0  # no bridge forwards a type 1 cycle to that bus
        return self.functions.get(bdf), self.address & 0xFC

    def _lanes(self, offset: int, size: int) -> tuple[int, int]:
        """The CONFIG_DATA lanes [lo, hi) an access at port 0xCF8+offset covers."""
        lo, hi = max(offset, 4), min(offset + size, 8)
        return lo - 4, max(hi - 4, lo - 4)

    def read(self, offset: int, size: int) -> int:
        if offset == 0 and size == 4:
            return self.address
        lo, hi = self._lanes(offset, size)
        out = bytearray(b"\xff" * size)
        if hi > lo:
            f, reg = self._target()
            self.config_reads += 1
            if f is not None:
                data = _le(f.config.read(reg + lo, hi - lo), hi - lo)
                start = lo + 4 - offset
                out[start : start + len(data)] = data
        else:
            self.ignored += 1
        return int.from_bytes(out, "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 4:
            self.address = value & CONFIG_ADDRESS_MASK
            return
        lo, hi = self._lanes(offset, size)
        if hi <= lo:
            self.ignored += 1
            return
        self.config_writes += 1
        f, reg = self._target()
        if f is not None:
            shift = 8 * (lo + 4 - offset)
            f.config.write(reg + lo, hi - lo, (value >> shift) & ((1 << (8 * (hi - lo))) - 1))

    def devices(self) -> list[VirtioDevice]:
        return sorted(
            (f for f in self.functions.values() if isinstance(f, VirtioDevice)), key=lambda d: d.index
        )

    def state(self) -> dict[str, Any]:
        return {
            "functions": len(self.functions),
            "config_reads": self.config_reads,
            "config_writes": self.config_writes,
            "ignored": self.ignored,
        }


# -- a driver's view: parse a function's capability list --------------------------------------------------
@dataclass(frozen=True, slots=True)
class Capability:
    """One entry of the list: `cfg_type` is None for non-vendor capabilities."""

    offset: int
    cap_id: int
    cfg_type: int | None
    raw: bytes

    @property
    def known(self) -> bool:
        return self.cap_id == CAP_ID_PM or (
            self.cap_id == CAP_ID_VNDR and self.cfg_type in {int(c) for c in CfgType}
        )


@dataclass(frozen=True, slots=True)
class VirtioCap:
    cfg_type: CfgType
    bar: int
    offset: int
    length: int
    notify_off_multiplier: int | None = None


@dataclass(frozen=True, slots=True)
class ExitlabCap:
    offers: Offer
    assigned_port: int
    hypercall_nr: int
    pv_bar: int
    hc_bar: int
    pv_offset: int
    hc_offset: int
    window_len: int
    notify_off_multiplier: int


def read_config(read32: Any, bdf: tuple[int, int, int]) -> bytes:
    """Snapshot a function's 256 bytes through a dword reader (e.g. `PciHost` via ports)."""
    return b"".join(_le(read32(bdf, reg), 4) for reg in range(0, CONFIG_SPACE_SIZE, 4))


def capabilities(config: bytes) -> list[Capability]:
    """Walk the capability list the way a driver must: pointers dword-aligned, inside the device-
    specific area, no loops. Unknown capabilities are returned (and skipped by drivers), not errors."""
    if len(config) < CONFIG_SPACE_SIZE:
        raise PciError(f"config space snapshot is {len(config)} bytes, not {CONFIG_SPACE_SIZE}")
    if not int.from_bytes(config[STATUS : STATUS + 2], "little") & STATUS_CAP_LIST:
        return []
    out: list[Capability] = []
    seen: set[int] = set()
    ptr = config[CAP_PTR]
    while ptr:
        if ptr & 3 or ptr < CAP_START or ptr > CONFIG_SPACE_SIZE - 4:
            raise PciError(f"capability pointer {ptr:#x} is not a dword in 0x40-0xfc")
        if ptr in seen:
            raise PciError(f"capability list loops back to {ptr:#x}")
        seen.add(ptr)
        cap_id = config[ptr]
        cfg_type = None
        raw = bytes(config[ptr : ptr + 4])
        if cap_id == CAP_ID_VNDR:
            length = config[ptr + 2]
            if length < 4 or ptr + length > CONFIG_SPACE_SIZE:
                raise PciError(f"vendor capability at {ptr:#x} has bad cap_len {length}")
            raw = bytes(config[ptr : ptr + length])
            cfg_type = config[ptr + 3]
        out.append(Capability(ptr, cap_id, cfg_type, raw))
        ptr = config[ptr + 1]
    return out


def parse_virtio_cap(cap: Capability) -> VirtioCap | ExitlabCap:
    """Decode a known vendor capability; an unknown `cfg_type` or vendor is a `PciError` so callers
    that mean to skip unknown capabilities check `Capability.known` first."""
    if cap.cap_id != CAP_ID_VNDR or cap.cfg_type is None:
        raise PciError(f"capability at {cap.offset:#x} (id {cap.cap_id:#x}) is not a vendor capability")
    try:
        cfg = CfgType(cap.cfg_type)
    except ValueError:
        raise PciError(f"capability at {cap.offset:#x}: unknown virtio cfg_type {cap.cfg_type}") from None
    r = cap.raw
    if cfg is CfgType.VENDOR:
        if len(r) < EXITLAB_CAP_LEN:
            raise PciError(f"vendor capability at {cap.offset:#x} is {len(r)} bytes, need {EXITLAB_CAP_LEN}")
        vendor = int.from_bytes(r[4:6], "little")
        if vendor != EXITLAB_VENDOR_ID or r[6] != EXITLAB_CAP_VERSION:
            raise PciError(f"capability at {cap.offset:#x}: unknown vendor data {vendor:#06x} version {r[6]}")
        u16 = [int.from_bytes(r[i : i + 2], "little") for i in (8, 10, 14, 16, 18)]
        mult = int.from_bytes(r[24:28], "little")
        return ExitlabCap(Offer(r[7]), u16[0], u16[1], r[12], r[13], u16[2], u16[3], u16[4], mult)
    if len(r) < VIRTIO_CAP_LEN or (cfg is CfgType.NOTIFY and len(r) < VIRTIO_NOTIFY_CAP_LEN):
        raise PciError(f"virtio capability at {cap.offset:#x} is too short ({len(r)} bytes)")
    notify_mult = int.from_bytes(r[16:20], "little") if cfg is CfgType.NOTIFY else None
    return VirtioCap(
        cfg, r[4], int.from_bytes(r[8:12], "little"), int.from_bytes(r[12:16], "little"), notify_mult
    )
