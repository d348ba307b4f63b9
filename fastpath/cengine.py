"""Python face of the C hot loop (`fastpath._exitlab_c`): subset decoder, length function, paths,
replay of recorded exits and live runs with C hooks on a Unicorn engine.

Everything per exit happens in C; Python only packs inputs and reads counters afterwards.
`unicorn` and `capstone` are imported before the extension so the dynamic loader resolves
libunicorn.so.2 / libcapstone.so.5 by SONAME from the libraries those wheels already loaded.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import capstone  # noqa: F401  (loads libcapstone.so.5 before the extension)
import unicorn  # noqa: F401  (loads libunicorn.so.2 before the extension)

from emu.board import default_board
from emu.cpu import DeviceAccess
from emu.errors import ExitlabError
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.interrupt import Watchdog
from emu.machine import Machine, RunResult, Stop, StopReason
from emu.opmap import SUBSET_KINDS  # enum xl_mmio_kind (generated from emu/x86-opcode-map.txt)
from emu.replay import totals_json
from emu.replaycheck import record_problem
from emu.trace import iter_trace
from fastpath._exitlab_c import ffi, lib
from fastpath.devtab import DeviceTable

PATHS: dict[str, int] = {
    "pio": 0,
    "hypercall": 1,
    "pv-fast": 2,
    "wildcard": 3,
    "subset": 4,
    "capstone": 5,
    "trap": 6,
}
PATH_NAMES: tuple[str, ...] = tuple(PATHS)
KIND_CODES: dict[ExitKind, int] = {
    ExitKind.MMIO_WRITE: 0,
    ExitKind.MMIO_READ: 1,
    ExitKind.PIO_OUT: 2,
    ExitKind.PIO_IN: 3,
    ExitKind.HYPERCALL: 4,
}
STATUS_NAMES: tuple[str, ...] = (
    "ok",
    "not_mine",
    "decode",
    "unsupported",
    "fetch",
    "nomem",
    "mismatch",
    "length",
    "kind",
    "mode",
    "unmapped",
    "record",
    "gp",
    "de",
)
# Stop reasons use the Python machine's names (emu.machine.StopReason) where one exists.
STOP_NAMES: tuple[str, ...] = (
    "none",
    "hlt",
    "budget",
    "timeout",
    "unmapped",
    "invalid_insn",
    "triple_fault",
    "emulation_error",
    "max_exits",
    "uc_error",
    "interrupted",
)
STOP_CODES: dict[str, int] = {name: i for i, name in enumerate(STOP_NAMES)}
# live.c's stop codes that are not the taxonomy's own names (emu/stop.py, SEMANTICS rule 12)
C_STOP_REASONS: dict[str, str] = {"max_exits": "budget", "uc_error": "triple_fault", "none": "triple_fault"}
# How port I/O and hypercall exits are trapped in a live run (enum xl_trap, live.h); MMIO is by style.
TRAPS: dict[str, int] = {"mixed": 0, "exit": 1, "hook": 2}
SEGMENTS: tuple[str, ...] = ("", "es", "cs", "ss", "ds", "fs", "gs")
NREGS = len(REG_NAMES)
RECORD = struct.Struct("<BBBB15s5xQQQ20Q")  # struct xl_record
HASH_INIT = 0xCBF29CE484222325
_M64 = (1 << 64) - 1

assert RECORD.size == ffi.sizeof("struct xl_record") == 208


# "generic" is the role (the full-decode exit path) on every engine; `capstone` is the C path's
# own name, kept (docs/c-capstone-path.md "Naming").
PATH_ALIASES: dict[str, str] = {"generic": "capstone"}


def path_id(path: str) -> int:
    try:
        return PATHS[PATH_ALIASES.get(path, path)]
    except KeyError:
        raise ValueError(f"unknown C path {path!r} (one of {', '.join((*PATHS, *PATH_ALIASES))})") from None


def access_hash(accesses: Iterable[DeviceAccess]) -> int:
    """The C result's `acc_hash` of a sequence of device accesses (FNV-style, in order)."""
    h = HASH_INIT
    for a in accesses:
        for x in (a.gpa, a.size | (int(a.write) << 8), a.value):
            h = ((h ^ (x & _M64)) * 0x100000001B3) & _M64
    return h


