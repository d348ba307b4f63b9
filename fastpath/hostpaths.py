"""Python host paths besides the decode paths: wildcard, trap-only, and the PIO and hypercall
handlers a replay needs (live runs handle those two in the machine's own hooks).

- `WildcardPath`: an address-only notification (upstream KVM's zero-length ioeventfd). The host
  needs no data, only the next RIP, so it learns the instruction's *length* and nothing else.
- `TrapPath`: the cost of the exit alone. It assumes the agreed 3-byte instruction and touches no
  device; it exists only so benchmarks can split an exit's cost into trap and tax.
"""

from __future__ import annotations

from typing import Any

import capstone

from emu.board import default_board
from emu.bus import Bus, Space
from emu.cpu import Cpu, DeviceAccess, Outcome
from emu.errors import ExitlabError
from emu.exits import MAX_INSN_LEN, ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.hypercall import HYPERCALL_LEN, hypercall
from emu.platform import NOTIFY_MMIO, NOTIFY_MMIO_SIZE
from fastpath.fast import FastPath

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


class WildcardPath:
    """Exit-style MMIO path for address-only notifications: count the kick, skip the instruction.

    Like a zero-length ioeventfd, it claims only writes inside a notify (pv) window; a read, a
    write elsewhere, or bytes with no valid length fall back to the generic path, as KVM falls
    back to its emulator when no ioeventfd matches."""

    name = "wildcard"

    def __init__(self, bus: Bus, windows: list[tuple[int, int]] | None = None) -> None:
        self.bus = bus
        self.windows = list(windows) if windows is not None else [(NOTIFY_MMIO, NOTIFY_MMIO_SIZE)]
        self.fallback = GenericPath()
        self.hits = 0
        self.fallbacks = 0

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome:
        if exit.kind is ExitKind.MMIO_WRITE and any(b <= exit.addr < b + s for b, s in self.windows):
            length = insn_length(cpu.read_mem(exit.rip, MAX_INSN_LEN), exit.mode)
            if length:
                self.hits += 1
                self.bus.notify(exit.addr)
                next_rip = (exit.rip + length) & ((1 << 64) - 1 if exit.mode == 64 else 0xFFFFFFFF)
                return Outcome(next_rip, (DeviceAccess(exit.addr, 0, True, 0),))
        self.fallbacks += 1
        return self.fallback.handle(exit, cpu)


class TrapPath:
    """Count-only: resumes after the agreed 3-byte instruction without any device access."""

    name = "trap"

    def __init__(self) -> None:
        self.count = 0

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome:
        self.count += 1
        return Outcome(exit.rip + 3, ())


def replay_pio(rec: ExitRecord, bus: Bus) -> None:
    """Port I/O carries port, size and data in the exit itself (and the VMCS gives the length):
    nothing to decode."""
    if rec.kind is ExitKind.PIO_OUT:
        bus.write(Space.PIO, rec.addr, rec.truth_size, rec.truth_value)
    else:
        bus.read(Space.PIO, rec.addr, rec.truth_size)


def replay_hypercall(rec: ExitRecord, cpu: Cpu, bus: Bus) -> int:
    """The KVM ABI: every argument is in an agreed register."""
    cpu.set(
        "rax",
        hypercall(
            bus, rec.mode, cpu.get("rax"), cpu.get("rbx"), cpu.get("rcx"), cpu.get("rdx"), cpu.get("rsi")
        ),
    )
    return rec.rip + HYPERCALL_LEN


# The C engine's names for the Python paths, so one CLI name works on both engines.
_PY_ALIASES = {"pv-fast": "fast", "capstone": "generic"}


def make_path(name: str, board: Any = None) -> Any:
    """The Python engine's exit-style path object for a CLI path name (None: in place)."""
    name = _PY_ALIASES.get(name, name)
    if name == "subset":
        raise ExitlabError("the subset decoder exists only in C: use --engine c --path subset")
    if name == "wildcard":
        board = board or default_board()
        return WildcardPath(board.bus, board.pv_windows)
    if name == "generic":
        return GenericPath()
    if name == "fast":
        return FastPath(windows=board.pv_windows if board is not None else None)
    return None
