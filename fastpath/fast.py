"""The pv fast path (option 2 of DESIGN.md): handle a notify exit without decoding anything.

The guest promised (contract v1) that every access to a pv-notify window is `66 89 02`, a 2-byte
write of AX to the exit's address. So the host only has to *check* that promise, never decode:
compare 3 bytes at RIP, take AX, write it to the GPA the exit reported, resume at RIP + 3.

`fast_path` is that check and nothing more; it reads exactly `cpu.read_mem(rip, 3)` and
`cpu.get("rax")`. If anything differs it returns None ("not mine") and the caller uses the generic
path, which is what makes a wrong guest slow but never wrong. `PvFastPath` is that check on the pv
windows only; `FastPath` is the machine-facing chain [pv-fast, generic] (emu/chain.py). This file
is the reference the C fast path must agree with, so it stays short and literal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from emu.chain import Chain
from emu.cpu import Cpu, DeviceAccess, Outcome
from emu.exits import ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.platform import NOTIFY_MMIO, NOTIFY_MMIO_SIZE
from fastpath.contract import CONTRACT_V1

ENCODING: bytes = CONTRACT_V1.encoding            # 66 89 02
LENGTH: int = CONTRACT_V1.length                  # 3
SIZE: int = CONTRACT_V1.size                      # 2
MODES: frozenset[int] = CONTRACT_V1.modes         # {32, 64}
DATA_MASK: int = (1 << (8 * SIZE)) - 1            # AX is the low 16 bits of RAX
DEFAULT_PV_WINDOWS: tuple[tuple[int, int], ...] = ((NOTIFY_MMIO, NOTIFY_MMIO_SIZE),)


def fast_path(exit: ExitRecord, cpu: Cpu) -> Outcome | None:
    """Handle a contract-v1 notify, or return None ("not mine"; use the generic path).

    Accepts only an MMIO *write* exit in 32- or 64-bit code whose 3 bytes at RIP are exactly the
    agreed encoding. In 16-bit code the same bytes are `mov dword ptr [bp+si], eax`, so the mode
    check is not optional. The GPA comes from the exit (hardware reported it), so the address
    register is never read; the data is AX by agreement, so no operand is decoded. The bytes
    after RIP + 3 cannot change the meaning: the instruction ends at ModRM 02 (no SIB, no disp).
    """
    if exit.kind is not ExitKind.MMIO_WRITE or exit.mode not in MODES:
        return None
    if cpu.read_mem(exit.rip, LENGTH) != ENCODING:
        return None
    value = cpu.get("rax") & DATA_MASK
    cpu.mmio_write(exit.addr, SIZE, value)
    next_rip = (exit.rip + LENGTH) & ((1 << 64) - 1 if exit.mode == 64 else 0xFFFFFFFF)  # EIP wraps
    return Outcome(next_rip, (DeviceAccess(exit.addr, SIZE, True, value),))


class Fallback(Protocol):
    """What FastPath falls back to: the generic path, or a stand-in in tests."""

    name: str

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None: ...


class PvFastPath:
    """The fast path alone ("pv-fast"), only inside the pv windows: an Outcome, or None."""

    name = "pv-fast"

    def __init__(self, windows: Iterable[tuple[int, int]] | None = None) -> None:
        self.windows: tuple[tuple[int, int], ...] = (
            DEFAULT_PV_WINDOWS if windows is None else tuple((int(b), int(s)) for b, s in windows)
        )

    def in_window(self, gpa: int, size: int = 1) -> bool:
        """True when [gpa, gpa + size) lies inside one pv window."""
        return any(base <= gpa and gpa + size <= base + length for base, length in self.windows)

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None:
        if not self.in_window(exit.addr, SIZE):
            return None
        return fast_path(exit, cpu)


class FastPath(Chain):
    """Exit-style MMIO path: the chain [pv-fast, generic] (emu/chain.py).

    Only the pv windows are fast-pathed: elsewhere nothing was agreed, so bytes that happen to be
    `66 89 02` in front of a register device must be decoded like any other instruction. The
    2-byte access must lie wholly inside one window (a straddling write is no notify the host
    agreed to). `fast_hits` and `fallbacks` count what happened, for reports and tests.
    """

    name = "fast"

    def __init__(
        self, windows: Iterable[tuple[int, int]] | None = None, fallback: Fallback | None = None
    ) -> None:
        self.pv = PvFastPath(windows)
        super().__init__("fast", (self.pv, fallback if fallback is not None else GenericPath()))

    @property
    def windows(self) -> tuple[tuple[int, int], ...]:
        return self.pv.windows

    @property
    def fallback(self) -> Fallback:
        """The path after pv-fast: the generic path unless a test gave another."""
        return self.paths[1]

    def in_window(self, gpa: int, size: int = 1) -> bool:
        return self.pv.in_window(gpa, size)

    def try_fast(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None:
        """The fast path where it is allowed (inside a pv window), else None; never falls back."""
        return self.pv.handle(exit, cpu)

    @property
    def fast_hits(self) -> int:
        return self.taken[0]

    @fast_hits.setter
    def fast_hits(self, n: int) -> None:
        self.taken[0] = n

    @property
    def fallbacks(self) -> int:
        return self.taken[1]

    @fallbacks.setter
    def fallbacks(self, n: int) -> None:
        self.taken[1] = n