# ------------------------------------------------------------------------------------- decoder
@dataclass(frozen=True, slots=True)
class SubsetInsn:
    kind: str
    size: int
    dst_size: int
    reg: int
    hi8: bool
    length: int
    rep: int
    seg: str
    addr_size: int
    base: int | None  # 0-15, 16 = RIP, None
    index: int | None
    scale: int
    disp: int
    imm: int


def decode_subset(insn: bytes, mode: int) -> SubsetInsn | None:
    """The C subset decoder; None means "not mine"."""
    out = ffi.new("struct xl_insn *")
    n = lib.xl_decode_subset(insn, len(insn), mode, out)
    if n <= 0:
        return None
    return SubsetInsn(
        kind=SUBSET_KINDS[out.kind],
        size=out.size,
        dst_size=out.dst_size,
        reg=out.reg,
        hi8=bool(out.hi8),
        length=out.len,
        rep=out.rep,
        seg=SEGMENTS[out.seg],
        addr_size=out.addr_size,
        base=None if out.base == 0xFF else out.base,
        index=None if out.index == 0xFF else out.index,
        scale=out.scale,
        disp=out.disp,
        imm=out.imm,
    )


def insn_length(insn: bytes, mode: int) -> int:
    """Length of the instruction at insn[0], or -1 (invalid or not covered)."""
    return int(lib.xl_insn_length(insn, len(insn), mode))


# ------------------------------------------------------------------------------------- context
@dataclass(frozen=True, slots=True)
class CError:
    status: str
    path: str
    kind: int
    rip: int
    addr: int
    insn: bytes

    def message(self) -> str:
        return (
            f"C path {self.path!r}: {self.status} at rip={self.rip:#x} addr={self.addr:#x} "
            f"bytes={self.insn.hex(' ')}"
        )


class CContext:
    """One flat C context: devices of the default board, per-path counts, the first error and the
    Capstone handles (opened once).  Reused across exits and runs; never allocates per exit."""

    def __init__(self) -> None:
        self._c = ffi.new("struct xl_ctx *")
        lib.xl_ctx_init(self._c)
        self._c = ffi.gc(self._c, lib.xl_ctx_close)

    @property
    def cdata(self) -> Any:
        return self._c

    def open_capstone(self) -> None:
        if lib.xl_ctx_open_capstone(self._c) != 0:
            raise RuntimeError("capstone: cs_open failed")

    def reset_counts(self) -> None:
        lib.xl_ctx_reset_counts(self._c)

    @property
    def counts(self) -> dict[str, int]:
        return {name: int(self._c.counts[i]) for i, name in enumerate(PATH_NAMES)}

    @property
    def kicks(self) -> dict[int, int]:
        return {q: int(n) for q, n in enumerate(self._c.dev.kicks) if n}

    @property
    def fallbacks(self) -> int:
        return int(self._c.fallbacks)

    @property
    def violations(self) -> int:
        return int(self._c.violations)

    @property
    def errors(self) -> int:
        return int(self._c.errors)

    @property
    def error(self) -> CError | None:
        e = self._c.err
        if e.status == 0:
            return None
        return CError(
            STATUS_NAMES[e.status],
            PATH_NAMES[e.path],
            e.kind,
            int(e.rip),
            int(e.addr),
            bytes(ffi.buffer(e.bytes, e.len)),
        )

    @property
    def regs_mem(self) -> bytes:
        return bytes(ffi.buffer(self._c.dev.regs))

    def set_regs_mem(self, data: bytes, offset: int = 0) -> None:
        ffi.memmove(self._c.dev.regs + offset, data, len(data))

    @property
    def console(self) -> bytes:
        n = min(int(self._c.dev.console_len), len(self._c.dev.console))
        return bytes(ffi.buffer(self._c.dev.console, n))

    def state(self) -> dict[str, Any]:
        d = self._c.dev
        return {
            "counts": self.counts,
            "fallbacks": self.fallbacks,
            "violations": self.violations,
            "errors": self.errors,
            "notify": {
                "kicks": {str(q): n for q, n in self.kicks.items()},
                "kicks_other": int(d.kicks_other),
                "writes": int(d.notify_writes),
                "reads": int(d.notify_reads),
                "unmatched": int(d.notify_unmatched),
            },
            "regs": {"reads": int(d.regs_reads), "writes": int(d.regs_writes)},
            "console": {"bytes": int(d.console_len)},
            "unclaimed": {
                "mmio_read": int(d.unclaimed_mmio_read),
                "mmio_write": int(d.unclaimed_mmio_write),
                "pio_in": int(d.unclaimed_pio_in),
                "pio_out": int(d.unclaimed_pio_out),
            },
        }


