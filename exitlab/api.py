"""The functions behind `import exitlab` (re-exported there; import them from `exitlab`).

Each one is the library form of a CLI command and returns the dataclass that command prints:

| function            | CLI                          | returns                               |
|---------------------|------------------------------|---------------------------------------|
| `run`               | `exitlab run --json`         | `RunResult` (stop, exits, devices...) |
| `decode`            | `exitlab decode --json`      | `Access`                              |
| `emulate`           | `exitlab emulate --batch`    | `EmulateResult`                       |
| `replay`            | (trace -> C or Python path)  | `ReplayResult`                        |
| `validate`          | `exitlab validate --json`    | `Report`                              |
| `bench`             | `exitlab bench --json`       | `BenchResult`                         |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emu.access import Access
from emu.assemble import GuestImage, assemble, source_mode
from emu.board import Board
from emu.cpu import DeviceAccess
from emu.decode import decode as _decode
from emu.errors import ExitlabError
from emu.exits import ExitRecord
from emu.inputs import parse_hex
from emu.machine import RunResult, Stop, StopReason
from emu.platform import NOTIFY_MMIO, NOTIFY_MMIO_SIZE
from emu.replay import ReplayResult as PyReplayResult
from emu.trace import TraceWriter, read_trace
from exitlab.commands._version import version_info as _version_info
from exitlab.commands.emulate import run_case
from exitlab.commands.run import make_board, resolve_guest, run_image
from exitlab.tools import costs
from exitlab.tools import report as _report
from exitlab.tools.validate import Report
from exitlab.tools.validate import validate as _validate
from fastpath import replays

try:  # the C extension is optional at import time: only replay() needs it
    from fastpath.cengine import ReplayResult
except Exception:  # noqa: BLE001 - reported by replay() and version_info() when used
    ReplayResult = Any  # type: ignore[misc,assignment]

__all__ = [
    "Access",
    "BenchResult",
    "EmulateResult",
    "ExitRecord",
    "ExitlabError",
    "GuestImage",
    "ReplayResult",
    "Report",
    "RunResult",
    "Stop",
    "StopReason",
    "bench",
    "decode",
    "emulate",
    "load",
    "replay",
    "run",
    "validate",
    "version_info",
]

Guest = str | Path | GuestImage


def version_info() -> dict[str, Any]:
    """What `exitlab --version` prints, as a dict: exitlab, commit, unicorn, capstone, c_extension."""
    return _version_info()


def load(guest: Guest, mode: int | None = None) -> GuestImage:
    """A guest image from a file (.S/.s assembly, ELF, raw binary), a built-in example name
    (`kick_mmio`, `pv_kick`, ...) or assembly text (anything containing a newline).

    `mode` (16/32/64) overrides the snippet's `# exitlab: mode=N` line or the ELF class."""
    if isinstance(guest, GuestImage):
        return guest
    if isinstance(guest, str) and "\n" in guest:
        return assemble(guest, mode=mode or source_mode(guest) or 64, name="source.S")
    if str(guest) == "-":
        raise ExitlabError("'-' (stdin) is the CLI's; pass the assembly text itself")
    return resolve_guest(str(guest), mode)


def run(
    guest: Guest,
    *,
    path: str = "inplace",
    engine: str = "python",
    mode: int | None = None,
    max_insns: int | None = None,
    timeout: float | None = 10.0,
    devices: int | None = None,
    pci_offers: str = "rotate",
    trace: str | Path | None = None,
) -> RunResult:
    """Run a guest until hlt, the budget, the timeout or a fault (`exitlab run`).

    The result has `stop` (reason, rip, message, bytes), `exits` (counts by kind), `devices`,
    `regs`, `console` and, with the Python engine, every `ExitRecord` in `records`. A guest that
    faults is a result (`result.stop.is_error`), not an exception; bad arguments raise ExitlabError.
    `trace` writes the exits as JSON Lines (docs/trace-format.md)."""
    image = load(guest, mode)
    board = make_board(devices, pci_offers)
    writer = None
    if trace is not None:
        trace_path = "kvm" if engine == "kvm" else path
        writer = TraceWriter(trace, guest=image.name, mode=image.mode, path=trace_path)
    try:
        return run_image(image, board, engine, path, max_insns, timeout, writer,
                         keep_records=engine == "python")
    finally:
        if writer is not None:
            writer.close()


def _code(code: bytes | str) -> bytes:
    return parse_hex(code) if isinstance(code, str) else bytes(code)


def decode(code: bytes | str, mode: int = 64, rip: int = 0x1000) -> Access:
    """Decode one instruction into the access the generic path would emulate (`exitlab decode`).

    `code` is bytes or hex text ("66 89 02"); raises EmulationError (an ExitlabError) for an
    instruction the generic path does not handle."""
    return _decode(_code(code), mode, rip)


