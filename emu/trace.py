"""Exit traces as JSON Lines, schema `exitlab-trace` version 1.

Line 1 is a header: {"schema": "exitlab-trace", "version": 1, "guest": ..., "mode": ..., "style": ...}.
Every further line is one ExitRecord:
  {"kind": "mmio_write", "rip": int, "mode": 64, "addr": int, "insn": "66 89 02",
   "regs": {"rax": int, ..., "gs_base": int}, "truth": {"size": int, "value": int}}
and, only for SSE/AVX/MMX moves and SMSW, "vec": {"xmm1" | "ymm1" | "mm1" | "cr0": int} (the vector
register or CR0 the instruction needs, emu/vecstate.py; older traces simply lack it).
`addr` is the GPA (MMIO), the port (PIO) or the hypercall number; `truth` is what Unicorn observed
and is never an input to a decoder (for PIO it is also what the exit itself reports).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from emu.errors import ExitlabError, InputError, OutputError
from emu.exits import MAX_INSN_LEN, REG_NAMES, ExitKind, ExitRecord
from emu.inputs import iter_lines, loads_strict
from emu.limits import TRACE_LINE_MAX
from emu.outfile import OutputFile
from emu.vecstate import VEC_NAME, width

SCHEMA = "exitlab-trace"
VERSION = 1


class TraceError(ExitlabError):
    """A trace file that does not follow the schema; names the line."""


def record_to_json(rec: ExitRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": rec.kind.value,
        "rip": rec.rip,
        "mode": rec.mode,
        "addr": rec.addr,
        "insn": rec.insn.hex(" "),
        "regs": dict(zip(REG_NAMES, rec.regs, strict=False)),
        "truth": {"size": rec.truth_size, "value": rec.truth_value},
    }
    if rec.vec:  # optional: the vector registers / CR0 an SSE/AVX/MMX move or SMSW needs
        out["vec"] = dict(rec.vec)
    return out


def _vec(obj: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """The optional "vec" object: {"xmm1": int, "ymm2": int, "mm0": int, "cr0": int}."""
    vec = obj.get("vec", {})
    if not isinstance(vec, dict):
        raise ValueError(f"'vec' must be an object (got {json.dumps(vec)[:40]})")
    out = []
    for name in vec:
        if not isinstance(name, str) or not VEC_NAME.match(name):
            raise ValueError(f"'vec' names xmm0-15, ymm0-15, mm0-7 or cr0 (got {json.dumps(name)})")
        out.append((name, _int(vec, name, 0, (1 << width(name)) - 1, "vec ")))
    return tuple(out)


_KINDS = {k.value: k for k in ExitKind}
_PIO = (ExitKind.PIO_IN, ExitKind.PIO_OUT)
_MMIO = (ExitKind.MMIO_READ, ExitKind.MMIO_WRITE)
_U64 = (1 << 64) - 1
_MMIO_SIZE_MAX = 64  # the widest single access (AVX-512 store)


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, where: str = "") -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}{key!r} must be an integer (got {json.dumps(value)})")
    if not lo <= value <= hi:
        raise ValueError(f"{where}{key!r} = {value} is out of range {lo}..{hi:#x}")
    return value


def record_from_json(obj: Any) -> ExitRecord:
    """One exit record, checked against the schema (ValueError says which field and why).

    This is the one gate between a trace file and every consumer (Python paths, the C packer),
    so nothing downstream has to distrust a size, a mode or a register."""
    if not isinstance(obj, dict):
        raise ValueError(f"an exit record must be a JSON object (got {json.dumps(obj)[:40]})")
    kind = _KINDS.get(obj.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise ValueError(f"'kind' must be one of {', '.join(_KINDS)} (got {json.dumps(obj.get('kind'))})")
    rip = _int(obj, "rip", 0, _U64)
    mode = obj.get("mode")
    if isinstance(mode, bool) or mode not in (16, 32, 64):
        raise ValueError(f"'mode' must be 16, 32 or 64 (got {json.dumps(mode)})")
    addr = _int(obj, "addr", 0, 0xFFFF if kind in _PIO else _U64)
    insn_text = obj.get("insn", "")
    if not isinstance(insn_text, str):
        raise ValueError(f"'insn' must be a hex string (got {json.dumps(insn_text)})")
    insn = bytes.fromhex(insn_text)
    if len(insn) > MAX_INSN_LEN:
        raise ValueError(f"'insn' has {len(insn)} bytes (an instruction has at most {MAX_INSN_LEN})")
    regs = obj.get("regs", {})
    if not isinstance(regs, dict):
        raise ValueError(f"'regs' must be an object (got {json.dumps(regs)[:40]})")
    unknown = set(regs) - set(REG_NAMES)
    if unknown:
        raise ValueError(f"unknown registers {sorted(unknown)}")
    values = tuple(_int(regs, n, 0, _U64, "register ") if n in regs else 0 for n in REG_NAMES)
    truth = obj.get("truth", {})
    if not isinstance(truth, dict):
        raise ValueError(f"'truth' must be an object (got {json.dumps(truth)[:40]})")
    if kind in _PIO:
        size = _int(truth, "size", 1, 4, "truth ") if "size" in truth else 0
        if size not in (0, 1, 2, 4):
            raise ValueError(f"a port I/O size is 1, 2 or 4 bytes (got {size})")
    elif kind in _MMIO:
        size = _int(truth, "size", 0, _MMIO_SIZE_MAX, "truth ") if "size" in truth else 0
    else:
        size = _int(truth, "size", 0, 8, "truth ") if "size" in truth else 0
    value = _int(truth, "value", 0, (1 << (8 * max(size, 8))) - 1, "truth ") if "value" in truth else 0
    return ExitRecord(
        kind=kind, rip=rip, mode=mode, addr=addr, insn=insn, regs=values, truth_size=size, truth_value=value,
        vec=_vec(obj),
    )


class TraceWriter:
    """Streams records to a file as they happen, so a long run's memory does not grow.

    The file is an `OutputFile` (emu/outfile.py): written beside its final name and renamed by
    `close()`, so a failed or aborted run leaves nothing half-written. A host write error (disk
    full) is remembered, not raised: `write` runs inside engine hooks, where an exception would be
    reported as a guest fault. `close()` then raises `OutputError` naming the file."""

    def __init__(self, file: str | Path | OutputFile, **header: Any) -> None:
        self.out = file if isinstance(file, OutputFile) else OutputFile(file, "trace")
        self._fh: IO[str] = self.out.open("w")
        self.count = 0
        self.error: OSError | None = None
        self._emit(json.dumps({"schema": SCHEMA, "version": VERSION, **header}) + "\n")

    def _emit(self, line: str) -> None:
        if self.error is not None:
            return
        try:
            self._fh.write(line)
        except OSError as exc:
            self.error = exc

    def write(self, rec: ExitRecord) -> None:
        self._emit(json.dumps(record_to_json(rec), separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        """Finish the file and move it into place; `OutputError` if any write failed."""
        if self.error is not None:
            self.out.discard()
            raise OutputError(
                f"cannot write trace {self.out.path}: {self.error.strerror or self.error} "
                f"(after {self.count} records"
                + ("" if self.out.direct else "; nothing was left under that name") + ")"
            )
        self.out.commit()

    def abort(self) -> None:
        """Drop the file (the run failed before it had anything worth keeping)."""
        self.out.discard()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _check_header(header: Any, path: str | Path) -> None:
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise TraceError(f"{path}:1: not an {SCHEMA} file")
    version = header.get("version")
    if type(version) is not int or version != VERSION:
        raise TraceError(f"{path}:1: trace version {json.dumps(version)} (this exitlab reads {VERSION})")
    mode = header.get("mode", 64)
    if isinstance(mode, bool) or mode not in (16, 32, 64):
        raise TraceError(f"{path}:1: header 'mode' must be 16, 32 or 64 (got {json.dumps(mode)})")


def iter_trace(path: str | Path) -> Iterator[ExitRecord]:
    """Records of a trace file, each checked by `record_from_json`; the first bad line is a
    `TraceError` naming file:line (lines are at most TRACE_LINE_MAX bytes)."""
    for _lineno, rec in iter_trace_lines(path):
        yield rec


def iter_trace_lines(path: str | Path) -> Iterator[tuple[int, ExitRecord]]:
    """`iter_trace` with each record's line number, so a consumer (a replay) can name file:line."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a trace file") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace ({exc.strerror or exc})") from None
    with fh:
        seen_header = False
        try:
            for lineno, line in iter_lines(fh, TRACE_LINE_MAX, str(path)):
                if lineno == 1:
                    try:
                        header = loads_strict(line)
                    except ValueError:
                        raise TraceError(f"{path}:1: not a JSON trace header") from None
                    _check_header(header, path)
                    seen_header = True
                    continue
                if not line.strip():
                    continue
                try:
                    rec = record_from_json(loads_strict(line))
                except ValueError as exc:
                    raise TraceError(f"{path}:{lineno}: bad exit record ({exc})") from None
                yield lineno, rec
        except InputError as exc:
            raise TraceError(str(exc)) from None
        except IsADirectoryError:
            raise TraceError(f"{path}: is a directory, not a trace file") from None
        if not seen_header:
            raise TraceError(f"{path}:1: empty file, not a JSON trace header")


def read_trace(path: str | Path) -> list[ExitRecord]:
    return list(iter_trace(path))


def write_trace(path: str | Path, records: Iterable[ExitRecord], **header: Any) -> int:
    with TraceWriter(path, **header) as w:
        for rec in records:
            w.write(rec)
        return w.count