# ------------------------------------------------------------------------------------- records
class RecordError(ValueError):
    """An exit record that cannot enter C (the C side rejects it too, as status "record")."""


_MODES = (16, 32, 64)


def check_record(rec: ExitRecord, index: int = 0) -> None:
    """Every record entering C: a known kind, mode 16/32/64, at most 15 instruction bytes and, for
    port I/O, an access size of 1, 2 or 4 bytes (emu.replaycheck.record_problem: the Python replay
    refuses the same records).  RecordError names the record's index."""
    problem = record_problem(rec)
    if problem is not None:
        raise RecordError(f"exit record {index}: {problem}")


def _pack_into(buf: bytearray, off: int, rec: ExitRecord, index: int = 0) -> None:
    check_record(rec, index)
    insn = rec.insn
    pio = rec.kind in (ExitKind.PIO_OUT, ExitKind.PIO_IN)
    try:
        regs = [r & _M64 for r in rec.regs]
        regs[16] = rec.rip & _M64  # the record's rip is authoritative
        RECORD.pack_into(
            buf,
            off,
            KIND_CODES[rec.kind],
            rec.mode,
            rec.truth_size if pio else 0,
            len(insn),
            insn,
            rec.rip & _M64,
            rec.addr & _M64,
            (rec.truth_value & _M64) if pio else 0,
            *regs,
        )
    except (TypeError, struct.error) as exc:
        raise RecordError(f"exit record {index}: {exc}") from None


class PackedTrace:
    """Exit records packed into one flat `struct xl_record` array (208 bytes each)."""

    def __init__(self, records: Iterable[ExitRecord] = ()) -> None:
        self._buf = bytearray()
        self.n = 0
        self.extend(records)

    def extend(self, records: Iterable[ExitRecord]) -> None:
        size = RECORD.size
        if isinstance(records, Sequence):
            base = len(self._buf)
            self._buf.extend(bytes(size * len(records)))
            try:
                for i, rec in enumerate(records):
                    _pack_into(self._buf, base + i * size, rec, self.n + i)
            except RecordError:
                del self._buf[base:]
                raise
            self.n += len(records)
            return
        for rec in records:
            self._buf.extend(bytes(size))
            try:
                _pack_into(self._buf, self.n * size, rec, self.n)
            except RecordError:
                del self._buf[self.n * size :]
                raise
            self.n += 1

    def head(self, n: int) -> PackedTrace:
        """A copy of the first n records (e.g. a trace that fits in cache)."""
        out = PackedTrace()
        out.n = min(n, self.n)
        out._buf = self._buf[: out.n * RECORD.size]
        return out

    @classmethod
    def from_jsonl(cls, path: str | Path) -> PackedTrace:
        return cls(iter_trace(path))

    @property
    def nbytes(self) -> int:
        return len(self._buf)

    def cdata(self) -> Any:
        return ffi.cast("struct xl_record *", ffi.from_buffer(self._buf))

    def __len__(self) -> int:
        return self.n


def pack_records(records: Iterable[ExitRecord]) -> PackedTrace:
    return PackedTrace(records)


