"""Ctrl-C (issue 13: H4 CLI side, W13): an interrupted run prints its summary, keeps its trace and
exits 130; an interrupted fuzz campaign is never "clean" and counts the cases it really ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emu.machine import Machine, RunResult, Stop, StopReason
from emu.trace import read_trace
from exitlab.runexit import interrupted_reason
from tests.hostile import LOOP, ROOT, main

Cap = pytest.CaptureFixture[str]
ENGINE_STOPS = hasattr(StopReason, "INTERRUPTED")  # SEMANTICS rule 10, built by pyengine/cengine


def _run_started(pid: int) -> bool:
    """The run's watchdog thread exists (emu/interrupt.py installs the SIGINT handler before it
    starts the thread), so a SIGINT from now on is the engine's to take."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) >= 2
    except FileNotFoundError:
        return True  # the process is gone: let communicate() report it


def _sigint_run(guest: Path, *argv: str, ready: Callable[[], bool] | None = None) -> tuple[int, str, str]:
    """Start `exitlab run GUEST ARGV` (30 s timeout), wait until the run has started, send SIGINT,
    wait for the exit.

    Without an interrupt the run would end by its --timeout with status 1 after 30 s; the wait
    allows 10 s, so a pass is the interrupt's doing, not a timing assertion. Waiting for the run
    (not for a fixed time) means the signal never lands while Python is still starting."""
    proc = subprocess.Popen([sys.executable, "-m", "exitlab", "run", str(guest), "--timeout", "30", *argv],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pause = threading.Event()
    for _ in range(2000):  # at most ~20 s for the interpreter to start and the run to begin
        if _run_started(proc.pid) and (ready is None or ready() or proc.poll() is not None):
            break
        pause.wait(0.01)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("SIGINT did not stop the run")
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("engine", [
    pytest.param("python", marks=pytest.mark.xfail(not ENGINE_STOPS, strict=False, reason=(
        "needs pyengine's interrupt watchdog (SEMANTICS rule 10): an in-place busy loop runs no Python "
        "until --timeout"))),
    pytest.param("c", marks=pytest.mark.xfail(not ENGINE_STOPS, strict=False, reason=(
        "needs cengine's thread-safe stop entry point (SEMANTICS rule 10)"))),
])
def test_sigint_stops_a_busy_loop_with_status_130(tmp_path: Path, engine: str) -> None:
    guest = tmp_path / "loop.S"
    guest.write_text(LOOP)
    rc, out, err = _sigint_run(guest, "--engine", engine)
    assert rc == 130, (out, err)
    assert "stop: interrupted" in out and "Traceback" not in err


def test_sigint_during_exits_prints_summary_and_130(tmp_path: Path) -> None:
    """Exit style runs Python at every exit, so Ctrl-C reaches the CLI today on every engine version."""
    guest = tmp_path / "kicks.S"
    guest.write_text("mov rdx, NOTIFY_MMIO\nl: mov word ptr [rdx], ax\njmp l\n")
    trace = tmp_path / "t.jsonl"
    # SIGINT only once exits are being traced (the first buffered lines reached the file): sent as
    # soon as the watchdog thread exists, it could land before the first exit (flaky under load)
    rc, out, err = _sigint_run(guest, "--path", "generic", "--trace", str(trace),
                               ready=lambda: trace.exists() and trace.stat().st_size > 0)
    assert rc == 130, (out, err)
    assert "stop: interrupted" in out and "device notify" in out and "Traceback" not in err
    assert len(read_trace(trace)) > 0  # the trace was closed cleanly, not discarded


def test_engine_interrupted_stop_gives_summary_and_130(capsys: Cap, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that reports stop reason `interrupted` (rule 10): usual summary, trace kept, 130."""

    def interrupted_run(self: Machine, *a: Any, **k: Any) -> RunResult:
        rec = self._record  # one exit recorded, so the trace has something to keep
        from emu.exits import ExitKind

        rec(ExitKind.PIO_OUT, 0x8000, 0x3F8, 1, 65)
        return RunResult(Stop(interrupted_reason(), 0x8002, "interrupted"), dict(self.exit_counts),
                         self.regs(), "", self.board.state())

    monkeypatch.setattr(Machine, "run", interrupted_run)
    trace = tmp_path / "t.jsonl"
    rc, out, _ = main(capsys, "run", "kick_mmio", "--trace", str(trace))
    assert rc == 130 and "stop: interrupted at rip=0x8002" in out
    assert len(read_trace(trace)) == 1
    rc, out, _ = main(capsys, "run", "kick_mmio", "--json")
    assert rc == 130 and json.loads(out)["stop"]["reason"] == "interrupted"


# -- W13: fuzz --------------------------------------------------------------------------------------


def test_interrupted_fuzz_is_not_clean(capsys: Cap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exitlab.tools.fuzz import runner

    real_add = runner.Tally.add

    def add_then_interrupt(self: Any, case: Any, checker: Any) -> None:
        real_add(self, case, checker)
        if self.cases == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.Tally, "add", add_then_interrupt)
    rc, out, err = main(capsys, "fuzz", "--cases", "50", "--gen", "structured", "--json", "--full",
                        "--out", str(tmp_path))
    summary = json.loads(out)
    assert rc == 130
    assert summary["interrupted"] is True and summary["clean"] is False and summary["cases"] == 7
    assert "interrupted after 7 of 50 cases" in err
    rc, out, _ = main(capsys, "fuzz", "--cases", "50", "--gen", "structured", "--full",
                      "--out", str(tmp_path))
    assert rc == 130 and "result: clean" not in out and "INTERRUPTED after 7 of 50" in out


def test_interrupted_parallel_fuzz_counts_finished_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """--jobs N: chunks that finished while Ctrl-C was being handled are counted (was: cases 0)."""
    from concurrent import futures

    from exitlab.tools.fuzz import pool, runner

    real_wait = futures.wait

    def wait_then_interrupt(fs: Any, timeout: Any = None, return_when: Any = None) -> Any:
        real_wait(fs, return_when=futures.FIRST_COMPLETED)  # a chunk is done, not yet merged
        raise KeyboardInterrupt

    monkeypatch.setattr(pool, "wait", wait_then_interrupt)
    config = runner.FuzzConfig(cases=40, seed=0, jobs=2, generators=("structured",), chunk=5)
    result = runner.run_campaign(config, progress=False)
    assert result.interrupted
    assert result.tally.cases >= 5 and result.tally.cases % 5 == 0


def test_validate_interrupted_is_130(capsys: Cap, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted_run(self: Machine, *a: Any, **k: Any) -> RunResult:
        return RunResult(Stop(interrupted_reason(), 0x8000, "interrupted"), dict(self.exit_counts),
                         self.regs(), "", self.board.state())

    monkeypatch.setattr(Machine, "run", interrupted_run)
    rc, out, _ = main(capsys, "validate", "kick_mmio")
    assert rc == 130 and "interrupted" in out
