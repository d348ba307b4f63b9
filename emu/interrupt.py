"""Stop a running engine from outside it: at a wall-clock deadline, or when the user presses Ctrl-C.

While an engine runs guest code, the main thread is inside C (Unicorn's `emu_start`, KVM's
`KVM_RUN`) and Python signal handlers only run when it comes back, which a `l: jmp l` guest never
does. So SIGINT is taken at the C level: `signal.set_wakeup_fd` makes the interpreter write the
signal number to a pipe the moment the signal arrives, and a watchdog thread blocked in `select()`
on that pipe calls the engine's thread-safe stop entry point (`uc.emu_stop()`, a KVM kick...).
The same thread enforces the deadline as the select timeout, waited in bounded slices so any
finite timeout (up to and beyond 10**6 s) is valid (`threading.Timer(1e30)` dies with OverflowError).

Use:
    with Watchdog(stop, timeout) as dog:   # stop(reason) is called at most once, from the thread
        engine.run()
    dog.fired   # None, "timeout" or "interrupted"

SIGINT handling is installed only when the watchdog is created on the main thread (Python allows
signal handlers nowhere else); elsewhere the watchdog enforces the timeout only. The previous
SIGINT handler and wakeup fd are restored on exit, so nesting and later Ctrl-C behave as before.
"""

from __future__ import annotations

import math
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

TIMEOUT = "timeout"
INTERRUPTED = "interrupted"
MAX_TIMEOUT = 10.0**6  # seconds: the documented upper bound of --timeout (SEMANTICS rule 11)
_SLICE = 3600.0  # longest single select() wait; keeps every wait far from platform limits


def check_timeout(timeout: float | None) -> None:
    """Engines assert the CLI's contract: None (no limit) or finite 0 < T <= 10**6 seconds."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ValueError(f"timeout must be a number of seconds (got {timeout!r})")
    if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be finite, > 0 and <= {MAX_TIMEOUT:g} s (got {timeout!r})")


class Watchdog:
    """One thread per run: calls `stop(reason)` once, on the deadline or on SIGINT."""

    def __init__(self, stop: Callable[[str], None], timeout: float | None) -> None:
        check_timeout(timeout)
        self._stop = stop
        self.timeout = timeout
        self.fired: str | None = None
        self._lock = threading.Lock()
        self._rfd, self._wfd = os.pipe()  # wakeup pipe: SIGINT bytes, and our own "finish" byte
        self._qfd_r, self._qfd_w = os.pipe()
        for fd in (self._rfd, self._wfd, self._qfd_r, self._qfd_w):
            os.set_blocking(fd, False)
        self._old_handler: Any = None
        self._old_wakeup: int | None = None
        self._thread: threading.Thread | None = None
        self._deadline = None if timeout is None else time.monotonic() + timeout

    # -- signal plumbing (main thread only) -------------------------------------------------------
    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """The Python-level handler: the wakeup fd already woke the thread; also cover the case
        where the engine is between runs (the thread then stops the next step)."""
        self._fire(INTERRUPTED)

    def _install_signal(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            self._old_wakeup = signal.set_wakeup_fd(self._wfd, warn_on_full_buffer=False)
        except ValueError:
            return
        try:
            self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:
            signal.set_wakeup_fd(self._old_wakeup)
            self._old_wakeup = None

    def _restore_signal(self) -> None:
        if self._old_wakeup is None:
            return
        signal.signal(signal.SIGINT, self._old_handler)
        signal.set_wakeup_fd(self._old_wakeup)
        self._old_wakeup = None

    # -- the thread -------------------------------------------------------------------------------
    def _fire(self, reason: str) -> None:
        with self._lock:
            if self.fired is not None:
                return
            self.fired = reason
        self._stop(reason)

    def _run(self) -> None:
        while True:
            wait = _SLICE
            if self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self._fire(TIMEOUT)
                    return
                wait = min(wait, left)
            ready, _, _ = select.select([self._rfd, self._qfd_r], [], [], wait)
            if self._qfd_r in ready:
                return
            if self._rfd in ready:
                try:
                    data = os.read(self._rfd, 512)
                except BlockingIOError:
                    data = b""
                if signal.SIGINT in data:
                    self._fire(INTERRUPTED)
                    return

    def start(self) -> Watchdog:
        self._install_signal()
        self._thread = threading.Thread(target=self._run, name="exitlab-watchdog", daemon=True)
        self._thread.start()
        return self

    def finish(self) -> None:
        """Stop the thread and restore the signal state; safe to call twice."""
        if self._thread is not None:
            try:
                os.write(self._qfd_w, b"q")
            except OSError:
                pass
            self._thread.join()
            self._thread = None
        self._restore_signal()
        for fd in (self._rfd, self._wfd, self._qfd_r, self._qfd_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._rfd = self._wfd = self._qfd_r = self._qfd_w = -1

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.finish()