@dataclass(frozen=True, slots=True)
class CResult:
    status: str
    path: str
    gpa: int
    size: int
    write: bool
    value: int
    n_acc: int
    acc_hash: int
    next_rip: int
    wb: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _result(r: Any) -> CResult:
    return CResult(
        STATUS_NAMES[r.status],
        PATH_NAMES[r.path],
        int(r.gpa),
        int(r.size),
        bool(r.write),
        int(r.value),
        int(r.n_acc),
        int(r.acc_hash),
        int(r.next_rip),
        int(r.wb),
    )


def handle_one(rec: ExitRecord, path: str, ctx: CContext | None = None) -> tuple[CResult, dict[str, int]]:
    """Handle one record by a C path; returns the result and the register file afterwards."""
    ctx = ctx or CContext()
    buf = bytearray(RECORD.size)
    _pack_into(buf, 0, rec, 0)
    res = ffi.new("struct xl_result *")
    regs = ffi.new("uint64_t[]", NREGS)
    lib.xl_replay_one(
        ctx.cdata, path_id(path), ffi.cast("struct xl_record *", ffi.from_buffer(buf)), res, regs
    )
    return _result(res), {name: int(regs[i]) for i, name in enumerate(REG_NAMES)}


@dataclass
class ReplayResult:
    path: str
    n: int
    ns: int
    ticks: int
    errors: int
    counts: dict[str, int]
    fallbacks: int
    violations: int
    error: CError | None
    _results: Any = field(default=None, repr=False)

    @property
    def ns_per_exit(self) -> float:
        return self.ns / self.n if self.n else 0.0

    @property
    def ticks_per_exit(self) -> float:
        return self.ticks / self.n if self.n else 0.0

    def result(self, i: int) -> CResult:
        if self._results is None:
            raise ValueError("replay ran with keep_results=False")
        if not 0 <= i < self.n:
            raise IndexError(i)
        return _result(self._results[i])

    def results(self) -> list[CResult]:
        return [self.result(i) for i in range(self.n)]

    def to_json(self) -> dict[str, Any]:
        """The replay's totals as JSON, the Python replay's shape (emu.replay.totals_json)."""
        return totals_json(self)


def replay(
    trace: PackedTrace | Sequence[ExitRecord],
    path: str,
    ctx: CContext | None = None,
    keep_results: bool = True,
    reset: bool = True,
) -> ReplayResult:
    """Run every record through `path` in one C call (per-path counts, ns and TSC ticks)."""
    packed = trace if isinstance(trace, PackedTrace) else PackedTrace(trace)
    ctx = ctx or CContext()
    if reset:
        ctx.reset_counts()
    results = ffi.new("struct xl_result[]", packed.n) if keep_results and packed.n else ffi.NULL
    stats = ffi.new("struct xl_replay_stats *")
    lib.xl_replay(ctx.cdata, path_id(path), packed.cdata(), packed.n, results, stats)
    return ReplayResult(
        path,
        int(stats.n),
        int(stats.ns),
        int(stats.ticks),
        int(stats.errors),
        ctx.counts,
        ctx.fallbacks,
        ctx.violations,
        ctx.error,
        results if keep_results and packed.n else None,
    )


# ------------------------------------------------------------------------------------- live
@dataclass
class LiveResult:
    stop: str  # STOP_NAMES
    rip: int
    addr: int  # unmapped: address; triple_fault: vector; emulation_error: exit gpa
    insn: bytes  # bytes at rip for invalid_insn / unmapped / emulation_error / triple_fault
    status: str  # path status for emulation_error
    exits: int
    mmio_exits: int
    pio_exits: int
    hypercalls: int
    segments: int  # uc_emu_start calls
    inplace_mismatch: int
    ns: int
    ticks: int
    uc_err: int
    counts: dict[str, int]
    fallbacks: int
    violations: int
    kicks: dict[int, int]
    error: CError | None
    kind_counts: tuple[int, ...] = ()  # per ExitKind, in KIND_CODES order
    ctx: CContext | None = field(default=None, repr=False)

    @property
    def ns_per_exit(self) -> float:
        return self.ns / self.exits if self.exits else 0.0

    @property
    def is_error(self) -> bool:
        return self.stop not in ("hlt", "max_exits")


MAX_BUDGET = (1 << 63) - 1
MAX_TIMEOUT = 1e6
UNTIL_NEVER = (1 << 64) - 1


