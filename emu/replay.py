"""Replay recorded exits through the Python paths: the reference twin of fastpath/csrc/replay.c.

A trace (a file written by `--trace`, emu/trace.py, or a list of ExitRecord) is handed again, exit
by exit, to a route of paths, with a `ReplayCpu` standing in for the guest: its registers are the
record's snapshot, its only memory the instruction bytes the record carries, its devices a board's
bus (so replaying into a fresh board of the same kind leaves the device state the live run left).
Which path takes which exit is the C replay's rule (`xl_handle`), so both engines count alike:

- port I/O always goes to the pio path, hypercalls to the hypercall path (the trap baseline takes
  a hypercall too), MMIO exits to the route's MMIO path, a chain such as [pv-fast, generic] whose
  later members are fallbacks (counted as `fallbacks`; a pv-fast decline inside a pv window is a
  contract `violation`);
- a record the C engine would reject (mode, kind, sizes) is refused up front, naming the record
  (trace file:line, or its index) and what is wrong;
- a record a path cannot handle counts as an error, the first kept with its place; the replay goes
  on, as the C loop does (a device that raises makes its record an error of status "device", which
  only the Python engine has: C devices do not raise).

With `check` (the default) every handled exit's device accesses are compared with what the record
says the hardware saw (`truth_size`/`truth_value`: the port, size and data of a PIO exit, the first
access's address, size and, for a write, data of an MMIO exit): a path that touches another
address, or a board that answers a port read differently from the recording, is an error of that
record (status "mismatch"), never a silent difference.

Two ways to drive it, sharing the record checks and the access check (emu/replaycheck.py) and the
CPU (`RecordCpu`):

- `Replayer` (`replay`): the C replay's batch contract: every record is replayed, a record a path
  refuses is counted as an error and the replay goes on; per-path counts, fallbacks, violations.
  `exitlab.replay(..., engine="python")` and the bench's Python replay rows use it.
- `ReplayBackend` (`replay_run`): the trace as a backend of the one exit loop (emu/dispatch.py), a
  replay as a *run*: the dispatcher routes, counts and keeps the exits and owns the stop, so the
  first refused or mismatching exit ends it with a stop of the common taxonomy naming file:line.

The paths come from the caller (fastpath builds the pv-fast and wildcard ones; this module is in
`emu` and imports nothing above it). `ReplayResult.to_json()` has the keys of the C engine's
(fastpath.cengine.ReplayResult), with `ticks` null: Python has no TSC reading of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emu.board import Board, default_board
from emu.bus import Bus, Space
from emu.cpu import Cpu, DeviceAccess, Outcome
from emu.dispatch import Dispatcher
from emu.errors import EmulationError, ExitlabError, GuestFault, UnmappedAccess
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.iopaths import pio_length
from emu.replaycheck import access_mismatch, numbered
from emu.replaycpu import ReplayCpu
from emu.stop import Stop, StopReason

# The C engine's path names (fastpath.cengine.PATHS) in its order: counts use them on both engines.
PATH_NAMES: tuple[str, ...] = ("pio", "hypercall", "pv-fast", "wildcard", "subset", "capstone", "trap")
# A Python path's `name` -> the C name it is counted under.
C_NAMES: dict[str, str] = {"generic": "capstone", "fast": "pv-fast"}

_PIO = (ExitKind.PIO_OUT, ExitKind.PIO_IN)
_M64 = (1 << 64) - 1


def _c_name(path: Any) -> str:
    name = str(getattr(path, "name", path))
    return C_NAMES.get(name, name)


@dataclass(frozen=True)
class Route:
    """Which path takes which kind of exit. `mmio` may be a chain (anything with `.paths`): its
    first member is the fast path, the rest fallbacks."""

    name: str  # the C path name this route replays as (counts, messages)
    mmio: Any
    pio: Any
    hypercall: Any
    check: bool = True  # compare each exit's device accesses with the record's

    def mmio_chain(self) -> tuple[Any, ...]:
        paths = getattr(self.mmio, "paths", None)
        return tuple(paths) if paths is not None else (self.mmio,)

    def routes(self) -> dict[ExitKind, Any]:
        """Exit kind -> path, as the one exit loop takes them (emu.dispatch.Dispatcher)."""
        return {
            ExitKind.MMIO_WRITE: self.mmio, ExitKind.MMIO_READ: self.mmio,
            ExitKind.PIO_OUT: self.pio, ExitKind.PIO_IN: self.pio, ExitKind.HYPERCALL: self.hypercall,
        }


@dataclass(frozen=True, slots=True)
class Replayed:
    """One record's result: status "ok" or the C engine's status name, the path that handled it (C
    name), the device accesses in order, where the guest resumes and, if kept, the registers after."""

    status: str
    path: str
    accesses: tuple[DeviceAccess, ...]
    next_rip: int
    regs: dict[str, int] | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class ReplayFailure:
    """The first record that failed: where (trace file:line or record index) and why."""

    where: str
    status: str
    path: str
    rip: int
    addr: int
    insn: bytes
    reason: str

    def message(self) -> str:
        return (
            f"{self.where}: python path {self.path!r}: {self.status} at rip={self.rip:#x} "
            f"addr={self.addr:#x} bytes={self.insn.hex(' ')}: {self.reason}"
        )


@dataclass
class ReplayResult:
    """A replay's totals (the C engine's ReplayResult fields) and, when kept, every record's result."""

    path: str
    n: int
    ns: int
    errors: int
    counts: dict[str, int]
    fallbacks: int
    violations: int
    error: ReplayFailure | None
    mismatches: int = 0
    board: Board | None = field(default=None, repr=False)
    _results: list[Replayed] | None = field(default=None, repr=False)
    ticks: int | None = None  # no TSC in Python

    @property
    def ns_per_exit(self) -> float:
        return self.ns / self.n if self.n else 0.0

    def results(self) -> list[Replayed]:
        if self._results is None:
            raise ValueError("replay ran with keep_results=False")
        return list(self._results)

    def to_json(self) -> dict[str, Any]:
        """The replay's totals as JSON, with the C engine's keys (`totals_json`)."""
        return totals_json(self)


