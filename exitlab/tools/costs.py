"""The exit-cost table: every way of notifying a device, measured side by side.

Each *mechanism* is one guest workload plus one host path. Each row is (mechanism, engine, mode):
engine `python` (the readable reference paths) or `c` (the cffi hot loop), mode `live` (a real
run under Unicorn) or `replay` (the same exits, recorded once, handled again without Unicorn, so
the path's own cost is seen apart from the emulator's). Every row is split into:
- *trap*: what any exit of that kind costs (a count-only handler, no decode, no device);
- *tax*: what the path adds to learn size, data and next RIP and reach the device (total - trap).
Rows run interleaved, `repeat` times, and report the median with min and max.

Trap parity: under Unicorn the exit kinds are not trapped alike by default ("mixed": a PIO exit is
a hook inside the translated block, an MMIO exit and a hypercall stop the engine and restart it), so
a ratio to PIO mixes trap mechanisms. The trap modes "exit" (every kind stops the engine and
restarts) and "hook" (every kind is handled inside a Unicorn hook at the exact RIP: MMIO in the
memory hook before the access, in-place style) add C live rows where all kinds are trapped the
same way, the like-for-like counterpart of the seed's KVM ratios (docs/bench.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from emu.assemble import GuestImage, assemble
from emu.board import Board, default_board
from emu.bus import Space
from emu.errors import ExitlabError
from emu.exits import ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.machine import Machine, MmioStyle
from emu.platform import ASSIGNED_PORT_BASE, DEFAULT_SYMBOLS, HC_MMIO_WRITE, NOTIFY_PORT
from fastpath import replays, workloads
from fastpath.fast import FastPath
from fastpath.hostpaths import TrapPath, WildcardPath

WORKLOADS = workloads.DIR
UNCLAIMED_PORT = 0x80  # POST-code port: nobody claims it here, so an OUT to it is a bare trap


@dataclass(frozen=True, slots=True)
class Mechanism:
    """One way to notify: guest workload, the Python and C host paths (None: no such path)."""

    name: str
    label: str
    workload: str
    kind: ExitKind
    py_path: str | None
    c_path: str | None
    seed_cycles: int | None = None
    port: int = NOTIFY_PORT


SEED_PIO_CYCLES = 1737
MECHANISMS: tuple[Mechanism, ...] = (
    Mechanism("pio", "PIO out dx, ax", "bench_pio", ExitKind.PIO_OUT, "pio", "pio", SEED_PIO_CYCLES),
    Mechanism(
        "mmio-generic",
        "MMIO movw, generic decode (Capstone)",
        "bench_mmio",
        ExitKind.MMIO_WRITE,
        "generic",
        "capstone",
        4341,
    ),
    Mechanism(
        "mmio-subset", "MMIO movw, C subset decoder", "bench_mmio", ExitKind.MMIO_WRITE, None, "subset"
    ),
    Mechanism(
        "pv-fast", "pv MMIO movw, fast path", "bench_mmio", ExitKind.MMIO_WRITE, "fast", "pv-fast", 1817
    ),
    Mechanism(
        "wildcard", "MMIO wildcard (address only)", "bench_mmio", ExitKind.MMIO_WRITE, "wildcard", "wildcard"
    ),
    Mechanism(
        "hypercall",
        "vmcall HC_MMIO_WRITE",
        "bench_hypercall",
        ExitKind.HYPERCALL,
        "hypercall",
        "hypercall",
        1566,
    ),
    Mechanism(
        "assigned-port",
        "assigned I/O port out dx, ax",
        "bench_pio",
        ExitKind.PIO_OUT,
        "pio",
        "pio",
        port=ASSIGNED_PORT_BASE,
    ),
)
MECHANISM_NAMES = tuple(m.name for m in MECHANISMS)

# How exits are trapped in a live run: mixed (today's default), exit, hook. "all" on the CLI = all three.
TRAP_MODES = ("mixed", "exit", "hook")
# trap mode -> (C MMIO style, C PIO/hypercall trap: fastpath.cengine.TRAPS)
C_TRAPS = {"mixed": ("exit", "mixed"), "exit": ("exit", "exit"), "hook": ("inplace", "hook")}


def workload_image(mech: Mechanism, kicks: int, trap: bool = False) -> GuestImage:
    """The mechanism's guest, assembled with KICKS (and, for the trap baseline, a bare target)."""
    symbols = dict(DEFAULT_SYMBOLS)
    symbols["KICKS"] = kicks
    symbols["PORT"] = UNCLAIMED_PORT if trap else mech.port
    symbols["HC"] = 0x7777 if trap else HC_MMIO_WRITE  # unknown number: the host only answers ENOSYS
    src = (WORKLOADS / f"{mech.workload}.S").read_text()
    return assemble(src, mode=64, name=f"{mech.workload}.S", symbols=symbols)


