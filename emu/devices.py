"""Devices of the default platform: notify, register file, console.

Each device sees offsets relative to its range and full-width accesses; the bus masks values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NOTIFY_OFF_MULTIPLIER = 4  # queue q's own notify address is base + 4*q (virtio notify_off_multiplier)


@dataclass(frozen=True, slots=True)
class IoEventFd:
    """An ioeventfd-style registration: `size == 0` is a wildcard (any width, data ignored);
    `datamatch` set means only writes of exactly that value count."""

    offset: int
    size: int = 0
    datamatch: int | None = None
    queue: int | None = None

    def matches(self, offset: int, size: int, value: int | None) -> bool:
        if offset != self.offset:
            return False
        if self.size == 0:
            return True
        if size != self.size or value is None:
            return False
        return self.datamatch is None or self.datamatch == value


class NotifyDevice:
    """Counts kicks per queue. A data-carrying write's value is the queue index (virtio's
    VIRTIO_PCI_QUEUE_NOTIFY); an address-only notification (the wildcard path) finds its queue from
    the wildcard registration at that address, like a zero-length ioeventfd."""

    def __init__(self, name: str = "notify", queues: int = 16) -> None:
        self.name = name
        self.queues = queues
        self.kicks: Counter[int] = Counter()
        self.writes = 0
        self.reads = 0
        self.eventfds: list[IoEventFd] = []
        self.eventfd_counts: list[int] = []
        self._by_offset: dict[int, list[int]] = {}  # offset -> indices into eventfds
        self.unmatched = 0
        for q in range(queues):
            self.register(IoEventFd(offset=q * NOTIFY_OFF_MULTIPLIER, size=0, queue=q))

    def register(self, efd: IoEventFd) -> int:
        self.eventfds.append(efd)
        self.eventfd_counts.append(0)
        index = len(self.eventfds) - 1
        self._by_offset.setdefault(efd.offset, []).append(index)
        return index

    def _signal(self, offset: int, size: int, value: int | None) -> None:
        for i in self._by_offset.get(offset, ()):
            if self.eventfds[i].matches(offset, size, value):
                self.eventfd_counts[i] += 1

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes += 1
        self.kicks[value] += 1
        self._signal(offset, size, value)

    def notify(self, offset: int) -> None:
        """An address-only kick (no data): the wildcard path."""
        self.writes += 1
        queue = next(
            (self.eventfds[i].queue for i in self._by_offset.get(offset, ()) if self.eventfds[i].size == 0),
            None,
        )
        if queue is None:
            self.unmatched += 1
        else:
            self.kicks[queue] += 1
        self._signal(offset, 0, None)

    def read(self, offset: int, size: int) -> int:
        self.reads += 1
        return 0

    def state(self) -> dict[str, Any]:
        return {
            "kicks": {str(q): n for q, n in sorted(self.kicks.items())},
            "writes": self.writes,
            "reads": self.reads,
            "unmatched": self.unmatched,
            "eventfds": [
                {"offset": e.offset, "size": e.size, "datamatch": e.datamatch, "queue": e.queue, "count": c}
                for e, c in zip(self.eventfds, self.eventfd_counts, strict=False)
                if c
            ],
        }


REGS_ID = 0x74697865  # "exit" little-endian: a value a guest can check it read the right device
REGS_VERSION = 1


class RegisterDevice:
    """A little-endian byte-addressed register file, so reads of every width are testable."""

    def __init__(self, name: str = "regs", size: int = 0x1000) -> None:
        self.name = name
        self.mem = bytearray(size)
        self.mem[0:4] = REGS_ID.to_bytes(4, "little")
        self.mem[4:8] = REGS_VERSION.to_bytes(4, "little")
        self.reads = 0
        self.writes = 0

    def read(self, offset: int, size: int) -> int:
        self.reads += 1
        return int.from_bytes(self.mem[offset : offset + size].ljust(size, b"\xff"), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes += 1
        end = min(offset + size, len(self.mem))
        self.mem[offset:end] = value.to_bytes(size, "little")[: end - offset]

    def state(self) -> dict[str, Any]:
        nonzero = {f"{i:#x}": self.mem[i] for i in range(8, len(self.mem)) if self.mem[i]}
        return {"reads": self.reads, "writes": self.writes, "nonzero_bytes": nonzero}


class ConsoleDevice:
    """A 16550-style transmit-only UART: THR at +0 prints, LSR at +5 always says 'ready'."""

    LSR = 5
    LSR_READY = 0x60  # THR empty | transmitter empty

    def __init__(self, name: str = "console", echo: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.out = bytearray()
        self.echo = echo

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            data = value.to_bytes(size, "little")
            self.out += data
            if self.echo is not None:
                self.echo(data.decode("latin-1"))

    def read(self, offset: int, size: int) -> int:
        return self.LSR_READY if offset == self.LSR else 0

    @property
    def text(self) -> str:
        return self.out.decode("latin-1")

    def state(self) -> dict[str, Any]:
        return {"bytes": len(self.out)}