def windows_of(board: Board) -> list[tuple[int, int]]:
    """Every MMIO range of the board's bus (what `ReplayCpu.is_mmio` answers from): no literals."""
    return [(m.base, m.size) for m in board.bus.mappings(Space.MMIO)]


class NoRecordMemory(EmulationError):
    """The instruction needs guest memory (RAM) the record does not carry: a REP MOVS from RAM, a
    stack access (the C engine's status "nomem")."""


class _BadLength(EmulationError):
    """A port I/O record whose bytes are no I/O instruction (the C engine's status "length")."""


def _status(exc: Exception) -> str:
    """The C engine's status name for what a Python path raised (enum xl_status)."""
    if isinstance(exc, _BadLength):
        return "length"
    if isinstance(exc, NoRecordMemory):
        return "nomem"
    if isinstance(exc, UnmappedAccess):
        return "unmapped"
    if isinstance(exc, GuestFault):
        return {0: "de", 13: "gp"}.get(getattr(exc, "vector", -1), "unsupported")
    return "unsupported"


# ------------------------------------------------------------------------------------ the loop
def _merge_in(rax: int, value: int, size: int) -> int:
    """IN AL/AX/EAX: the low bytes replaced, a 32-bit IN zero-extends (KVM complete_fast_pio_in)."""
    if size == 4:
        return value & 0xFFFFFFFF
    mask = (1 << (8 * size)) - 1
    return (rax & ~mask & _M64) | (value & mask)


def _pio_form(insn: bytes, mode: int) -> tuple[int, bool]:
    """The port I/O instruction's length and whether it is INS/OUTS (whose element goes to or comes
    from memory, never rAX: KVM hands string I/O to its emulator); length 0: no I/O instruction."""
    length = pio_length(insn, mode)
    if length > len(insn):  # `E6`/`E7`/`E4`/`E5` without its port byte: a truncated record
        return 0, False
    return length, length > 0 and 0x6C <= insn[length - 1] <= 0x6F


_REG_INDEX = {name: i for i, name in enumerate(REG_NAMES)}
_NO_VEC: dict[str, int] = {}


class RecordCpu(ReplayCpu):
    """A `ReplayCpu` pointed at one record after another, as the C replay points its lazily filled
    `struct xl_cpu` at each record: registers are read from the record's tuple, copied only when a
    path writes one, so a record costs no register dict (the replay loop's main cost otherwise)."""

    def __init__(self, bus: Bus, windows: list[tuple[int, int]]) -> None:  # noqa: D107
        self.bus = bus
        self.windows = windows
        self._values: tuple[int, ...] | list[int] = ()

    def load(self, rec: ExitRecord) -> RecordCpu:
        self.rec = rec
        self.mode = rec.mode
        self._values = rec.regs
        # a record without vector registers shares one empty dict: ReplayCpu writes a vector
        # register only after reading it from the record, which raises first when it has none
        self.vec = dict(rec.vec) if rec.vec else _NO_VEC
        return self

    def get(self, name: str) -> int:
        return self._values[_REG_INDEX[name]]

    def read_mem(self, addr: int, size: int) -> bytes:
        off = addr - self.rec.rip
        if 0 <= off < len(self.rec.insn):
            return self.rec.insn[off : off + size]
        raise self._no_memory(addr)

    def write_mem(self, addr: int, data: bytes) -> None:
        raise self._no_memory(addr)

    def _no_memory(self, addr: int) -> NoRecordMemory:
        rec = self.rec
        return NoRecordMemory(f"a trace record carries no guest memory at {addr:#x}", rec.rip, rec.insn)

    def set(self, name: str, value: int) -> None:
        values = self._values
        if isinstance(values, tuple):  # the first write copies the record's registers
            values = self._values = list(values)
        values[_REG_INDEX[name]] = value


