"""Exit traces as JSON Lines, schema `exitlab-trace` version 1.

Line 1 is a header: {"schema": "exitlab-trace", "version": 1, "guest": ..., "mode": ..., "style": ...}.
Every further line is one ExitRecord:
  {"kind": "mmio_write", "rip": int, "mode": 64, "addr": int, "insn": "66 89 02",
   "regs": {"rax": int, ..., "gs_base": int}, "truth": {"size": int, "value": int}}
`addr` is the GPA (MMIO), the port (PIO) or the hypercall number; `truth` is what Unicorn observed
and is never an input to a decoder (for PIO it is also what the exit itself reports).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from emu.errors import ExitlabError
from emu.exits import REG_NAMES, ExitKind, ExitRecord

SCHEMA = "exitlab-trace"
VERSION = 1


class TraceError(ExitlabError):
    """A trace file that does not follow the schema; names the line."""


def record_to_json(rec: ExitRecord) -> dict[str, Any]:
    return {
        "kind": rec.kind.value,
        "rip": rec.rip,
        "mode": rec.mode,
        "addr": rec.addr,
        "insn": rec.insn.hex(" "),
        "regs": dict(zip(REG_NAMES, rec.regs, strict=False)),
        "truth": {"size": rec.truth_size, "value": rec.truth_value},
    }


def record_from_json(obj: dict[str, Any]) -> ExitRecord:
    regs = obj.get("regs", {})
    unknown = set(regs) - set(REG_NAMES)
    if unknown:
        raise ValueError(f"unknown registers {sorted(unknown)}")
    truth = obj.get("truth", {})
    return ExitRecord(
        kind=ExitKind(obj["kind"]),
        rip=int(obj["rip"]),
        mode=int(obj["mode"]),
        addr=int(obj["addr"]),
        insn=bytes.fromhex(obj.get("insn", "")),
        regs=tuple(int(regs.get(n, 0)) for n in REG_NAMES),
        truth_size=int(truth.get("size", 0)),
        truth_value=int(truth.get("value", 0)),
    )


class TraceWriter:
    """Streams records to a file as they happen, so a long run's memory does not grow."""

    def __init__(self, file: str | Path, **header: Any) -> None:
        self._fh: IO[str] = open(file, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._fh.write(json.dumps({"schema": SCHEMA, "version": VERSION, **header}) + "\n")
        self.count = 0

    def write(self, rec: ExitRecord) -> None:
        self._fh.write(json.dumps(record_to_json(rec), separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_trace(path: str | Path) -> Iterator[ExitRecord]:
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError:
            raise TraceError(f"{path}:1: not a JSON trace header") from None
        if not isinstance(header, dict) or header.get("schema") != SCHEMA:
            raise TraceError(f"{path}:1: not an {SCHEMA} file")
        if header.get("version") != VERSION:
            raise TraceError(
                f"{path}:1: trace version {header.get('version')} (this exitlab reads {VERSION})"
            )
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                yield record_from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
                raise TraceError(f"{path}:{lineno}: bad exit record ({exc})") from None


def read_trace(path: str | Path) -> list[ExitRecord]:
    return list(iter_trace(path))


def write_trace(path: str | Path, records: Iterable[ExitRecord], **header: Any) -> int:
    with TraceWriter(path, **header) as w:
        for rec in records:
            w.write(rec)
        return w.count
