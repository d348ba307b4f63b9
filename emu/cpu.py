"""The one small interface between a decode path and the guest (OpenVMM's `Cpu` trait, in Python).

A path (generic, fast, ...) sees the guest only through `Cpu`, so the same code runs over a live
Unicorn engine, a replayed trace or a batch case. Register names are those of `exits.REG_NAMES`
(full 64-bit registers; sub-registers are the path's business). Guest memory is addressed
linearly; on the default platform linear == physical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    """One access as a device sees it: what every path must agree on."""

    gpa: int
    size: int
    write: bool
    value: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling one exit did: the device accesses in order and where the guest resumes."""

    next_rip: int
    accesses: tuple[DeviceAccess, ...]


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
