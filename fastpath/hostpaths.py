"""Python host paths besides the decode paths: wildcard, trap-only and the --path chains. (Port
I/O and hypercalls are paths in emu/iopaths.py; a trace is replayed by emu/replay.py.)

- `WildcardPath`: an address-only notification (upstream KVM's zero-length ioeventfd). The host
  needs no data, only the next RIP, so it learns the instruction's *length* and nothing else.
  It is the chain [wildcard, generic] (emu/chain.py); `CHAINS` lists every --path name's chain.
- `TrapPath`: the cost of the exit alone. It assumes the agreed 3-byte instruction and touches no
  device; it exists only so benchmarks can split an exit's cost into trap and tax.
"""

from __future__ import annotations

from typing import Any

import capstone

from emu.board import default_board
from emu.bus import Bus
from emu.chain import Chain
from emu.cpu import Cpu, DeviceAccess, Outcome
from emu.errors import ExitlabError
from emu.exits import MAX_INSN_LEN, ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.platform import NOTIFY_MMIO, NOTIFY_MMIO_SIZE
from fastpath.fast import PvFastPath

_CS = {
    64: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64),
    32: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32),
    16: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16),
}


def insn_length(code: bytes, mode: int) -> int:
    """Length of the first instruction of `code` (Capstone, detail off), or 0 if it is invalid."""
    for insn in _CS[mode].disasm_lite(code, 0, 1):
        return int(insn[1])
    return 0


class WildcardNotify:
    """The address-only notify alone ("wildcard"): an Outcome for a write inside a notify (pv)
    window whose bytes have a valid length, else None."""

    name = "wildcard"

    def __init__(self, bus: Bus, windows: list[tuple[int, int]] | None = None) -> None:
        self.bus = bus
        self.windows = list(windows) if windows is not None else [(NOTIFY_MMIO, NOTIFY_MMIO_SIZE)]

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None:
        if exit.kind is ExitKind.MMIO_WRITE and any(b <= exit.addr < b + s for b, s in self.windows):
            length = insn_length(cpu.read_mem(exit.rip, MAX_INSN_LEN), exit.mode)
            if length:
                self.bus.notify(exit.addr)
                next_rip = (exit.rip + length) & ((1 << 64) - 1 if exit.mode == 64 else 0xFFFFFFFF)
                return Outcome(next_rip, (DeviceAccess(exit.addr, 0, True, 0),))
        return None


class WildcardPath(Chain):
    """Exit-style MMIO path for address-only notifications: the chain [wildcard, generic].

    Like a zero-length ioeventfd, it claims only writes inside a notify (pv) window; a read, a
    write elsewhere, or bytes with no valid length fall back to the generic path, as KVM falls
    back to its emulator when no ioeventfd matches."""

    name = "wildcard"

    def __init__(self, bus: Bus, windows: list[tuple[int, int]] | None = None) -> None:
        self.notify = WildcardNotify(bus, windows)
        super().__init__("wildcard", (self.notify, GenericPath()))

    @property
    def bus(self) -> Bus:
        return self.notify.bus

    @property
    def windows(self) -> list[tuple[int, int]]:
        return self.notify.windows

    @property
    def fallback(self) -> Any:
        return self.paths[1]

    @property
    def hits(self) -> int:
        return self.taken[0]

    @property
    def fallbacks(self) -> int:
        return self.taken[1]


class TrapPath:
    """Count-only: resumes after the agreed 3-byte instruction without any device access."""

    name = "trap"

    def __init__(self) -> None:
        self.count = 0

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome:
        self.count += 1
        return Outcome(exit.rip + 3, ())


# The C engine's names for the Python paths, so one CLI name works on both engines.
_PY_ALIASES = {"pv-fast": "fast", "capstone": "generic"}
# What each exit-style `--path` name is on the Python engine: a fallback chain, first path first.
# ("inplace" has none: Unicorn completes the access in a hook.)
CHAINS: dict[str, tuple[str, ...]] = {
    "generic": ("generic",),
    "fast": ("pv-fast", "generic"),
    "wildcard": ("wildcard", "generic"),
}


def _link(name: str, board: Any) -> Any:
    """One path of a chain, by its name in `CHAINS`."""
    if name == "generic":
        return GenericPath()
    if name == "pv-fast":
        return PvFastPath(board.pv_windows if board is not None else None)
    if name == "wildcard":
        board = board or default_board()
        return WildcardNotify(board.bus, board.pv_windows)
    raise ExitlabError(f"no Python path named {name!r}")


def make_path(name: str, board: Any = None) -> Any:
    """The Python engine's exit-style path for a CLI path name: its chain of `CHAINS` (a single
    path when the chain has one), or None for in place."""
    name = _PY_ALIASES.get(name, name)
    if name == "subset":
        raise ExitlabError("the subset decoder exists only in C: use --engine c --path subset")
    chain = CHAINS.get(name)
    if chain is None:
        return None
    links = [_link(link, board) for link in chain]
    return links[0] if len(links) == 1 else Chain(name, links)
