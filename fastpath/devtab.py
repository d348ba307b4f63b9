"""A board as data for the C engine (fastpath/csrc/devtab.h): windows, ports and devices.

The C engine keeps its flat copies of the default board's devices (notify, register file, console:
`struct xl_devstate`) as an accelerator, at the addresses this module reads off the board. Every
other device range of the board (the PCI host's config ports, the virtio devices' BARs and assigned
ports, a custom device) is a region of the table; C calls back into the board's bus (emu/bus.py)
for it, so the device model is the Python one and the answers are the Python engine's.

Exits are recorded through the Python trace writer by a second callback, installed only when a
trace is asked for: without one the C loop pays a NULL test per exit and nothing else.

After the run, `sync_back` adds what the flat C devices saw into the board's Python devices, so
`board.state()` is the same JSON for both engines.
"""

from __future__ import annotations

from typing import Any

from emu.board import Board
from emu.bus import Mapping, Space
from emu.devices import ConsoleDevice, NotifyDevice, RegisterDevice
from emu.exits import MAX_INSN_LEN, ExitKind, ExitRecord
from fastpath._exitlab_c import ffi, lib

NO_PORT = 1 << 32  # devtab.h XL_NO_PORT: a flat port device the board does not have
# The flat C devices' sizes as compiled (devstate.h, from platform_gen.h; cffi checks the cdef's
# arrays against the build): the wildcard registrations C counts and the register file's bytes.
_FLAT = ffi.new("struct xl_devstate *")
FLAT_NOTIFY_QUEUES = len(_FLAT.eventfd_counts)
FLAT_REGS_SIZE = len(_FLAT.regs)
del _FLAT
_SPACES = (Space.MMIO, Space.PIO)  # devtab.h enum xl_space
_KINDS = (ExitKind.MMIO_WRITE, ExitKind.MMIO_READ, ExitKind.PIO_OUT, ExitKind.PIO_IN, ExitKind.HYPERCALL)
_OP_READ, _OP_WRITE, _OP_NOTIFY, _OP_KICK = 0, 1, 2, 3


def _flat_notify(board: Board, dev: Any) -> bool:
    """The board's own notify device, untouched, with only the default wildcard registrations."""
    return (
        dev is board.notify
        and type(dev) is NotifyDevice
        and dev.queues == FLAT_NOTIFY_QUEUES
        and len(dev.eventfds) == FLAT_NOTIFY_QUEUES
    )


def _regions(maps: list[Mapping]) -> Any:
    arr = ffi.new("struct xl_region[]", max(len(maps), 1))
    for i, m in enumerate(sorted(maps, key=lambda m: m.base)):
        arr[i].base, arr[i].size = m.base, m.size
    return arr


def _spans(spans: list[tuple[int, int]]) -> Any:
    arr = ffi.new("struct xl_region[]", max(len(spans), 1))
    for i, (base, size) in enumerate(sorted(spans)):
        arr[i].base, arr[i].size = base, size
    return arr