def complete_in(rec: ExitRecord, outcome: Outcome, cpu: Cpu) -> None:
    """What the backend does after an IN's path (KVM's complete_fast_pio_in): the value read into
    AL/AX/EAX, EAX zero-extended; an INS element goes to memory, which a record does not carry."""
    if rec.kind is ExitKind.PIO_IN and outcome.accesses and not _pio_form(rec.insn, rec.mode)[1]:
        cpu.set("rax", _merge_in(cpu.get("rax"), outcome.accesses[0].value, rec.truth_size))


class ReplayBackend:
    """A trace as a backend of the one exit loop (emu/dispatch.py): each record is the next exit.

    The dispatcher routes every record to its path, counts it, keeps or traces it, and owns the
    stop (a path's refusal is its stop, e.g. `unmapped` or `emulation_error`; a timeout or SIGINT is
    seen before the next record). `run_until_exit` points the CPU at the next record (what ran
    between two exits ran when the trace was recorded: the replay starts each exit at its recorded
    RIP); `resume` completes an IN and, with `check`, compares the device accesses with the record
    (a difference is stop `emulation_error` naming file:line). After the last record the run stops
    `hlt` at the last exit's resume RIP: the trace ends where the recorded run stopped or was cut.

        d = Dispatcher(route.routes())
        stop = d.run(ReplayBackend(trace, board, d), None, timeout=10)

    Every record is checked before the first is replayed (`numbered`): a bad one raises
    ReplayInputError / TraceError naming it, and no device is touched."""

    def __init__(self, trace: str | Path | Iterable[ExitRecord], board: Board, dispatch: Any,
                 check: bool = True) -> None:
        self._items = iter(list(numbered(trace)))
        self.board = board
        self.dispatch = dispatch
        self.check = check
        self._cpu = RecordCpu(board.bus, windows_of(board))
        self.replayed = 0
        self.where = ""
        self._rip = 0

    @property
    def cpu(self) -> Cpu:
        return self._cpu

    def run_until_exit(self, rip: int | None) -> Any:
        try:
            where, rec = next(self._items)
        except StopIteration:
            return Stop(StopReason.HLT, self._rip, f"end of the trace: {self.replayed} exits replayed")
        self._cpu.load(rec)
        self.where, self._rip = where, rec.rip
        self.replayed += 1
        return rec

    def resume(self, exit: ExitRecord, outcome: Outcome | None) -> int | None:
        if outcome is None:  # the dispatcher has the path's stop: say which record it was
            stop = self.dispatch.stop
            if stop is not None and not stop.message.startswith(self.where):
                self.dispatch.stop = replace(stop, message=f"{self.where}: {stop.message}")
            return None
        complete_in(exit, outcome, self._cpu)
        if self.check:
            bad = access_mismatch(exit, outcome.accesses)
            if bad is not None:
                self.dispatch.halt(Stop(StopReason.EMULATION_ERROR, exit.rip,
                                        f"{self.where}: the replayed device accesses differ from the "
                                        f"record: {bad}", exit.insn))
                return None
        self._rip = outcome.next_rip
        return outcome.next_rip

    def rip(self) -> int:
        return self._rip

    def kick(self) -> None:
        """Nothing to interrupt: the loop looks at the watchdog's flag before every record."""


def replay_run(
    trace: str | Path | Iterable[ExitRecord],
    route: Route,
    board: Board | None = None,
    timeout: float | None = None,
    keep_records: bool = False,
) -> tuple[Stop, Any]:
    """Replay a trace as a run of the one exit loop: (its stop, the dispatcher with `exit_counts`
    and, with `keep_records`, the records). The board holds the device state afterwards."""
    board = board if board is not None else default_board()
    dispatch = Dispatcher(route.routes(), keep_records=keep_records)
    stop = dispatch.run(ReplayBackend(trace, board, dispatch, route.check), None, timeout)
    return stop, dispatch


