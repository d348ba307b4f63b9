"""The one exit loop (`Dispatcher.run`) and the backend interface every Python-driven engine implements.

A *backend* is an engine that runs the guest until something happens: Unicorn driven from Python
(emu/machine.py, exit style and in-place style), KVM (emu/kvm.py), a trace replay (emu/replay.py).
The C engine's loop, `xl_live_run` in fastpath/csrc/live.c, is this loop written in C
(docs/run-loop.md maps it step by step). The dispatcher owns what must not differ between engines:

- routing: exit kind -> path or fallback chain (`routes`, emu/chain.py), the per-exit routine
  `exit()`, which a backend may also call inline from inside an engine hook (Unicorn's IN hook must
  return the value at once; KVM has decoded its MMIO already);
- counting and recording exits (`exit_counts`, the trace, `records`);
- the stop taxonomy (emu/stop.py, SEMANTICS rule 12): the first stop wins (`halt`), a path's
  EmulationError is mapped to unmapped / invalid_insn / triple_fault / emulation_error by
  `error_stop`, any other exception at an exit to device_error;
- the limits: the wall-clock timeout and SIGINT (one Watchdog per run, emu/interrupt.py; it asks the
  backend to `kick` the engine), the instruction budget's state (`max_insns`, `executed`: the
  engine counts, `budget_exhausted`/`budget_stop` judge) and the exit budget (`max_exits`).

A backend keeps what is its engine's own: trapping and turning a trap into an ExitRecord, applying
an Outcome (the IN value, a REP's budget cap, RIP), and repairing the engine (Unicorn's flag-fix
stash and code guard, KVM's state rewind). Its interface is five members:

    cpu: Cpu                               the seam the paths see (emu/cpu.py)
    run_until_exit(rip) -> Event           run from `rip` (None: where the engine is) until the
                                           next exit or stop; Event is one of
        ExitRecord   an exit to route: the loop calls `exit()` and then `resume()`
        Resume(rip)  handled inside the engine (inline exits, a guard site); restart at `rip`
                     (None: the engine goes on from where it is, e.g. KVM after KVM_EXIT_IO)
        Stop         the run ends (hlt, a fault, the budget) unless a stop is already set
        None         nothing to report: an inline exit set the stop, or the watchdog fired
    resume(exit, outcome) -> int | None    apply a routed exit's Outcome (None: the path failed,
                                           undo any repair); the RIP to restart at, or None to end
    rip() -> int                           RIP now (the external stops are made at it)
    kick() -> None                         from the watchdog thread: make `run_until_exit` return soon

`Dispatcher.run(backend, rip)` is the loop:

    loop:  stop set or watchdog fired?        -> end with that stop
           event = backend.run_until_exit(rip)
           ExitRecord -> outcome = exit(event); rip = backend.resume(event, outcome); None -> end
           Resume     -> rip = event.rip
           Stop       -> end with it (a stop already set wins)
           exit budget (max_exits: events handled) used up?  -> stop `budget`
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from emu.chain import Path
from emu.cpu import Cpu, Outcome
from emu.errors import EmulationError
from emu.exits import ExitKind, ExitRecord
from emu.interrupt import INTERRUPTED, Watchdog
from emu.stop import Stop, StopReason
from emu.trace import TraceWriter


class Resume:
    """The engine handled what stopped it; restart at `rip` (None: where the engine is).
    (A plain slots class: one is made per hypercall, and a frozen dataclass costs twice as much.)"""

    __slots__ = ("rip",)

    def __init__(self, rip: int | None = None) -> None:
        self.rip = rip

    def __repr__(self) -> str:
        return f"Resume({self.rip!r})"


Event = ExitRecord | Resume | Stop | None


class Backend(Protocol):
    """An engine the dispatcher drives (see the module docstring)."""

    @property
    def cpu(self) -> Cpu: ...

    def run_until_exit(self, rip: int | None) -> Event: ...

    def resume(self, exit: ExitRecord, outcome: Outcome | None) -> int | None: ...

    def rip(self) -> int: ...

    def kick(self) -> None: ...


def error_stop(exc: EmulationError) -> Stop:
    """The stop for a path's refusal. The generic path raises subclasses of EmulationError for an
    access that leaves its window (`.gpa`: rule 6 -> `unmapped`) and for an architectural fault
    (`.vector`: no IDT -> `triple_fault`, #UD -> `invalid_insn`); they are recognised by those
    attributes. Anything else a path refuses is an `emulation_error`."""
    rip = exc.rip or 0
    gpa = getattr(exc, "gpa", None)
    if isinstance(gpa, int):
        what = "write" if getattr(exc, "write", False) else "read"
        message = f"{what} at unmapped address {gpa:#x} by the instruction at rip={rip:#x}"
        return Stop(StopReason.UNMAPPED, rip, message, exc.insn)
    vector = getattr(exc, "vector", None)
    if isinstance(vector, int):
        if vector == 6:  # #UD: the taxonomy's invalid_insn, as for an opcode the engine rejects
            message = f"invalid instruction at rip={rip:#x}: {exc.reason}"
            return Stop(StopReason.INVALID_INSN, rip, message, exc.insn)
        message = f"{exc.reason} at rip={rip:#x}; the platform has no IDT, so a real CPU would triple-fault"
        return Stop(StopReason.TRIPLE_FAULT, rip, message, exc.insn)
    return Stop(StopReason.EMULATION_ERROR, rip, str(exc), exc.insn)


def device_error_stop(exit: ExitRecord, exc: BaseException) -> Stop:
    """A device (or anything below a path) raised while an exit was handled: `device_error`."""
    kind = exit.kind
    if kind is ExitKind.PIO_IN:
        what = f"device error on IN from port {exit.addr:#x}"
    elif kind is ExitKind.PIO_OUT:
        what = f"device error on OUT to port {exit.addr:#x}"
    elif kind is ExitKind.HYPERCALL:
        what = "hypercall failed"
    else:
        what = f"device error on MMIO {exit.addr:#x}"
    return Stop(StopReason.DEVICE_ERROR, exit.rip, f"{what}: {exc}", exit.insn)


class Dispatcher:
    """One run's routing, records, limits and stop. Create per run; `run(backend, rip)` loops."""

    def __init__(
        self,
        routes: Mapping[ExitKind, Path],
        trace: TraceWriter | None = None,
        keep_records: bool = False,
        max_insns: int | None = None,
        max_exits: int | None = None,
    ) -> None:
        self.routes = routes
        self.trace = trace
        self.keep_records = keep_records
        self.recording = trace is not None or keep_records
        self.records: list[ExitRecord] = []
        self.exit_counts: Counter[str] = Counter({k.value: 0 for k in ExitKind})
        self.max_insns = max_insns
        self.executed = 0  # instructions the engine counted (REP iterations each count), whole run
        self.max_exits = max_exits
        self.stop: Stop | None = None
        self.external: str | None = None  # "timeout" / "interrupted", set by the watchdog thread
        self.timeout: float | None = None
        self._backend: Backend | None = None

    @property
    def routes(self) -> dict[ExitKind, Path]:
        """Exit kind -> the path (or chain) that handles it."""
        return {kind: self._paths[kind.value] for kind in ExitKind if kind.value in self._paths}

    @routes.setter
    def routes(self, routes: Mapping[ExitKind, Path]) -> None:
        self._paths = {kind.value: path for kind, path in routes.items()}  # str keys: Enum hashing is slow

    # -- one exit -----------------------------------------------------------------------------
    def exit(self, rec: ExitRecord, cpu: Cpu, answer: bool = False) -> Outcome | None:
        """Route one exit to its path and return the Outcome, or None after setting the stop.

        The record is counted (and traced) before the path runs, as the trap happened; with
        `answer`, after it, carrying the device's answer as its value (an IN, an MMIO read the
        engine decoded itself: the value is what the path read)."""
        if not answer:
            self.emit(rec)
        path = self._paths.get(rec.kind._value_)
        try:
            if path is None:
                raise EmulationError(f"no path handles {rec.kind.value} exits", rec.rip, rec.insn)
            outcome = path.handle(rec, cpu)
            if outcome is None:
                raise EmulationError(
                    f"path {path.name!r} declined the exit and has no fallback", rec.rip, rec.insn
                )
        except EmulationError as exc:
            self.halt(error_stop(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - a device failure is a stop, not a traceback
            self.halt(device_error_stop(rec, exc))
            return None
        if answer:
            access = outcome.accesses[0] if outcome.accesses else None
            self.emit(rec, access.value if access is not None else None)
        return outcome

    def emit(self, rec: ExitRecord, value: int | None = None) -> None:
        """Count the exit; write it to the trace and the kept records (`value`: its answer)."""
        self.exit_counts[rec.kind._value_] += 1  # _value_: the Enum's `.value` is a slow descriptor
        if self.recording:
            if value is not None:
                rec = replace(rec, truth_value=value & ((1 << (8 * max(rec.truth_size, 8))) - 1))
            if self.trace is not None:
                self.trace.write(rec)
            if self.keep_records:
                self.records.append(rec)

    # -- stops --------------------------------------------------------------------------------
    def halt(self, stop: Stop) -> None:
        """End the run with `stop` unless one is already set (the first stop wins)."""
        if self.stop is None:
            self.stop = stop

    def budget_exhausted(self) -> bool:
        return self.max_insns is not None and self.executed >= self.max_insns

    def budget_stop(self, rip: int, insn: bytes = b"") -> Stop:
        return Stop(StopReason.BUDGET, rip, f"instruction budget of {self.max_insns} exhausted", insn)

    def external_stop(self, rip: int) -> Stop | None:
        """The stop for a watchdog that fired (SIGINT: `interrupted`, deadline: `timeout`), else None."""
        reason = self.external
        if reason is None:
            return None
        if reason == INTERRUPTED:
            return Stop(StopReason.INTERRUPTED, rip, "interrupted (SIGINT)")
        return Stop(StopReason.TIMEOUT, rip, f"wall-clock timeout of {self.timeout} s")

    def _on_watchdog(self, reason: str) -> None:
        """Runs on the watchdog thread: only raise the flag and ask the engine to stop."""
        self.external = reason
        if self._backend is not None:
            self._backend.kick()

    # -- the loop -----------------------------------------------------------------------------
    def run(self, backend: Backend, rip: int | None, timeout: float | None) -> Stop:
        """Drive `backend` from `rip` until a stop; returns it (also left in `self.stop`)."""
        self.timeout = timeout
        self._backend = backend
        try:
            with Watchdog(self._on_watchdog, timeout):
                self._loop(backend, rip)
        finally:
            self._backend = None
        assert self.stop is not None
        return self.stop

    def _loop(self, backend: Backend, rip: int | None) -> None:
        cpu = backend.cpu
        exits_left = self.max_exits if self.max_exits is not None else -1
        while True:
            if self.stop is not None:
                return
            external = self.external_stop(backend.rip()) if self.external is not None else None
            if external is not None:
                self.halt(external)
                return
            event = backend.run_until_exit(rip)
            if event is None:
                rip = None  # nothing handled: the engine goes on from where it is
                continue
            if isinstance(event, Resume):
                rip = event.rip
            elif isinstance(event, Stop):
                self.halt(event)
                return
            else:
                outcome = self.exit(event, cpu)
                rip = backend.resume(event, outcome)
                if rip is None:
                    if self.stop is None:  # a backend ending the run names the stop first
                        raise RuntimeError("backend ended the run without a stop")
                    return
            if exits_left > 0:
                exits_left -= 1
                if exits_left == 0 and self.stop is None:
                    message = f"exit budget of {self.max_exits} exhausted"
                    self.halt(Stop(StopReason.BUDGET, backend.rip(), message))
                    return