class DeviceTable:
    """The table of one run: built from `board`, installed into a `CContext` (its `tab` pointer).

    `machine` (an emu.machine.Machine on the same board) supplies the page-aligned MMIO windows and,
    with `trace` (an emu.trace.TraceWriter), the register file and RAM the trace records read.
    `stop` is called with no argument when a Python device raises (the run then stops at once; the
    error is in `self.error`)."""

    def __init__(self, board: Board, machine: Any, trace: Any = None, stop: Any = None) -> None:
        self.board = board
        self.bus = board.bus
        self.machine = machine
        self.trace = trace
        self.stop = stop
        self.error: str | None = None
        self.flat: dict[str, Mapping] = {}
        pv = list(board.pv_windows)
        callback: dict[Space, list[Mapping]] = {Space.MMIO: [], Space.PIO: []}
        for m in self.bus.mappings(Space.MMIO):
            d = m.device
            if "notify_mmio" not in self.flat and _flat_notify(board, d) and (m.base, m.size) in pv:
                self.flat["notify_mmio"] = m
                pv.remove((m.base, m.size))  # C's own pv-fast window
            elif (
                "regs" not in self.flat
                and d is board.regs
                and type(d) is RegisterDevice
                and len(d.mem) == FLAT_REGS_SIZE
                and m.size == FLAT_REGS_SIZE
            ):
                self.flat["regs"] = m
            else:
                callback[Space.MMIO].append(m)
        for m in self.bus.mappings(Space.PIO):
            d = m.device
            if "notify_port" not in self.flat and _flat_notify(board, d) and m.size == 2:
                self.flat["notify_port"] = m
            elif (
                "console" not in self.flat
                and d is board.console
                and type(d) is ConsoleDevice
                and d.echo is None  # an echoing console prints as the guest writes: the Python device
                and m.size == 8
            ):
                self.flat["console"] = m
            else:
                callback[Space.PIO].append(m)
        self.callback = callback
        self._mmio = _regions(callback[Space.MMIO])
        self._pio = _regions(callback[Space.PIO])
        self._pv = _spans(pv)
        self._win = _spans(list(machine.windows))
        self._handle = ffi.new_handle(self)
        t = self.cdata = ffi.new("struct xl_devtab *")
        t.mmio, t.nmmio = self._mmio, len(callback[Space.MMIO])
        t.pio, t.npio = self._pio, len(callback[Space.PIO])
        t.pv, t.npv = self._pv, len(pv)
        t.win, t.nwin = self._win, len(machine.windows)
        t.dev, t.dev_opaque = lib.xl_py_dev, self._handle
        if trace is not None:
            t.trace, t.trace_opaque = lib.xl_py_trace, self._handle
        self._kicks0: dict[int, int] = {}

    # -- installing into a context and reading it back ----------------------------------------
    def install(self, ctx: Any) -> None:
        """Point `ctx` (a fastpath.cengine.CContext) at the board: flat devices' addresses (or none)
        and the table. The flat register file starts with the Python device's bytes."""
        c = ctx.cdata
        d = c.dev
        n, r = self.flat.get("notify_mmio"), self.flat.get("regs")
        d.notify_base, d.notify_size = (n.base, n.size) if n else (0, 0)
        d.regs_base, d.regs_size = (r.base, r.size) if r else (0, 0)
        d.notify_port = self.flat["notify_port"].base if "notify_port" in self.flat else NO_PORT
        d.console_port = self.flat["console"].base if "console" in self.flat else NO_PORT
        if r is not None:
            ctx.set_regs_mem(bytes(self.board.regs.mem))
        c.tab = self.cdata

    @staticmethod
    def uninstall(ctx: Any) -> None:
        ctx.cdata.tab = ffi.NULL

    def sync_back(self, ctx: Any) -> None:
        """Add what the flat C devices saw to the board's Python devices (one device model)."""
        d = ctx.cdata.dev
        notify = self.board.notify
        if "notify_mmio" in self.flat or "notify_port" in self.flat:
            for q in range(len(d.kicks)):
                if d.kicks[q]:
                    notify.kicks[q] += int(d.kicks[q])
            notify.writes += int(d.notify_writes)
            notify.reads += int(d.notify_reads)
            notify.unmatched += int(d.notify_unmatched)
            for q in range(FLAT_NOTIFY_QUEUES):
                notify.eventfd_counts[q] += int(d.eventfd_counts[q])
        if "regs" in self.flat:
            regs = self.board.regs
            regs.mem[:] = ctx.regs_mem
            regs.reads += int(d.regs_reads)
            regs.writes += int(d.regs_writes)
        if "console" in self.flat:  # bytes past the flat buffer reached the device by callback
            self.board.console.out[0:0] = ctx.console
        un = self.bus.unclaimed
        un["mmio_read"] += int(d.unclaimed_mmio_read)
        un["mmio_write"] += int(d.unclaimed_mmio_write)
        un["pio_in"] += int(d.unclaimed_pio_in)
        un["pio_out"] += int(d.unclaimed_pio_out)

    # -- the callbacks ----------------------------------------------------------------------------
    def device(self, space: int, op: int, addr: int, size: int, value: int) -> int:
        sp = _SPACES[space]
        try:
            if op == _OP_READ:
                return self.bus.read(sp, addr, size)
            if op == _OP_WRITE:
                self.bus.write(sp, addr, size, value)
            elif op == _OP_KICK:  # the flat notify's kick of queue >= 64 (its counters stop at 63)
                self.board.notify.kicks[value] += 1
            else:
                self.bus.notify(addr)
            return 0
        except Exception as exc:  # noqa: BLE001 - a device fault ends the run as a stop, never a traceback
            if self.error is None:
                what = {_OP_READ: "read", _OP_WRITE: "write"}.get(op, "notify")
                where = "port" if sp is Space.PIO else "MMIO"
                self.error = f"device error on {what} of {where} {addr:#x}: {exc}"
                if self.stop is not None:
                    self.stop()
            return (1 << (8 * size)) - 1 if op == _OP_READ and size else 0

    def record(self, kind: int, rip: int, addr: int, size: int, value: int) -> None:
        """One exit through the Python trace writer, as emu.machine.Machine._record builds it."""
        m = self.machine
        try:
            self.trace.write(
                ExitRecord(
                    kind=_KINDS[kind],
                    rip=rip,
                    mode=m.mode,
                    addr=addr,
                    insn=m.read_ram(rip, MAX_INSN_LEN),
                    regs=m.regfile.snapshot(),
                    truth_size=size,
                    truth_value=value,
                )
            )
        except Exception as exc:  # noqa: BLE001 - as a device fault: the run stops with the reason
            if self.error is None:
                self.error = f"trace record failed: {exc}"
                if self.stop is not None:
                    self.stop()


@ffi.def_extern()  # type: ignore[misc]
def xl_py_dev(opaque: Any, space: int, op: int, addr: int, size: int, value: int) -> int:
    table: DeviceTable = ffi.from_handle(opaque)
    return table.device(space, op, addr, size, value)


@ffi.def_extern()  # type: ignore[misc]
def xl_py_trace(opaque: Any, kind: int, rip: int, addr: int, size: int, value: int) -> None:
    table: DeviceTable = ffi.from_handle(opaque)
    table.record(kind, rip, addr, size, value)
