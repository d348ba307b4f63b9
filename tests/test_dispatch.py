"""The one exit loop (emu/dispatch.py) against a scripted backend: routing, resume, the stop
taxonomy (first stop wins, path errors mapped, device errors), the exit budget and the watchdog's
kick. Every engine's own tests (test_machine, test_kvm, test_run_semantics) run the real backends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from emu.batchcpu import BatchCpu
from emu.cpu import DeviceAccess, Outcome
from emu.dispatch import Dispatcher, Event, Resume, error_stop
from emu.errors import EmulationError, UnmappedAccess
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.iopaths import PioPath
from emu.stop import Stop, StopReason


def _rec(kind: ExitKind, rip: int = 0x8000, addr: int = 0x3F8, size: int = 1, value: int = 0) -> ExitRecord:
    regs = tuple(rip if n == "rip" else 0 for n in REG_NAMES)
    return ExitRecord(kind, rip, 64, addr, bytes.fromhex("ee") + bytes(14), regs, size, value)


class Script:
    """A backend that replays a list of events; `resume` returns the Outcome's next RIP."""

    def __init__(self, events: list[Any], cpu: BatchCpu | None = None) -> None:
        self.events = list(events)
        self.cpu = cpu or BatchCpu(64)
        self.started: list[int | None] = []
        self.resumed: list[tuple[ExitRecord, Outcome | None]] = []
        self.kicks = 0
        self.at = 0x8000

    def run_until_exit(self, rip: int | None) -> Event:
        self.started.append(rip)
        event = self.events.pop(0)
        return event() if callable(event) else event

    def resume(self, exit: ExitRecord, outcome: Outcome | None) -> int | None:
        self.resumed.append((exit, outcome))
        return None if outcome is None else outcome.next_rip

    def rip(self) -> int:
        return self.at

    def kick(self) -> None:
        self.kicks += 1


def _routes(path: Any = None) -> dict[ExitKind, Any]:
    pio = PioPath()
    routes: dict[ExitKind, Any] = {ExitKind.PIO_OUT: pio, ExitKind.PIO_IN: pio}
    if path is not None:
        routes[ExitKind.MMIO_WRITE] = routes[ExitKind.MMIO_READ] = path
    return routes


HLT = Stop(StopReason.HLT, 0x8009, "hlt")


def test_exit_is_routed_resumed_and_counted() -> None:
    out = _rec(ExitKind.PIO_OUT, value=0x41)
    backend = Script([out, Resume(0x9000), HLT])
    d = Dispatcher(_routes(), keep_records=True)
    assert d.run(backend, 0x8000, timeout=None) is HLT
    assert backend.started == [0x8000, 0x8001, 0x9000]  # resumed behind the OUT, then at Resume.rip
    assert backend.cpu.accesses == [DeviceAccess(0x3F8, 1, True, 0x41, True)]
    assert d.exit_counts["pio_out"] == 1 and d.records == [out]


def test_the_first_stop_wins() -> None:
    def inline_failure() -> Event:
        d.halt(Stop(StopReason.DEVICE_ERROR, 0x8000, "first"))
        return Stop(StopReason.UNMAPPED, 0x8000, "second")

    d = Dispatcher(_routes())
    stop = d.run(Script([inline_failure]), 0x8000, timeout=None)
    assert (stop.reason, stop.message) == (StopReason.DEVICE_ERROR, "first")


class _Raises:
    name = "raises"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def handle(self, exit: ExitRecord, cpu: Any) -> Outcome | None:
        raise self.exc


@pytest.mark.parametrize(
    "exc, reason",
    [
        (UnmappedAccess(0xFEB02000, True, 0x8000, b"\x89\x01"), StopReason.UNMAPPED),
        (EmulationError("cannot", 0x8000, b"\x0f\x0b"), StopReason.EMULATION_ERROR),
        (RuntimeError("device on fire"), StopReason.DEVICE_ERROR),
    ],
)
def test_a_failing_path_is_its_stop_and_the_backend_undoes(exc: BaseException, reason: StopReason) -> None:
    rec = _rec(ExitKind.MMIO_WRITE, addr=0xFEB01000)
    backend = Script([rec])
    d = Dispatcher(_routes(_Raises(exc)))
    stop = d.run(backend, 0x8000, timeout=None)
    assert stop.reason is reason and stop.rip == 0x8000
    assert backend.resumed == [(rec, None)]  # resume(exit, None): the backend undoes its repair


def test_a_declining_path_without_fallback_is_an_emulation_error() -> None:
    class Declines:
        name = "nope"

        def handle(self, exit: ExitRecord, cpu: Any) -> None:
            return None

    stop = Dispatcher(_routes(Declines())).run(Script([_rec(ExitKind.MMIO_READ)]), 0x8000, timeout=None)
    assert stop.reason is StopReason.EMULATION_ERROR and "'nope' declined" in stop.message


def test_an_unrouted_kind_is_a_clear_stop() -> None:
    stop = Dispatcher(_routes()).run(Script([_rec(ExitKind.HYPERCALL)]), 0x8000, timeout=None)
    assert stop.reason is StopReason.EMULATION_ERROR and "no path handles hypercall exits" in stop.message


def test_in_answer_mode_the_record_carries_the_value_read() -> None:
    d = Dispatcher(_routes(), keep_records=True)
    cpu = BatchCpu(64, read_value=0x5A)
    outcome = d.exit(_rec(ExitKind.PIO_IN), cpu, answer=True)
    assert outcome is not None and outcome.accesses[0].value == 0x5A
    assert d.records[0].truth_value == 0x5A and d.exit_counts["pio_in"] == 1


def test_exit_budget() -> None:
    backend = Script([Resume(None)] * 5 + [HLT])
    stop = Dispatcher(_routes(), max_exits=3).run(backend, None, timeout=None)
    assert stop.reason is StopReason.BUDGET and stop.message == "exit budget of 3 exhausted"
    assert len(backend.started) == 3


def test_external_stop_kicks_the_backend_and_names_the_reason() -> None:
    """The watchdog thread raises the flag and kicks; the loop makes the stop at the backend's RIP."""
    d = Dispatcher(_routes())
    fired = threading.Event()

    def spin() -> Event:
        fired.wait(5)
        return None

    backend = Script([spin] * 3)
    backend.at = 0x8123
    backend.kick = lambda: fired.set()  # type: ignore[method-assign]
    stop = d.run(backend, 0x8000, timeout=0.05)
    assert stop.reason is StopReason.TIMEOUT and stop.rip == 0x8123
    assert stop.message == "wall-clock timeout of 0.05 s"


def test_error_stop_taxonomy() -> None:
    class Fault(EmulationError):
        def __init__(self, vector: int) -> None:
            super().__init__("#X", 0x8000)
            self.vector = vector

    assert error_stop(Fault(6)).reason is StopReason.INVALID_INSN
    assert error_stop(Fault(13)).reason is StopReason.TRIPLE_FAULT