def _until(ram_base: int) -> int:
    """uc_emu_start's `until`: an address outside RAM, so reaching it is an unmapped fetch (the C loop
    reports it so).  Address 0 when RAM starts above it (the platform leaves page 0 unmapped): Unicorn
    invalidates the code at `until` whenever emulation stops, which costs ~30 ns per exit more for
    2**64-1 than for 0."""
    return 0 if ram_base > 0 else UNTIL_NEVER


def check_limits(max_insns: int | None, timeout: float | None) -> None:
    """The engine's side of the shared limits (SEMANTICS rules 1 and 11; the CLI validates first):
    a budget is 1 .. 2**63-1 instructions, a timeout finite and 0 < T <= 10**6 seconds; None: none."""
    if max_insns is not None and (
        isinstance(max_insns, bool) or not isinstance(max_insns, int) or not 1 <= max_insns <= MAX_BUDGET
    ):
        raise ValueError(f"max_insns must be an integer in 1 .. 2**63-1 (got {max_insns!r})")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise ValueError(f"timeout must be finite seconds in (0, 1e6] (got {timeout!r})")


def _timeout_ns(timeout: float | None) -> int:
    # never 0 for a limit: a tiny timeout is a tiny limit, not "no limit"
    return 0 if timeout is None else max(1, math.ceil(timeout * 1e9))


class LiveControl:
    """Stops a C live run from another thread: `request_stop()` is thread-safe and returns at once;
    the run ends within about a millisecond with stop reason "interrupted" (or the one given).
    Pass it to run_live/run_live_uc/run_machine_c as `control`.  A request made before the run
    starts stops it at once; `reset()` clears it."""

    def __init__(self) -> None:
        ctl = lib.xl_live_ctl_new()
        if ctl == ffi.NULL:
            raise MemoryError("xl_live_ctl_new failed")
        self._ctl = ffi.gc(ctl, lib.xl_live_ctl_free)

    @property
    def cdata(self) -> Any:
        return self._ctl

    def request_stop(self, reason: str = "interrupted") -> None:
        if reason not in ("interrupted", "timeout"):
            raise ValueError(f"stop reason must be 'interrupted' or 'timeout' (got {reason!r})")
        lib.xl_live_request_stop(self._ctl, STOP_CODES[reason])

    def reset(self) -> None:
        lib.xl_live_ctl_reset(self._ctl)


def run_live_uc(
    uc: Any,
    *,
    ram_ptr: int,
    ram_base: int,
    ram_size: int,
    mode: int,
    start_rip: int,
    path: str = "subset",
    style: str = "exit",
    max_insns: int | None = None,
    timeout: float | None = None,
    max_exits: int = 0,
    until: int | None = None,
    ctx: CContext | None = None,
    reset: bool = True,
    control: LiveControl | None = None,
    inplace_raw: bool = False,
    trap: str = "mixed",
) -> LiveResult:
    """Run a Unicorn engine with C hooks until a stop; `uc` is a unicorn.Uc (or its raw handle).

    max_insns: None (no budget) or 1 .. 2**63-1 for the whole run; timeout: None or seconds.
    inplace_raw (in-place style): an access no C path emulates is performed as Unicorn reports it,
    as the Python engine's in-place hook does, instead of stopping `emulation_error`.
    trap: how PIO and hypercall exits are trapped -- "mixed" (PIO in its hook, a hypercall stops the
    engine), "exit" (both stop the engine and restart) or "hook" (both handled inside their hook)."""
    if style not in ("exit", "inplace"):
        raise ValueError(f"style must be 'exit' or 'inplace' (got {style!r})")
    if trap not in TRAPS:
        raise ValueError(f"trap must be one of {', '.join(TRAPS)} (got {trap!r})")
    if mode not in _MODES:
        raise ValueError(f"mode must be 16, 32 or 64 (got {mode!r})")
    check_limits(max_insns, timeout)
    ctx = ctx or CContext()
    if reset:
        ctx.reset_counts()
    handle = getattr(uc, "_uch", uc)
    handle = getattr(handle, "value", handle)
    cfg = ffi.new("struct xl_live_cfg *")
    cfg.ram, cfg.ram_base, cfg.ram_size = ram_ptr, ram_base, ram_size
    cfg.start_rip, cfg.until = start_rip, _until(ram_base) if until is None else until
    cfg.max_insns, cfg.timeout_ns, cfg.max_exits = max_insns or 0, _timeout_ns(timeout), max_exits
    cfg.mode, cfg.path, cfg.style = mode, path_id(path), 0 if style == "exit" else 1
    cfg.inplace_raw = int(inplace_raw)
    cfg.ctl = control.cdata if control is not None else ffi.NULL
    cfg.trap = TRAPS[trap]
    out = ffi.new("struct xl_live_result *")
    lib.xl_live_run(ctx.cdata, ffi.cast("void *", handle), cfg, out)
    return LiveResult(
        stop=STOP_NAMES[out.stop],
        rip=int(out.rip),
        addr=int(out.addr),
        insn=bytes(ffi.buffer(out.bytes, out.len)),
        status=STATUS_NAMES[out.status],
        exits=int(out.exits),
        mmio_exits=int(out.mmio_exits),
        pio_exits=int(out.pio_exits),
        hypercalls=int(out.hypercalls),
        segments=int(out.segments),
        inplace_mismatch=int(out.inplace_mismatch),
        ns=int(out.ns),
        ticks=int(out.ticks),
        uc_err=int(out.uc_err),
        counts=ctx.counts,
        fallbacks=ctx.fallbacks,
        violations=ctx.violations,
        kicks=ctx.kicks,
        error=ctx.error,
        kind_counts=tuple(int(k) for k in out.kinds),
        ctx=ctx,
    )