def bench_board() -> Board:
    """The default board plus the notify device on an assigned port (option 3)."""
    board = default_board()
    board.bus.add(Space.PIO, ASSIGNED_PORT_BASE, 2, board.notify)
    return board


def python_path(name: str, board: Board) -> Any:
    if name == "generic":
        return GenericPath()
    if name == "fast":
        return FastPath(windows=board.pv_windows)
    if name == "wildcard":
        return WildcardPath(board.bus, board.pv_windows)
    if name == "trap":
        return TrapPath()
    return None  # pio / hypercall: handled by the machine's own hooks


@dataclass(frozen=True, slots=True)
class Sample:
    exits: int
    ns: int
    ticks: int | None = None


# ---------------------------------------------------------------------------------- Python engine
def py_live(mech: Mechanism, kicks: int, trap: bool = False) -> Sample:
    board = bench_board()
    style = MmioStyle.EXIT if mech.kind in (ExitKind.MMIO_WRITE, ExitKind.MMIO_READ) else MmioStyle.INPLACE
    path = python_path("trap" if trap and style is MmioStyle.EXIT else (mech.py_path or ""), board)
    m = Machine(workload_image(mech, kicks, trap), board=board, mmio_style=style, path=path)
    t0 = time.perf_counter_ns()
    res = m.run(timeout=600)
    ns = time.perf_counter_ns() - t0
    if res.stop.is_error:
        raise ExitlabError(f"{mech.name} (python, live): {res.stop.reason.value}: {res.stop.message}")
    n = res.exits[mech.kind.value]
    if not trap:
        _check_kicks(mech, board, kicks)
    return Sample(n, ns)


def record_exits(mech: Mechanism, kicks: int) -> list[ExitRecord]:
    """Record the workload's exits once (in-place style: every record carries what an exit has)."""
    board = bench_board()
    m = Machine(workload_image(mech, kicks), board=board, mmio_style=MmioStyle.INPLACE, keep_records=True)
    res = m.run(timeout=600)
    if res.stop.is_error:
        raise ExitlabError(f"{mech.name}: recording failed: {res.stop.message}")
    return [r for r in res.records if r.kind is mech.kind]


def py_replay(mech: Mechanism, records: list[ExitRecord], trap: bool = False) -> Sample:
    """The records replayed by the Python replay engine (emu/replay.py) through the mechanism's
    path (its C name, fastpath/replays.py), or through the trap route for the baseline, into a fresh
    bench board; the time is the replay loop's own (record checks before it are not counted), and
    the accesses are not compared with the records here: the kick count below is the check."""
    board = bench_board()
    res = replays.py_replay(records, "trap" if trap else (mech.c_path or ""), board, keep_results=False,
                            check=False)
    if res.errors:
        raise ExitlabError(f"{mech.name} (python, replay): {res.errors} errors, first: {res.error.message()}"
                           if res.error else f"{mech.name} (python, replay): {res.errors} errors")
    if not trap:
        _check_kicks(mech, board, len(records))
    return Sample(res.n, res.ns)


def _check_kicks(mech: Mechanism, board: Board, kicks: int) -> None:
    """A measurement only counts if the device saw every kick: a fast wrong path is no result."""
    got = sum(board.notify.kicks.values())
    if got != kicks:
        raise ExitlabError(f"{mech.name}: the notify device counted {got} kicks, expected {kicks}")


