"""The host's standard output, kept apart from the guest.

The guest's console emits bytes; the host's stdout may be ASCII-only, a full disk or a closed
pipe. None of that is the guest's doing, so a console echo never raises into an engine hook
(where it would become a guest `device_error`): the bytes go to stdout's binary buffer as they
are, and a host write error is remembered and reported by the CLI's error boundary after the run.
"""

from __future__ import annotations

import sys

from emu.errors import OutputError

_pending: OSError | None = None


def echo_console(text: str) -> None:
    """Write console output (bytes carried as latin-1 text) to stdout byte for byte."""
    global _pending
    if _pending is not None:
        return  # stdout already failed once: keep the run going, the CLI reports it at the end
    out = sys.stdout
    try:
        buf = getattr(out, "buffer", None)
        if buf is not None:
            out.flush()
            buf.write(text.encode("latin-1"))
            buf.flush()
        else:
            encoding = getattr(out, "encoding", None) or "utf-8"
            out.write(text.encode(encoding, "backslashreplace").decode(encoding))
            out.flush()
    except OSError as exc:
        _pending = exc


def take_pending_error() -> OutputError | None:
    """The stdout write error an echo swallowed (and forget it), as the error the CLI prints."""
    global _pending
    exc, _pending = _pending, None
    if isinstance(exc, BrokenPipeError):
        raise exc  # the boundary treats a closed pipe as before: quietly, status 0
    return None if exc is None else stdout_error(exc)


def stdout_error(exc: OSError) -> OutputError:
    return OutputError(f"cannot write to standard output: {exc.strerror or exc}")


def reset() -> None:
    """Forget a swallowed error (a new command starts; in-process callers run several)."""
    global _pending
    _pending = None
