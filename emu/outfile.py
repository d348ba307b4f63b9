"""Files exitlab writes (traces, `--json FILE`, `--plot`, reproducers): all or nothing.

  * `OutputFile(path, what, inputs)` checks the path at once, before anything runs or is opened:
    not empty, not a directory, its directory exists, and it is not one of the inputs.
  * Writing goes to a temporary file in the same directory; `commit()` renames it over the final
    name, so a reader never sees half a file, two concurrent writers never interleave (the last
    rename wins, whole), and a failure (disk full, an error, Ctrl-C before commit) leaves nothing
    under the final name and an existing file untouched.
  * Existing non-regular files (`/dev/null`, `/dev/full`, a FIFO) are written directly: there is
    no renaming over a device, and a write error still surfaces.
  * Every OS error becomes an `OutputError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from emu.errors import OutputError


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_output_path(path: str | Path, what: str = "output", inputs: tuple[str | Path, ...] = ()) -> bool:
    """Raise `OutputError` unless `path` can be written; True when it is a device/FIFO (direct)."""
    text = str(path)
    if text == "":
        raise OutputError(f"{what}: empty file name")
    p = Path(text)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{what} {p}: {_reason(exc)}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{what} {p}: is a directory")
    for src in inputs:
        if str(src) in ("", "-") or st is None:
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(p, src):
                raise OutputError(f"{what} {p}: is also an input ({src}); refusing to overwrite it")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return True
    parent = p.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {p}: directory {parent} is not writable")
    return False


class OutputFile:
    """One output, checked now, written to a temp file beside it, renamed on `commit()`."""

    def __init__(self, path: str | Path, what: str = "output", inputs: tuple[str | Path, ...] = ()) -> None:
        self.path = Path(path)
        self.what = what
        self.direct = check_output_path(path, what, inputs)
        self._tmp: Path | None = None
        self._fh: IO[Any] | None = None

    def _error(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self.what} {self.path}: {_reason(exc)}")

    def temp_path(self) -> Path:
        """Create the temporary file (same directory, same suffix) and return its path."""
        if self.direct:
            return self.path
        if self._tmp is None:
            try:
                fd, name = tempfile.mkstemp(
                    dir=self.path.parent, prefix=f".{self.path.name}.", suffix=f".tmp{self.path.suffix}"
                )
                os.close(fd)
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(name, 0o666 & ~mask)
            except OSError as exc:
                raise self._error(exc) from None
            self._tmp = Path(name)
        return self._tmp

    def open(self, mode: str = "w") -> IO[Any]:
        """A stream to write ('w' text UTF-8 or 'wb'); write errors on it are OSError (see `guard`)."""
        target = self.temp_path()
        try:
            self._fh = open(target, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115
        except OSError as exc:
            self.discard()
            raise self._error(exc) from None
        return self._fh

    def commit(self) -> None:
        """Close and rename into place; on any error nothing is left under the final name."""
        try:
            if self._fh is not None:
                fh, self._fh = self._fh, None
                fh.close()
            if self._tmp is not None:
                os.replace(self._tmp, self.path)
                self._tmp = None
        except OSError as exc:
            self.discard()
            raise self._error(exc) from None

    def discard(self) -> None:
        """Drop what was written (the final name keeps what it had before)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()

    @contextlib.contextmanager
    def writing(self, mode: str = "w") -> Iterator[IO[Any]]:
        """`with out.writing() as fh:` commits on success, discards on any exception."""
        fh = self.open(mode)
        try:
            yield fh
        except OSError as exc:
            self.discard()
            raise self._error(exc) from None
        except BaseException:
            self.discard()
            raise
        self.commit()

    @contextlib.contextmanager
    def writing_path(self) -> Iterator[Path]:
        """For libraries that want a file name (matplotlib): a temp path with the right suffix."""
        target = self.temp_path()
        try:
            yield target
        except OSError as exc:
            self.discard()
            raise self._error(exc) from None
        except BaseException:
            self.discard()
            raise
        self.commit()

    def write_text(self, text: str) -> None:
        with self.writing() as fh:
            fh.write(text)

    def write_bytes(self, data: bytes) -> None:
        with self.writing("wb") as fh:
            fh.write(data)


def write_text_atomic(path: str | Path, text: str, what: str = "output") -> None:
    """Write `text` to `path` all or nothing (see OutputFile)."""
    OutputFile(path, what).write_text(text)


def check_output_dir(path: str | Path, what: str = "output directory") -> None:
    """A directory exitlab will create files in: it exists as a directory, or can be created."""
    p = Path(path)
    if str(path) == "":
        raise OutputError(f"{what}: empty name")
    if p.exists():
        if not p.is_dir():
            raise OutputError(f"{what} {p}: exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutputError(f"{what} {p}: is not writable")
        return
    parent = next((a for a in p.absolute().parents if a.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {p}: cannot be created (nearest existing parent: {parent})")
