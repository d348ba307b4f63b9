"""What a replay checks, on the way in and on the way out (emu/replay.py, both engines' records).

- In: `record_problem` says why a record cannot enter a replay (the rules the C engine's
  `check_record` and `record_ok` apply too: fastpath.cengine uses this function), and `numbered`
  reads a trace file or a list of records into (where, record) pairs, refusing the first bad one
  with its place: `file:line` or `exit record I`.
- Out: `access_mismatch` compares the device accesses a path made for an exit with what the record
  says the hardware saw, so a replay into the wrong board, a tampered record or a path that touches
  another address is a named difference, never a silent one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from emu.cpu import DeviceAccess
from emu.errors import ExitlabError
from emu.exits import MAX_INSN_LEN, REG_NAMES, ExitKind, ExitRecord
from emu.trace import iter_trace_lines

_PIO = (ExitKind.PIO_OUT, ExitKind.PIO_IN)
_MMIO = (ExitKind.MMIO_WRITE, ExitKind.MMIO_READ)
_MODES = (16, 32, 64)
_PIO_SIZES = (1, 2, 4)


class ReplayInputError(ExitlabError):
    """A record no engine can replay (bad mode, kind or size); names the record and the problem."""


def record_problem(rec: ExitRecord) -> str | None:
    """Why `rec` cannot enter a replay (the C engine's `check_record` / `record_ok` rules), or None."""
    if not isinstance(rec, ExitRecord):
        return f"not an ExitRecord ({type(rec).__name__})"
    if not isinstance(rec.kind, ExitKind):
        return f"unknown exit kind {rec.kind!r}"
    if isinstance(rec.mode, bool) or rec.mode not in _MODES:
        return f"mode {rec.mode!r} (must be 16, 32 or 64)"
    if len(rec.insn) > MAX_INSN_LEN:
        return f"{len(rec.insn)} instruction bytes (at most {MAX_INSN_LEN})"
    if rec.kind in _PIO and (isinstance(rec.truth_size, bool) or rec.truth_size not in _PIO_SIZES):
        return f"port I/O size {rec.truth_size!r} (must be 1, 2 or 4)"
    if len(rec.regs) != len(REG_NAMES):
        return f"{len(rec.regs)} registers (expected {len(REG_NAMES)})"
    return None


def numbered(trace: str | Path | Iterable[ExitRecord]) -> Iterator[tuple[str, ExitRecord]]:
    """(where, record) pairs: `file:line` for a trace file, `exit record i` for records in memory.
    A bad line of a file is a TraceError naming file:line (emu/trace.py); a record no engine can
    replay is a ReplayInputError naming it."""
    if isinstance(trace, str | Path):
        items: Iterable[tuple[str, ExitRecord]] = (
            (f"{trace}:{lineno}", rec) for lineno, rec in iter_trace_lines(trace)
        )
    else:
        items = ((f"exit record {i}", rec) for i, rec in enumerate(trace))
    for where, rec in items:
        problem = record_problem(rec)
        if problem is not None:
            raise ReplayInputError(f"{where}: {problem}")
        yield where, rec


def access_mismatch(rec: ExitRecord, accesses: Sequence[DeviceAccess]) -> str | None:
    """How the replayed device accesses differ from what the record says the hardware saw, or None.

    PIO: exactly one access, at the exit's port, of its size and direction, with its data (an OUT's
    value; an IN's value read from the board, which must be the recorded one). MMIO: the first
    access is at the exit's address in the exit's direction; the accesses of that direction that
    follow it back to back (one access split at a device boundary, rule 4) add up to the recorded
    size (or cover it, for a wide vector access Unicorn reports in pieces), and for a write their
    data is the recorded data. An address-only notification (size 0, the wildcard path) is checked
    by address alone."""
    if rec.kind in _PIO:
        write = rec.kind is ExitKind.PIO_OUT
        data = rec.truth_value & ((1 << (8 * rec.truth_size)) - 1)
        want = DeviceAccess(rec.addr, rec.truth_size, write, data)
        got = [(a.gpa, a.size, a.write, a.value) for a in accesses]
        if got != [(want.gpa, want.size, want.write, want.value)]:
            return f"recorded port access {_show(want)}, replayed {_show_all(accesses)}"
        return None
    if rec.kind not in _MMIO:
        return None
    write = rec.kind is ExitKind.MMIO_WRITE
    if not accesses:
        return f"recorded a {'write' if write else 'read'} at {rec.addr:#x}, replayed no device access"
    first = accesses[0]
    if first.gpa != rec.addr or (first.size and first.write != write):
        return f"recorded a {'write' if write else 'read'} at {rec.addr:#x}, replayed {_show_all(accesses)}"
    if first.size == 0 or rec.truth_size == 0:
        return None
    covered, value = 0, 0
    for a in accesses:
        if a.write != write or a.gpa != rec.addr + covered or covered >= rec.truth_size:
            break
        value |= a.value << (8 * covered)
        covered += a.size
        if covered == rec.truth_size:
            break
    wide = first.size > 8 and covered >= rec.truth_size
    if covered != rec.truth_size and not wide:
        return f"recorded {rec.truth_size} bytes at {rec.addr:#x}, replayed {_show_all(accesses)}"
    mask = (1 << (8 * rec.truth_size)) - 1
    if write and (value & mask) != (rec.truth_value & mask):
        return (f"recorded data {rec.truth_value & mask:#x} written at {rec.addr:#x}, replayed "
                f"{_show_all(accesses)}")
    return None


def _show(a: DeviceAccess) -> str:
    return f"{'write' if a.write else 'read'} {a.gpa:#x}/{a.size}={a.value:#x}"


def _show_all(accesses: Sequence[DeviceAccess]) -> str:
    return "[" + ", ".join(_show(a) for a in accesses[:4]) + (", ...]" if len(accesses) > 4 else "]")