# --------------------------------------------------------------------------------------- table
@dataclass
class Row:
    mechanism: Mechanism
    engine: str
    mode: str
    totals: list[float] = field(default_factory=list)  # ns/exit per repeat
    traps: list[float] = field(default_factory=list)
    ticks: list[float] = field(default_factory=list)
    exits: int = 0
    note: str = ""
    trap_mode: str = "mixed"  # how the exits were trapped (only C live rows have other modes)

    @property
    def key(self) -> str:
        key = f"{self.mechanism.name}/{self.engine}/{self.mode}"
        return key if self.trap_mode == "mixed" else f"{key}/{self.trap_mode}"

    @property
    def median(self) -> float:
        return statistics.median(self.totals) if self.totals else float("nan")

    @property
    def trap(self) -> float:
        return statistics.median(self.traps) if self.traps else float("nan")

    @property
    def tax(self) -> float:
        return self.median - self.trap

    @property
    def ticks_median(self) -> float | None:
        return statistics.median(self.ticks) if self.ticks else None


def seed_ratio(mech: Mechanism) -> float | None:
    return None if mech.seed_cycles is None else mech.seed_cycles / SEED_PIO_CYCLES


def plan_rows(
    mechanisms: Iterable[Mechanism],
    engines: Iterable[str],
    modes: Iterable[str],
    traps: Iterable[str] = ("mixed",),
) -> list[Row]:
    """The rows of a sweep: every (mechanism, engine, mode) with a path for today's trapping, then
    the C live rows of each other trap mode (replay has no trap; the Python engine traps one way)."""
    engines, modes, traps = list(engines), list(modes), list(traps)
    rows = []
    if "mixed" in traps:
        for mech in mechanisms:
            for engine in engines:
                for mode in modes:
                    path = mech.py_path if engine == "python" else mech.c_path
                    if path is None:
                        continue
                    rows.append(Row(mech, engine, mode))
    if "c" in engines and "live" in modes:
        for trap in traps:
            if trap != "mixed":
                rows.extend(Row(m, "c", "live", trap_mode=trap) for m in mechanisms if m.c_path is not None)
    return rows


# --------------------------------------------------------------------------------------- C engine
def _c_ctx(mech: Mechanism) -> Any:
    from fastpath import cengine

    ctx = cengine.CContext()
    ctx.cdata.dev.notify_port = mech.port  # the C board's notify device answers on this port
    if mech.c_path in ("capstone", "subset"):
        ctx.open_capstone()
    return ctx


def c_live(mech: Mechanism, kicks: int, trap: bool = False, trap_mode: str = "mixed") -> Sample:
    """One C live run; `trap_mode` says how every kind of exit is trapped (TRAP_MODES)."""
    from fastpath import cengine

    mmio = mech.kind is ExitKind.MMIO_WRITE
    style, pio_hc = C_TRAPS[trap_mode]
    m = Machine(workload_image(mech, kicks, trap), board=bench_board(), mmio_style=MmioStyle(style))
    m.init_regs()
    ctx = _c_ctx(mech)
    path = "trap" if trap and mmio else (mech.c_path or "")
    res = cengine.run_live(
        m, path=path, style=style, timeout=600, ctx=ctx, start_rip=m.image.entry, trap=pio_hc
    )
    where = "live" if trap_mode == "mixed" else f"live, trap {trap_mode}"
    if res.is_error:
        raise ExitlabError(f"{mech.name} (c, {where}): {res.stop} at rip={res.rip:#x}")
    n = res.kind_counts[cengine.KIND_CODES[mech.kind]]
    if not trap:
        _check_c_kicks(mech, ctx, kicks)
    return Sample(n, res.ns, res.ticks)


def c_replay(mech: Mechanism, packed: Any, trap: bool = False) -> Sample:
    """One timed C replay, after an untimed one on a scratch context: a live exit finds its
    registers and instruction hot in cache, so the timed pass must too. Without the warm-up the
    first pass of a row (the path; the trap baseline runs second) paid the cache misses the live
    rows run in between had caused, ~10-20 ns a record, and they showed up as tax."""
    from fastpath import cengine

    cengine.replay(packed, "trap" if trap else (mech.c_path or ""), ctx=_c_ctx(mech), keep_results=False)
    ctx = _c_ctx(mech)
    res = cengine.replay(packed, "trap" if trap else (mech.c_path or ""), ctx=ctx, keep_results=False)
    if res.errors:
        raise ExitlabError(f"{mech.name} (c, replay): {res.errors} errors, first: {res.error}")
    if not trap:
        _check_c_kicks(mech, ctx, res.n)
    return Sample(res.n, res.ns, res.ticks)