class Replayer:
    """Replays records through one `Route` into one board (kept across calls, like a C context)."""

    def __init__(self, route: Route, board: Board | None = None) -> None:
        self.route = route
        self.board = board if board is not None else default_board()
        self.windows = windows_of(self.board)
        self._chain = route.mmio_chain()
        self._chain_names = tuple(_c_name(p) for p in self._chain)
        pv = self._chain[0]
        self._pv_window = getattr(pv, "in_window", None) if self._chain_names[0] == "pv-fast" else None

    def run(self, trace: str | Path | Iterable[ExitRecord], keep_results: bool = True) -> ReplayResult:
        """Replay every record; see the module docstring for what is counted and checked."""
        items = list(numbered(trace))  # every record checked before the first is replayed
        return self._run(items, keep_results)

    def _run(self, items: Sequence[tuple[str, ExitRecord]], keep_results: bool) -> ReplayResult:
        route, bus, windows = self.route, self.board.bus, self.windows
        counts = dict.fromkeys(PATH_NAMES, 0)
        pio_name, hc_name = _c_name(route.pio), _c_name(route.hypercall)
        chain, chain_names, pv_window = self._chain, self._chain_names, self._pv_window
        check = route.check
        results: list[Replayed] | None = [] if keep_results else None
        errors = fallbacks = violations = mismatches = 0
        first: ReplayFailure | None = None
        cpu = RecordCpu(bus, windows)
        forms: dict[tuple[bytes, int], tuple[int, bool]] = {}  # a trace repeats its few I/O instructions
        t0 = time.perf_counter_ns()
        for where, rec in items:
            kind = rec.kind
            cpu.load(rec)
            used = chain_names[0]
            try:
                if kind in _PIO:
                    used = pio_name
                    key = (rec.insn, rec.mode)
                    form = forms.get(key)
                    if form is None:
                        form = forms[key] = _pio_form(*key)
                    length, string = form
                    if not length:
                        raise _BadLength("no port I/O instruction", rec.rip, rec.insn)
                    out = route.pio.handle(rec, cpu)
                    if out is not None and kind is ExitKind.PIO_IN and not string and out.accesses:
                        # the backend completes IN (complete_in): the value into AL/AX/EAX
                        cpu.set("rax", _merge_in(cpu.get("rax"), out.accesses[0].value, rec.truth_size))
                elif kind is ExitKind.HYPERCALL:
                    used = hc_name
                    out = route.hypercall.handle(rec, cpu)
                else:
                    out = None
                    for i, path in enumerate(chain):
                        out = path.handle(rec, cpu)
                        if out is not None:
                            used = chain_names[i]
                            break
                        if i == 0:
                            fallbacks += 1
                            if pv_window is not None and pv_window(rec.addr):
                                violations += 1
                        used = chain_names[min(i + 1, len(chain) - 1)]
                if out is None:
                    raise EmulationError(f"path {used!r} declined the {kind.value} exit", rec.rip, rec.insn)
                status, reason = "ok", ""
                if check and used != "trap":
                    bad = access_mismatch(rec, out.accesses)
                    if bad is not None:
                        status, reason = "mismatch", bad
                        mismatches += 1
            except ExitlabError as exc:
                status, reason, out = _status(exc), str(getattr(exc, "reason", exc)), None
            except Exception as exc:  # noqa: BLE001 - a device that raises is this record's error
                status, reason, out = "device", f"device error: {type(exc).__name__}: {exc}", None
            if status == "ok":
                counts[used] += 1
            else:
                errors += 1
                if first is None:
                    first = ReplayFailure(where, status, used, rec.rip, rec.addr, rec.insn, reason)
            if results is not None:
                results.append(_replayed(status, used, out, cpu, reason))
        ns = time.perf_counter_ns() - t0
        return ReplayResult(
            route.name, len(items), ns, errors, counts, fallbacks, violations, first, mismatches,
            self.board, results,
        )


def totals_json(r: Any) -> dict[str, Any]:
    """A replay's totals as JSON, one shape for both engines (this module's ReplayResult and
    fastpath.cengine.ReplayResult): per-exit results stay in `results()`."""
    return {
        "path": r.path,
        "exits": r.n,
        "ns": r.ns,
        "ns_per_exit": r.ns_per_exit,
        "ticks": r.ticks,
        "errors": r.errors,
        "counts": dict(r.counts),
        "fallbacks": r.fallbacks,
        "violations": r.violations,
        "error": None if r.error is None else r.error.message(),
    }


def _replayed(status: str, used: str, out: Outcome | None, cpu: ReplayCpu, reason: str) -> Replayed:
    regs = {name: cpu.get(name) & _M64 for name in REG_NAMES}
    if out is None:
        return Replayed(status, used, (), 0, regs, reason)
    regs["rip"] = out.next_rip
    return Replayed(status, used, out.accesses, out.next_rip, regs, reason)


def replay(
    trace: str | Path | Iterable[ExitRecord],
    route: Route,
    board: Board | None = None,
    keep_results: bool = True,
) -> ReplayResult:
    """Replay a trace file or records through `route` into `board` (default: a fresh default board)."""
    return Replayer(route, board).run(trace, keep_results)
