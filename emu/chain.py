"""Fallback chains as data: `Chain("fast", (pv_fast, generic))` is a path made of paths.

Each path of a chain says "not mine" by returning None; the chain hands the exit to the next one,
and the first Outcome wins, as KVM falls back from an ioeventfd to its emulator. A chain whose
paths all decline raises an EmulationError naming them (the run loop turns it into an
`emulation_error` stop). A chain is itself a path (`name`, `handle`), so a backend, the dispatcher
and a replay take a single path or a chain alike, and `taken[i]` counts the exits path i handled.
The chains behind the CLI's `--path` names are the rows of `fastpath.hostpaths.CHAINS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from emu.cpu import Cpu, Outcome
from emu.errors import EmulationError
from emu.exits import ExitRecord


class Path(Protocol):
    """An exit handler: an Outcome, or None for 'not mine' (the caller falls back)."""

    name: str

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None: ...


class Chain:
    """Paths tried in order; the first non-None Outcome wins."""

    def __init__(self, name: str, paths: Sequence[Path]) -> None:
        if not paths:
            raise ValueError(f"chain {name!r} has no path")
        self.name = name
        self.paths: tuple[Path, ...] = tuple(paths)
        self.taken = [0] * len(self.paths)

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome:
        i = 0
        for path in self.paths:
            outcome = path.handle(exit, cpu)
            if outcome is not None:
                self.taken[i] += 1
                return outcome
            i += 1
        names = " -> ".join(repr(p.name) for p in self.paths)
        raise EmulationError(
            f"every path of {self.name!r} ({names}) declined the {exit.kind.value} exit at rip={exit.rip:#x}",
            exit.rip,
            exit.insn,
        )

    def __repr__(self) -> str:
        return f"Chain({self.name!r}, {[p.name for p in self.paths]})"