def _check_c_kicks(mech: Mechanism, ctx: Any, kicks: int) -> None:
    got = sum(ctx.kicks.values())
    if got != kicks:
        raise ExitlabError(f"{mech.name} (c): the notify device counted {got} kicks, expected {kicks}")


def c_available() -> str | None:
    """None when the C extension imports, else the reason it does not."""
    try:
        import fastpath.cengine  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no C rows, said out loud
        return f"{type(exc).__name__}: {exc}"
    return None


# ------------------------------------------------------------------------------------- the sweep
@dataclass
class Sweep:
    rows: list[Row]
    exits: int
    repeat: int
    seconds: float = 0.0
    tsc_ghz: float | None = None
    skipped: list[str] = field(default_factory=list)
    traps: list[str] = field(default_factory=lambda: ["mixed"])


def run_sweep(
    exits: int,
    repeat: int,
    mechanisms: Iterable[Mechanism] = MECHANISMS,
    engines: Iterable[str] = ("python", "c"),
    modes: Iterable[str] = ("live", "replay"),
    progress: Callable[[str], None] | None = None,
    traps: Iterable[str] = ("mixed",),
) -> Sweep:
    """Measure every row `repeat` times, interleaved (row order within a repeat is fixed), so slow
    drift of the machine spreads over all rows alike instead of biasing the last ones.
    `traps`: TRAP_MODES to measure; modes other than "mixed" add C live rows only."""
    mechanisms, engines, modes, traps = list(mechanisms), list(engines), list(modes), list(traps)
    unknown = [t for t in traps if t not in TRAP_MODES]
    if unknown or not traps:
        raise ExitlabError(f"trap mode(s) {', '.join(unknown) or '(none)'}: one of {', '.join(TRAP_MODES)}")
    skipped = []
    if "c" in engines and (why := c_available()) is not None:
        engines.remove("c")
        skipped.append(f"C engine rows skipped: the extension does not import ({why})")
    others = [t for t in traps if t != "mixed"]
    if others and not ("c" in engines and "live" in modes):
        skipped.append(f"trap mode(s) {', '.join(others)} skipped: they are C engine live rows only")
    rows = plan_rows(mechanisms, engines, modes, traps)
    if "mixed" not in traps:
        modes = [m for m in modes if m == "live"]  # no replay row to record for
    records: dict[str, list[ExitRecord]] = {}
    packed: dict[str, Any] = {}
    t0 = time.perf_counter()
    for mech in mechanisms:
        if "replay" in modes:
            records[mech.name] = record_exits(mech, exits)
            if "c" in engines:
                from fastpath.cengine import PackedTrace

                packed[mech.name] = PackedTrace(records[mech.name])
    for _ in range(repeat):
        for row in rows:
            mech = row.mechanism
            if row.engine == "python" and row.mode == "live":
                tot, trap = py_live(mech, exits), py_live(mech, exits, trap=True)
            elif row.engine == "python":
                recs = records[mech.name]
                tot, trap = py_replay(mech, recs), py_replay(mech, recs, trap=True)
            elif row.mode == "live":
                tm = row.trap_mode
                tot, trap = c_live(mech, exits, trap_mode=tm), c_live(mech, exits, trap=True, trap_mode=tm)
            else:
                tot, trap = c_replay(mech, packed[mech.name]), c_replay(mech, packed[mech.name], trap=True)
            row.exits = tot.exits
            row.totals.append(tot.ns / tot.exits)
            row.traps.append(trap.ns / trap.exits)
            if tot.ticks is not None:
                row.ticks.append(tot.ticks / tot.exits)
            if progress is not None:
                progress(row.key)
    sweep = Sweep(rows, exits, repeat, time.perf_counter() - t0, skipped=skipped, traps=traps)
    ratios = [statistics.median(r.ticks) / r.median for r in rows if r.ticks and r.median > 0]
    sweep.tsc_ghz = statistics.median(ratios) if ratios else None
    return sweep
