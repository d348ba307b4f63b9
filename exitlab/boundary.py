"""The CLI's one error boundary: what a user sees when something goes wrong, and the exit status.

  0/1  the command's own answer (e.g. 1: the guest did not stop on hlt)
  1    an expected failure (`ExitlabError`): one line `exitlab CMD: error: ...` on stderr
  2    a usage error (argparse, `UsageError`)
  70   a bug: one line saying so and where the full traceback was written (EX_SOFTWARE)
  130  interrupted (Ctrl-C), after the command printed what it had

No Python traceback ever reaches stderr. docs/robustness.md states these promises.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from typing import Any

from emu.errors import ExitlabError, OutputError, UsageError
from exitlab import hostio

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BUG = 70
EXIT_INTERRUPTED = 130


def one_line(text: str) -> str:
    """Several lines (e.g. assembler diagnostics) joined so that the error stays one line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts) or "(no message)"


def _stderr(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr itself is gone: the exit status still tells


class _StdoutProxy:
    """sys.stdout while a command runs: a write error (disk full, I/O error) on the host's stdout
    becomes an `OutputError` naming stdout, so it is never mistaken for a bug or a guest fault."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        try:
            return int(self._inner.write(text))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise hostio.stdout_error(exc) from None

    def flush(self) -> None:
        try:
            self._inner.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise hostio.stdout_error(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _silence_stdout() -> None:
    """After stdout failed, make the interpreter's final flush harmless (no 'Exception ignored')."""
    if getattr(sys.stdout, "_inner", sys.stdout) is sys.__stdout__ and sys.__stdout__ is not None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.__stdout__.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def _flush_stdout() -> None:
    sys.stdout.flush()
    pending = hostio.take_pending_error()
    if pending is not None:
        raise pending


def write_crash_report(prog: str, exc: BaseException) -> str | None:
    """`exc`'s traceback in a file of the temp dir; its path (None if that failed)."""
    try:
        fd, path = tempfile.mkstemp(prefix="exitlab-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{prog}: internal error; command line {sys.argv!r}\n\n")
            fh.write("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def guard(name: str | Callable[[], str], body: Callable[[], int]) -> int:
    """Run `body` (a command) and turn every way it can end into one line and an exit status.

    `name` (or a function giving it, once the subcommand is known) starts every message."""

    def fail(status: int, message: str) -> int:
        try:
            sys.stdout.flush()  # what the command printed comes before the error line
        except (OSError, ExitlabError):
            _silence_stdout()
        _stderr(f"{name if isinstance(name, str) else name()}: {message}")
        return status

    hostio.reset()
    real_stdout, real_hook = sys.stdout, threading.excepthook
    sys.stdout = _StdoutProxy(real_stdout)  # type: ignore[assignment]
    threading.excepthook = _thread_bug_hook(name)
    try:
        status = body()
        _flush_stdout()
        return status
    except OutputError as exc:
        _silence_stdout()
        return fail(EXIT_ERROR, f"error: {one_line(str(exc))}")
    except UsageError as exc:
        return fail(EXIT_USAGE, f"error: {one_line(str(exc))}")
    except ExitlabError as exc:
        return fail(EXIT_ERROR, f"error: {one_line(str(exc))}")
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted")
    except SystemExit:
        raise  # argparse's own usage errors (status 2) and --help/--version (0)
    except BrokenPipeError:
        _silence_stdout()  # `exitlab ... | head`: the reader has what it wanted (as before: status 0)
        return 0
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing passes it as a traceback
        return _bug(name if isinstance(name, str) else name(), exc)
    finally:
        if isinstance(sys.stdout, _StdoutProxy):
            sys.stdout = real_stdout
        threading.excepthook = real_hook


def _thread_bug_hook(name: str | Callable[[], str]) -> Callable[[Any], None]:
    """A helper thread that dies (a watchdog, a progress bar) is a bug: one line, never a traceback."""

    def hook(args: Any) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        _bug(name if isinstance(name, str) else name(), args.exc_value, where="in a helper thread")

    return hook


def _bug(prog: str, exc: BaseException, where: str = "") -> int:
    path = write_crash_report(prog, exc)
    saved = f"full traceback in {path}" if path else "the traceback could not be saved"
    _stderr(
        f"{prog}: internal error{' ' + where if where else ''} (a bug in exitlab, please report it): "
        f"{type(exc).__name__}: {one_line(str(exc))} ({saved})"
    )
    return EXIT_BUG