def run_live(
    machine: Any,
    path: str = "subset",
    style: str = "exit",
    max_insns: int | None = None,
    timeout: float | None = 10.0,
    max_exits: int = 0,
    start_rip: int | None = None,
    ctx: CContext | None = None,
    control: LiveControl | None = None,
    reset: bool = True,
    inplace_raw: bool = False,
    trap: str = "mixed",
) -> LiveResult:
    """Run an `emu.machine.Machine` (RAM, registers and image already set up, none of its own hooks
    installed; for style "exit" its MMIO windows must be unmapped) with the C hooks and C paths.
    max_insns: None or 1 .. 2**63-1; timeout: None (no limit) or seconds in (0, 1e6]."""
    if start_rip is None:
        start_rip = int(machine.regfile.get("rip"))
    return run_live_uc(
        machine.uc,
        ram_ptr=machine.ram_ptr,
        ram_base=machine.ram_base,
        ram_size=machine.ram_size,
        mode=machine.mode,
        start_rip=start_rip,
        path=path,
        style=style,
        max_insns=max_insns,
        timeout=timeout,
        max_exits=max_exits,
        ctx=ctx,
        reset=reset,
        control=control,
        inplace_raw=inplace_raw,
        trap=trap,
    )


def _sigint_watchdog(control: LiveControl) -> Any:
    """SIGINT -> control.request_stop("interrupted") for the duration of a run (emu/interrupt.py)."""
    return Watchdog(lambda reason: control.request_stop(reason), None)


# CLI path names (exitlab/commands/run.py) -> (C path, style); C path names are accepted as well.
CLI_PATHS: dict[str, tuple[str, str]] = {
    "inplace": ("subset", "inplace"),
    "generic": ("capstone", "exit"),
    "fast": ("pv-fast", "exit"),
}
_STOP_MESSAGES: dict[str, str] = {
    "hlt": "hlt",
    "budget": "instruction budget exhausted",
    "timeout": "wall-clock timeout",
    "unmapped": "unmapped access",
    "invalid_insn": "invalid instruction",
    "triple_fault": "unhandled CPU exception",
    "emulation_error": "the C path cannot emulate this instruction",
    "max_exits": "exit budget reached",
    "uc_error": "unicorn error",
    "interrupted": "interrupted",
}


