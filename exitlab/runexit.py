"""How a finished (or interrupted) run becomes the CLI's output and exit status.

`run` prints the usual summary in every case a run ends, Ctrl-C included: engines that know
SEMANTICS rule 10 return a stop reason `interrupted`; for an engine that still lets
KeyboardInterrupt escape, `interrupted_result` builds the summary from what the board saw.
"""

from __future__ import annotations

import enum
from typing import Any

from emu.errors import OutputError
from emu.machine import RunResult, Stop, StopReason
from exitlab.boundary import EXIT_INTERRUPTED

INTERRUPTED = "interrupted"


class _Fallback(enum.Enum):
    """The `interrupted` reason for an engine whose StopReason does not have it yet."""

    INTERRUPTED = INTERRUPTED


def interrupted_reason() -> Any:
    try:
        return StopReason(INTERRUPTED)
    except ValueError:
        return _Fallback.INTERRUPTED


def is_interrupted(result: RunResult) -> bool:
    return bool(result.stop.reason.value == INTERRUPTED)


def interrupted_result(board: Any) -> RunResult:
    """A summary for a run Ctrl-C ended by unwinding the engine: what the board's devices and
    console saw; registers and exit counts are unknown (the engine did not hand them back)."""
    stop = Stop(interrupted_reason(), 0, "interrupted (Ctrl-C); registers and exit counts unavailable")
    console = getattr(getattr(board, "console", None), "text", "")
    try:
        devices = board.state()
    except Exception:  # noqa: BLE001 - a summary of what is known; device state is optional
        devices = {}
    return RunResult(stop=stop, exits={}, regs={}, console=console, devices=devices)


def exit_status(result: RunResult) -> int:
    """0: the guest stopped on hlt; 130: interrupted; 1: any other stop."""
    if is_interrupted(result):
        return EXIT_INTERRUPTED
    return 1 if result.stop.is_error else 0


def finish_trace(trace: Any) -> OutputError | None:
    """Close the trace (rename into place); the error to report after the summary, if any."""
    if trace is None:
        return None
    try:
        trace.close()
    except OutputError as exc:
        return exc
    return None
