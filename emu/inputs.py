"""Reading what users hand exitlab: bounded, strict, and with errors that name the input.

Every file or stream is read through here so that no input can make exitlab read forever
(`/dev/zero`), swallow a directory, or hand a non-UTF-8 byte or a JSON `Infinity` to code that
does not expect one. Limits live in emu/limits.py; each error states the limit it hit.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from emu.errors import ExitlabError, InputError
from emu.limits import JSON_DEPTH_MAX


def _limit_text(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit} bytes"


def parse_hex(text: str) -> bytes:
    """Instruction bytes (CLI and batch-case spelling) from '66 89 02', '668902' or '0x66,0x89'."""
    cleaned = text.replace(",", " ").replace("0x", " ").replace("\\x", " ")
    try:
        return bytes.fromhex("".join(cleaned.split()))
    except ValueError as exc:
        raise ExitlabError(f"not hex bytes: {text!r}") from exc


def read_stream(fh: IO[bytes], limit: int, name: str) -> bytes:
    """At most `limit` bytes from an open binary stream; more is an error naming the limit."""
    try:
        data = fh.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise InputError(f"{name}: larger than the {_limit_text(limit)} limit for this input")
    return data


def read_file(path: str | Path, limit: int, what: str = "input") -> bytes:
    """The bytes of a file (not a directory), at most `limit` of them ('-' is stdin)."""
    if str(path) == "-":
        return read_stdin(limit, what)
    p = Path(path)
    if str(path) == "":
        raise InputError(f"{what}: empty file name")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a {what} file")
    try:
        with open(p, "rb") as fh:
            return read_stream(fh, limit, str(p))
    except FileNotFoundError:
        raise InputError(f"{p}: no such {what} file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read {what} ({exc.strerror or exc})") from None


def read_stdin(limit: int, what: str = "input") -> bytes:
    return read_stream(binary_stdin(), limit, "<stdin>")


class _EncodedText:
    """A text stream (tests, embedding) seen as bytes, for readers that want `readline(limit)`."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text

    def readline(self, limit: int = -1) -> bytes:
        return self._text.readline(limit).encode("utf-8", "surrogateescape")

    def read(self, limit: int = -1) -> bytes:
        return self._text.read(limit).encode("utf-8", "surrogateescape")


def binary_stdin() -> IO[bytes]:
    """stdin as bytes (its buffer, or the text stream a test put there, encoded)."""
    buf = getattr(sys.stdin, "buffer", None)
    return buf if buf is not None else _EncodedText(sys.stdin)  # type: ignore[return-value]


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text or an error naming the first bad byte's line and offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{name}:{line}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"
        ) from None


def iter_lines(fh: IO[bytes], limit: int, name: str) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) for each line; a line longer than `limit` ends the stream with an error
    (there is no telling where the next line starts without reading on, maybe forever)."""
    number = 0
    while True:
        try:
            line = fh.readline(limit + 1)
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            raise InputError(f"{name}:{number}: line longer than the {_limit_text(limit)} limit")
        yield number, line


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number exitlab accepts")


def _depth(obj: Any, limit: int) -> None:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            raise ValueError(f"nested deeper than {limit} levels")
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a double")
    return value


def loads_strict(text: str | bytes, max_depth: int = JSON_DEPTH_MAX) -> Any:
    """json.loads that refuses NaN/Infinity, numbers that overflow, huge integers and deep nesting
    with a ValueError (never RecursionError, never a float `inf`)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    # cheap pre-check so a 100 000-deep '[[[[...' never reaches the recursive parser
    opened = 0
    deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            opened += 1
            deepest = max(deepest, opened)
            if deepest > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
        elif ch in "]}":
            opened -= 1
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    _depth(obj, max_depth)
    return obj