def run_machine_c(
    image: Any,
    board: Any = None,
    path: str = "fast",
    max_insns: int | None = None,
    timeout: float | None = 10.0,
    trace: Any = None,
    style: str | None = None,
    ctx: CContext | None = None,
    control: LiveControl | None = None,
) -> Any:
    """`exitlab run --engine c`: a Machine sets up RAM, image and registers; the C hooks run it.

    Any board: the C engine's flat devices (notify, regs, console) serve the board's own devices
    of those kinds, every other device range is reached through a callback into the board's bus
    (fastpath/devtab.py), and `trace` (an emu.trace.TraceWriter) records every exit through a
    second callback installed only then. The devices' JSON is the board's `state()`, as for the
    Python engine, plus `c_engine`."""
    board = board or default_board()
    try:
        check_limits(max_insns, timeout)
    except ValueError as exc:  # the CLI validates first; this keeps the one-line error without it
        raise ExitlabError(str(exc)) from None
    cpath, cstyle = CLI_PATHS.get(path, (path, "exit"))
    path_id(cpath)
    style = style or cstyle
    machine = Machine(image, board=board, mmio_style=style)
    machine.init_regs()
    control = control or LiveControl()
    used = ctx or CContext()
    used.reset_counts()
    table = DeviceTable(board, machine, trace=trace, stop=lambda: control.request_stop("interrupted"))
    table.install(used)
    # Ctrl-C: pyengine's watchdog thread wakes on SIGINT (signal.set_wakeup_fd) and asks the C run to
    # stop; the C engine keeps its own deadline (no timeout given to the watchdog).
    try:
        with _sigint_watchdog(control):
            res = run_live(
                machine,
                path=cpath,
                style=style,
                max_insns=max_insns,
                timeout=timeout,
                ctx=used,
                start_rip=image.entry,
                control=control,
                reset=False,
                inplace_raw=True,  # `--path inplace`: as the Python engine's in-place hook
            )
    finally:
        table.uninstall(used)
    if res.stop in ("timeout", "interrupted") and int(machine.regfile.get("rip")) != res.rip:
        # live.c's loop stops a request made between a handled exit and the restart at the restart
        # RIP without writing it to the engine: the registers must say where the guest is (as the
        # Python dispatcher's backends do), not the RIP of the exit already done
        machine.regfile.set("rip", res.rip)
    reason = C_STOP_REASONS.get(res.stop, res.stop)
    msg = _STOP_MESSAGES.get(res.stop, res.stop)
    if res.stop == "emulation_error" and res.error is not None:
        msg = res.error.message()
    elif res.stop == "unmapped":
        msg = f"unmapped access at {res.addr:#x} by the instruction at rip={res.rip:#x}"
    elif res.stop == "triple_fault":
        msg = f"unhandled CPU exception (vector {res.addr}) at rip={res.rip:#x}"
    elif res.stop == "budget":
        msg = f"instruction budget of {max_insns} exhausted"  # the Python engine's words
    if table.error is not None:  # a Python device raised: the run stopped there (as the Python engine)
        reason, msg = "device_error", table.error
    exits = {k.value: res.kind_counts[i] for i, k in enumerate(KIND_CODES)}
    state = used.state()
    state["inplace_mismatch"] = res.inplace_mismatch
    kicks_other = state.pop("notify")["kicks_other"]
    del state["regs"], state["console"]
    table.sync_back(used)  # an echoing console was the Python device: it echoed as the guest wrote
    devices = board.state()  # the board's devices, the flat ones' counts added (one device model)
    notify = devices.get(board.notify.name)
    if isinstance(notify, dict):
        notify["kicks_other"] = kicks_other  # kept: data kicks >= 64 in C's flat notify
    insn = res.insn if res.is_error or reason == "device_error" else b""
    return RunResult(
        stop=Stop(StopReason(reason), res.rip, msg, insn),
        exits=exits,
        regs=machine.regs(),
        console=board.console.text,
        devices={
            **devices,
            "c_engine": {
                **state,
                "run": {
                    "ns": res.ns,
                    "ticks": res.ticks,
                    "segments": res.segments,
                    "path": cpath,
                    "style": style,
                },
            },
        },
        seconds=res.ns / 1e9,
    )
