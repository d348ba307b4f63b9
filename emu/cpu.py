"""The one small interface between a path and the guest (OpenVMM's `Cpu` trait, in Python).

A path (generic, fast, pio, hypercall, ...) sees the guest only through `Cpu`, so the same code
runs over a live Unicorn engine, a replayed trace or a batch case. Register names are those of
`exits.REG_NAMES` (full 64-bit registers; sub-registers are the path's business). Guest memory is
addressed linearly; on the default platform linear == physical. Devices are reached only through
`mmio_read`/`mmio_write` and `pio_read`/`pio_write`, never through a Bus the path holds itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    """One access as a device sees it: what every path must agree on. `gpa` is the port number
    when `pio` is set (port I/O space), else a guest-physical MMIO address."""

    gpa: int
    size: int
    write: bool
    value: int
    pio: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling one exit did: the device accesses in order and where the guest resumes.

    `iterations` is how many iterations a REP string instruction performed (0 when its count was
    already 0; 1 for every other instruction). The instruction budget (SEMANTICS rule 1) is charged
    max(1, iterations); `next_rip` equal to the instruction's own RIP means an interrupted REP.
    """

    next_rip: int
    accesses: tuple[DeviceAccess, ...]
    iterations: int = 1


# Construction through the slot descriptors. The __init__ a frozen dataclass gets calls
# `object.__setattr__` per field, which made an Outcome and its DeviceAccess cost ~2 us on every
# exit; these set the same slots directly (same signature, defaults, and immutability afterwards).
_SET_GPA, _SET_SIZE, _SET_WRITE, _SET_VALUE, _SET_PIO = (
    DeviceAccess.__dict__[n].__set__ for n in ("gpa", "size", "write", "value", "pio")
)
_SET_NEXT, _SET_ACCESSES, _SET_ITERATIONS = (
    Outcome.__dict__[n].__set__ for n in ("next_rip", "accesses", "iterations")
)


def _device_access_init(
    self: DeviceAccess, gpa: int, size: int, write: bool, value: int, pio: bool = False
) -> None:
    _SET_GPA(self, gpa)
    _SET_SIZE(self, size)
    _SET_WRITE(self, write)
    _SET_VALUE(self, value)
    _SET_PIO(self, pio)


def _outcome_init(
    self: Outcome, next_rip: int, accesses: tuple[DeviceAccess, ...], iterations: int = 1
) -> None:
    _SET_NEXT(self, next_rip)
    _SET_ACCESSES(self, accesses)
    _SET_ITERATIONS(self, iterations)


DeviceAccess.__init__ = _device_access_init  # type: ignore[method-assign]
Outcome.__init__ = _outcome_init  # type: ignore[method-assign]


class Cpu(Protocol):
    mode: int

    def get(self, name: str) -> int: ...

    def set(self, name: str, value: int) -> None: ...

    def get_xmm(self, index: int) -> int: ...

    def set_xmm(self, index: int, value: int) -> None: ...

    def read_mem(self, addr: int, size: int) -> bytes: ...

    def write_mem(self, addr: int, data: bytes) -> None: ...

    def is_mmio(self, gpa: int) -> bool: ...

    def mmio_read(self, gpa: int, size: int) -> int: ...

    def mmio_write(self, gpa: int, size: int, value: int) -> None: ...

    def pio_read(self, port: int, size: int) -> int: ...

    def pio_write(self, port: int, size: int, value: int) -> None: ...


# Optional members a `Cpu` may have (found with getattr, so older implementations stay valid):
#   mmio_region(gpa) -> (base, size) | None: the device region holding an MMIO address; an access
#       crossing two regions becomes one device access per region (SEMANTICS rule 4). Without it,
#       all MMIO counts as one region.
#   mmio_claims(gpa) -> bool: a device claims this MMIO address (not merely inside a window). The
#       hypercall path answers -KVM_EFAULT where no device does. Without it, `mmio_region(gpa)`
#       (or `is_mmio`) decides.
#   get_ymm(index) -> int / set_ymm(index, value): the 256-bit YMM registers (AVX forms). Without
#       them, VEX forms stop with an EmulationError naming the missing state.