@dataclass(frozen=True)
class EmulateResult:
    """One instruction emulated by the generic path (`exitlab emulate --batch`, one case).

    `accesses` are the device accesses in order, `regs` every register after (integers; the CLI's
    JSON is kept as is in `to_json()`), `next_rip` where the guest resumes."""

    accesses: tuple[DeviceAccess, ...]
    regs: dict[str, int]
    next_rip: int
    _json: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The output line `exitlab emulate --batch` prints for this case."""
        return dict(self._json)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> EmulateResult:
        accesses = tuple(DeviceAccess(int(a["gpa"]), int(a["size"]), bool(a["write"]), int(a["value"]))
                         for a in obj["accesses"])
        regs = {k: v if isinstance(v, int) else int(str(v), 16) for k, v in obj["regs"].items()}
        return cls(accesses, regs, regs["rip"], obj)


def emulate(
    code: bytes | str,
    regs: dict[str, int] | None = None,
    *,
    mode: int = 64,
    rip: int = 0x1000,
    mmio: tuple[int, int] = (NOTIFY_MMIO, NOTIFY_MMIO_SIZE),
    read_value: int = 0,
) -> EmulateResult:
    """Emulate one instruction with the generic path against an MMIO window (`exitlab emulate`).

    Registers not given are 0; every device read returns `read_value`; Unicorn is not used. The
    case goes through exactly the code of `exitlab emulate --batch`, so the JSON is the CLI's."""
    case = {"bytes": _code(code).hex(" "), "mode": mode, "rip": rip, "regs": dict(regs or {}),
            "mmio": list(mmio), "read_value": read_value}
    return EmulateResult.from_json(run_case(case))


def replay(
    trace: str | Path | Sequence[ExitRecord],
    path: str = "pv-fast",
    *,
    engine: str = "c",
    board: Board | None = None,
) -> ReplayResult | PyReplayResult:
    """Run recorded exits (a trace file or ExitRecords) through one path in one call.

    `path` is a C path name: pio, hypercall, pv-fast, wildcard, subset, capstone, trap. The result
    has per-path counts, ns and TSC ticks, and each exit's result in `results()`. `engine="python"`
    replays through the Python paths (emu/replay.py: same counts and `to_json()` keys, `ticks` None,
    every exit's device accesses checked against the record); subset exists only in C. `board`
    (default: the default board) is the device model both engines replay into: give the board the
    trace was recorded on (e.g. `devices=64`'s) so port reads answer as they did live."""
    if engine == "python":  # a file is read by the replay itself, which then names file:line
        return replays.py_replay(trace if isinstance(trace, str | Path) else list(trace), path, board)
    if engine != "c":
        raise ExitlabError(f"unknown replay engine {engine!r} (c, python)")
    try:
        from fastpath import cengine
    except Exception as exc:  # noqa: BLE001 - say why, do not pretend
        raise ExitlabError(f"replay needs the C extension, which does not import: {exc}") from exc
    if path not in cengine.PATHS:
        raise ExitlabError(f"unknown C path {path!r} ({', '.join(cengine.PATH_NAMES)})")
    records = read_trace(trace) if isinstance(trace, str | Path) else list(trace)
    return replays.c_replay(records, path, board)


def validate(
    guest: Guest, *, mode: int | None = None, max_insns: int | None = None, timeout: float | None = 10.0,
    board: Board | None = None,
) -> Report:
    """Check a guest against the pv notify contract (`exitlab validate`): every exit in a pv
    window classified, plus a static sweep for contract sites and near misses.
    `report.passed()` is the CLI's exit status."""
    return _validate(load(guest, mode), board=board, max_insns=max_insns, timeout=timeout)


@dataclass
class BenchResult:
    """A bench sweep (`exitlab bench`): rows of ns/exit with the trap/tax split."""

    sweep: costs.Sweep

    @property
    def rows(self) -> list[costs.Row]:
        return self.sweep.rows

    def table(self) -> str:
        """The text table `exitlab bench` prints."""
        return _report.table(self.sweep)

    def to_json(self) -> dict[str, Any]:
        """The object `exitlab bench --json FILE` writes (schema exitlab-bench v1)."""
        return _report.to_json(self.sweep)

    def plot(self, path: str | Path) -> None:
        """Write the exit-cost chart (needs the `bench` extra: matplotlib)."""
        _report.plot(self.sweep, path)


def bench(
    mechanisms: Iterable[str] | None = None,
    *,
    engines: Iterable[str] = ("c",),
    modes: Iterable[str] = ("replay",),
    exits: int = 1000,
    repeat: int = 1,
    traps: Iterable[str] = ("mixed",),
) -> BenchResult:
    """A quick exit-cost sweep (defaults: every mechanism, C engine, replay, 1000 exits, once).

    Mechanisms: pio, mmio-generic, mmio-subset, pv-fast, wildcard, hypercall, assigned-port.
    traps: "mixed" (today's trapping) and/or "exit", "hook" (C live rows with every kind of exit
    trapped alike, as `exitlab bench --trap`)."""
    if exits < 1 or repeat < 1:
        raise ExitlabError("exits and repeat must be positive")
    mechs = list(costs.MECHANISMS)
    if mechanisms is not None:
        wanted = list(mechanisms)
        unknown = sorted(set(wanted) - set(costs.MECHANISM_NAMES))
        if unknown:
            known = ", ".join(costs.MECHANISM_NAMES)
            raise ExitlabError(f"unknown mechanism(s) {', '.join(unknown)}; one of {known}")
        mechs = [m for m in mechs if m.name in wanted]
    return BenchResult(costs.run_sweep(exits, repeat, mechs, list(engines), list(modes), traps=list(traps)))
