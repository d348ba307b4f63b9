"""The Unicorn machine: maps the board, runs a guest image and turns every trap into an ExitRecord.

Two MMIO styles:
- `inplace`: the window is `mmio_map`-ed and a `UC_HOOK_MEM_READ|WRITE` hook on the same range sees
  the whole access with an exact RIP; the device acts in the hook and Unicorn completes the access.
- `exit`: the window is left unmapped. The access faults (`UC_HOOK_MEM_UNMAPPED`), emulation stops
  with RIP on the faulting instruction, and the host handles the exit through a *path* that sees
  only what hardware gives (GPA, RIP, registers, guest memory), then resumes at the next RIP.
Port I/O is trapped with `UC_HOOK_INSN` IN/OUT, `vmcall`/`vmmcall` with `UC_HOOK_INSN_INVALID`.
"""

from __future__ import annotations

import ctypes
import enum
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from unicorn import (
    UC_ARCH_X86,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_UNMAPPED,
    UC_HOOK_MEM_WRITE,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_16,
    UC_MODE_32,
    UC_MODE_64,
    UC_PROT_ALL,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from emu.assemble import GuestImage
from emu.board import Board, default_board
from emu.bus import Space
from emu.cpu import Cpu, Outcome
from emu.errors import EmulationError, ExitlabError, GuestFormatError
from emu.exits import MAX_INSN_LEN, REG_INDEX, REG_NAMES, ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.hypercall import HYPERCALL_LEN, hypercall, is_hypercall
from emu.platform import PAGE
from emu.ram import GuestRam
from emu.regfile import RegFile
from emu.trace import TraceWriter

_UC_MODE = {16: UC_MODE_16, 32: UC_MODE_32, 64: UC_MODE_64}
_UNTIL = (1 << 64) - 1  # never reached: a run ends by hlt, budget, timeout or a fault
HLT = 0xF4

VECTORS = {
    0: "#DE divide error",
    1: "#DB debug",
    2: "NMI",
    3: "#BP breakpoint",
    4: "#OF overflow",
    5: "#BR bound range",
    6: "#UD invalid opcode",
    7: "#NM device not available",
    8: "#DF double fault",
    10: "#TS invalid TSS",
    11: "#NP segment not present",
    12: "#SS stack fault",
    13: "#GP general protection",
    14: "#PF page fault",
    16: "#MF x87 error",
    17: "#AC alignment check",
    18: "#MC machine check",
    19: "#XM SIMD exception",
}


class StopReason(enum.Enum):
    HLT = "hlt"
    BUDGET = "budget"
    TIMEOUT = "timeout"
    UNMAPPED = "unmapped"
    INVALID_INSN = "invalid_insn"
    TRIPLE_FAULT = "triple_fault"
    EMULATION_ERROR = "emulation_error"
    DEVICE_ERROR = "device_error"


@dataclass(frozen=True, slots=True)
class Stop:
    reason: StopReason
    rip: int
    message: str
    insn: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.reason is not StopReason.HLT

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason.value,
            "rip": self.rip,
            "message": self.message,
            "bytes": self.insn.hex(" "),
        }


@dataclass
class RunResult:
    stop: Stop
    exits: dict[str, int]
    regs: dict[str, int]
    console: str
    devices: dict[str, Any]
    records: list[ExitRecord] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "stop": self.stop.to_json(),
            "exits": self.exits,
            "devices": self.devices,
            "regs": self.regs,
            "console": self.console,
        }


class Path(Protocol):
    """An exit-style MMIO handler: an Outcome, or None for 'not mine' (the caller falls back)."""

    name: str

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None: ...


class MmioStyle(enum.Enum):
    INPLACE = "inplace"
    EXIT = "exit"


class _Halt(Exception):
    """Raised inside hooks to end the run with a Stop (hooks cannot raise through Unicorn)."""


class UnicornCpu:
    """`Cpu` over the live engine: registers through Unicorn, RAM straight from the host buffer,
    device accesses through the bus."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.mode = machine.mode

    def get(self, name: str) -> int:
        return self.m.regfile.get(name)

    def set(self, name: str, value: int) -> None:
        self.m.regfile.set(name, value)

    def get_xmm(self, index: int) -> int:
        return self.m.regfile.get_xmm(index)

    def set_xmm(self, index: int, value: int) -> None:
        self.m.regfile.set_xmm(index, value)

    def read_mem(self, addr: int, size: int) -> bytes:
        return self.m.read_ram(addr, size)

    def write_mem(self, addr: int, data: bytes) -> None:
        self.m.write_ram(addr, data)

    def is_mmio(self, gpa: int) -> bool:
        return self.m.mmio_window(gpa) is not None

    def mmio_read(self, gpa: int, size: int) -> int:
        return self.m.board.bus.read(Space.MMIO, gpa, size)

    def mmio_write(self, gpa: int, size: int, value: int) -> None:
        self.m.board.bus.write(Space.MMIO, gpa, size, value)


class Machine:
    """One guest on one board. Create, `run()`, read the result; not reusable across runs."""

    def __init__(
        self,
        image: GuestImage,
        board: Board | None = None,
        mmio_style: MmioStyle | str = MmioStyle.INPLACE,
        path: Path | None = None,
        trace: TraceWriter | None = None,
        keep_records: bool = False,
    ) -> None:
        self.image = image
        self.mode = image.mode
        if self.mode not in _UC_MODE:
            raise GuestFormatError(f"mode must be 16, 32 or 64 (got {self.mode})")
        self.board = board or default_board()
        self.mmio_style = MmioStyle(mmio_style)
        self.path = path
        self.trace = trace
        self.keep_records = keep_records
        self.records: list[ExitRecord] = []
        self.exit_counts: Counter[str] = Counter({k.value: 0 for k in ExitKind})
        self.uc = Uc(UC_ARCH_X86, _UC_MODE[self.mode])
        self.regfile = RegFile(self.uc, self.mode)
        self.cpu = UnicornCpu(self)
        spec = self.board.spec
        self.ram_base, self.ram_size = spec.ram.base, spec.ram.size
        self._ram = ctypes.create_string_buffer(self.ram_size)
        self.ram_ptr = ctypes.addressof(self._ram)
        self.ram_view = memoryview(self._ram).cast("B")
        self.ram = GuestRam(self.ram_view, self.ram_base)
        self.uc.mem_map_ptr(self.ram_base, self.ram_size, UC_PROT_ALL, self.ram_ptr)
        self.windows = self._mmio_windows()
        self._stop: Stop | None = None
        self._pending: tuple[int, int, int, int] | None = None  # access, gpa, size, value
        self._read_stash: tuple[int, int] = (0, 0)  # (gpa, value) of the last in-place device read
        self._budget_left = 0
        self._timeout: float | None = None
        self._timed_out = False
        self.ram.load(image)

    # -- memory -------------------------------------------------------------------------------
    def _mmio_windows(self) -> list[tuple[int, int]]:
        """Page-aligned windows covering every MMIO mapping of the bus (mmio_map needs pages)."""
        spans: list[list[int]] = []
        for m in self.board.bus.mappings(Space.MMIO):
            lo, hi = m.base & ~(PAGE - 1), (m.end + PAGE - 1) & ~(PAGE - 1)
            if spans and lo <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], hi)
            else:
                spans.append([lo, hi])
        ram_end = self.ram_base + self.ram_size
        for lo, hi in spans:
            if lo < ram_end and self.ram_base < hi:
                raise GuestFormatError(f"MMIO window {lo:#x}-{hi - 1:#x} overlaps RAM")
        return [(lo, hi - lo) for lo, hi in spans]

    def mmio_window(self, gpa: int) -> tuple[int, int] | None:
        for base, size in self.windows:
            if base <= gpa < base + size:
                return base, size
        return None

    def read_ram(self, addr: int, size: int) -> bytes:
        """Guest RAM without a copy through Unicorn; shorter than `size` where RAM ends."""
        return self.ram.read(addr, size)

    def write_ram(self, addr: int, data: bytes) -> None:
        self.ram.write(addr, data)

    # -- exits --------------------------------------------------------------------------------
    def _record(self, kind: ExitKind, rip: int, addr: int, size: int, value: int) -> ExitRecord:
        rec = ExitRecord(
            kind=kind,
            rip=rip,
            mode=self.mode,
            addr=addr,
            insn=self.read_ram(rip, MAX_INSN_LEN),
            regs=self.regfile.snapshot(),
            truth_size=size,
            truth_value=value,
        )
        self.exit_counts[kind.value] += 1
        if self.trace is not None:
            self.trace.write(rec)
        if self.keep_records:
            self.records.append(rec)
        return rec

    def _halt(self, reason: StopReason, rip: int, message: str, insn: bytes = b"") -> None:
        if self._stop is None:
            self._stop = Stop(reason, rip, message, insn)
        self.uc.emu_stop()

    def _rip(self) -> int:
        return self.regfile.get("rip")

    # -- hooks (each catches its own errors: an exception must never cross Unicorn) ----------------
    def _on_mem_inplace(self, uc: Uc, access: int, addr: int, size: int, value: int, _ud: object) -> None:
        try:
            rip = self._rip()
            bus = self.board.bus
            if access == UC_MEM_WRITE:
                self._record(ExitKind.MMIO_WRITE, rip, addr, size, value)
                bus.write(Space.MMIO, addr, size, value)
            else:
                got = bus.read(Space.MMIO, addr, size)
                self._read_stash = (addr, got)
                self._record(ExitKind.MMIO_READ, rip, addr, size, got)
        except Exception as exc:  # noqa: BLE001 - reported as a stop, never a traceback
            self._halt(StopReason.DEVICE_ERROR, self._rip(), f"device error on MMIO {addr:#x}: {exc}")

    def _mmio_map_read(self, window_base: int) -> Any:
        def read(uc: Uc, offset: int, size: int, _ud: object) -> int:
            gpa = window_base + offset
            base, value = self._read_stash
            shift = gpa - base
            if 0 <= shift < 16:
                return (value >> (8 * shift)) & ((1 << (8 * size)) - 1)
            return 0

        return read

    @staticmethod
    def _mmio_map_write(uc: Uc, offset: int, size: int, value: int, _ud: object) -> None:
        return None  # the MEM_WRITE hook already delivered the whole access to the device

    def _on_unmapped(self, uc: Uc, access: int, addr: int, size: int, value: int, _ud: object) -> bool:
        try:
            rip = self._rip()
            if (
                self.mmio_style is MmioStyle.EXIT
                and access in (UC_MEM_READ_UNMAPPED, UC_MEM_WRITE_UNMAPPED)
                and self.mmio_window(addr) is not None
            ):
                self._pending = (access, addr, size, value)
                return False
            what = {
                UC_MEM_READ_UNMAPPED: "read of",
                UC_MEM_WRITE_UNMAPPED: "write of",
                UC_MEM_FETCH_UNMAPPED: "instruction fetch of",
            }.get(access, "access of")
            target = f"{what} {size} bytes at unmapped address {addr:#x}"
            if access == UC_MEM_FETCH_UNMAPPED:
                self._stop = self._stop or Stop(StopReason.UNMAPPED, rip, f"{target} (rip={rip:#x})")
            else:
                self._stop = self._stop or Stop(
                    StopReason.UNMAPPED,
                    rip,
                    f"{target} by the instruction at rip={rip:#x}",
                    self.read_ram(rip, MAX_INSN_LEN),
                )
        except Exception as exc:  # noqa: BLE001
            self._stop = self._stop or Stop(StopReason.DEVICE_ERROR, 0, f"unmapped-access hook failed: {exc}")
        return False

    def _on_in(self, uc: Uc, port: int, size: int, _ud: object) -> int:
        try:
            value = self.board.bus.read(Space.PIO, port, size)
            self._record(ExitKind.PIO_IN, self._rip(), port, size, value)
            return value
        except Exception as exc:  # noqa: BLE001
            self._halt(StopReason.DEVICE_ERROR, self._rip(), f"device error on IN from port {port:#x}: {exc}")
            return 0

    def _on_out(self, uc: Uc, port: int, size: int, value: int, _ud: object) -> None:
        try:
            self._record(ExitKind.PIO_OUT, self._rip(), port, size, value)
            self.board.bus.write(Space.PIO, port, size, value)
        except Exception as exc:  # noqa: BLE001
            self._halt(StopReason.DEVICE_ERROR, self._rip(), f"device error on OUT to port {port:#x}: {exc}")

    def _on_invalid(self, uc: Uc, _ud: object) -> bool:
        rip = self._rip()
        insn = self.read_ram(rip, MAX_INSN_LEN)
        if not is_hypercall(insn):
            self._stop = self._stop or Stop(
                StopReason.INVALID_INSN,
                rip,
                f"invalid instruction at rip={rip:#x}: {insn[:8].hex(' ')}",
                insn,
            )
            return False
        try:
            rf = self.regfile
            nr = rf.get("rax")
            self._record(ExitKind.HYPERCALL, rip, nr, 0, 0)
            rf.set(
                "rax",
                hypercall(
                    self.board.bus, self.mode, nr, rf.get("rbx"), rf.get("rcx"), rf.get("rdx"), rf.get("rsi")
                ),
            )
            rf.set("rip", rip + HYPERCALL_LEN)
            return True
        except Exception as exc:  # noqa: BLE001
            self._stop = self._stop or Stop(StopReason.DEVICE_ERROR, rip, f"hypercall failed: {exc}", insn)
            return False

    def _on_intr(self, uc: Uc, intno: int, _ud: object) -> None:
        rip = self._rip()
        name = VECTORS.get(intno, f"vector {intno}")
        self._halt(
            StopReason.TRIPLE_FAULT,
            rip,
            f"{name} at rip={rip:#x}; the platform has no IDT, so a real CPU would triple-fault",
            self.read_ram(rip, MAX_INSN_LEN),
        )

    def _on_code_budget(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        self._budget_left -= 1
        if self._budget_left < 0:
            self._halt(StopReason.BUDGET, address, "instruction budget exhausted")

    # -- running ------------------------------------------------------------------------------
    def _install_hooks(self, budget_hook: bool) -> None:
        uc = self.uc
        if self.mmio_style is MmioStyle.INPLACE:
            for base, size in self.windows:
                uc.mmio_map(base, size, self._mmio_map_read(base), None, self._mmio_map_write, None)
                uc.hook_add(
                    UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._on_mem_inplace, None, base, base + size - 1
                )
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        if budget_hook:
            uc.hook_add(UC_HOOK_CODE, self._on_code_budget)

    def init_regs(self) -> None:
        """Entry state: RSP at the stack top, RFLAGS.IF clear, RIP at the entry (public for the C engine)."""
        rf = self.regfile
        rf.set("rsp", self.board.spec.stack_top)
        rf.set("rflags", 0x2)
        rf.set("rip", self.image.entry)

    def _handle_exit_style(self) -> int:
        """Turn the pending fault into an exit, run it through the path, return the next RIP."""
        assert self._pending is not None
        access, gpa, size, value = self._pending
        self._pending = None
        rip = self._rip()
        write = access == UC_MEM_WRITE_UNMAPPED
        kind = ExitKind.MMIO_WRITE if write else ExitKind.MMIO_READ
        rec = self._record(kind, rip, gpa, size, value if write else 0)
        path = self.path
        if path is None:
            path = self.path = GenericPath()  # the decode path is the default for exit style
        outcome = path.handle(rec, self.cpu)
        if outcome is None:
            raise EmulationError(f"path {path.name!r} declined the exit and has no fallback", rip, rec.insn)
        return outcome.next_rip

    def run(self, max_insns: int | None = None, timeout: float | None = 10.0) -> RunResult:
        """Run until hlt, the instruction budget, the wall-clock timeout or a fault."""
        if max_insns is not None and max_insns <= 0:
            raise ExitlabError("the instruction budget must be positive")
        exit_style = self.mmio_style is MmioStyle.EXIT
        # In-place runs are one emu_start, so Unicorn's own counter is the budget; exit-style runs
        # restart at every exit, so they count with a code hook instead.
        self._install_hooks(budget_hook=exit_style and max_insns is not None)
        self._budget_left = max_insns or 0
        self.init_regs()
        self._timeout = timeout
        self._timed_out = False
        t0 = time.perf_counter()
        # One watchdog thread per run stops the engine at the deadline. Unicorn's own `timeout`
        # argument starts a thread per emu_start, which costs milliseconds per exit in exit style.
        watchdog = None
        if timeout is not None:
            watchdog = threading.Timer(timeout, self._on_deadline)
            watchdog.daemon = True
            watchdog.start()
        rip = self.image.entry
        try:
            self._run_loop(rip, max_insns if (max_insns and not exit_style) else 0)
        finally:
            if watchdog is not None:
                watchdog.cancel()
        seconds = time.perf_counter() - t0
        assert self._stop is not None
        return RunResult(
            stop=self._stop,
            exits=dict(self.exit_counts),
            regs=self.regs(),
            console=self.board.console.text,
            devices=self.board.state(),
            records=self.records,
            seconds=seconds,
        )

    def _on_deadline(self) -> None:
        """Runs on the watchdog thread: only raise the flag and ask the engine to stop."""
        self._timed_out = True
        try:
            self.uc.emu_stop()
        except UcError:
            pass

    def _timeout_stop(self) -> bool:
        if self._timed_out and self._stop is None:
            self._stop = Stop(StopReason.TIMEOUT, self._rip(), f"wall-clock timeout of {self._timeout} s")
        return self._timed_out

    def _run_loop(self, rip: int, count: int) -> None:
        while True:
            if self._timeout_stop():
                return
            try:
                self.uc.emu_start(rip, _UNTIL, timeout=0, count=count)
            except UcError as err:
                if self._stop is not None or self._timeout_stop():
                    return
                if self._pending is not None and err.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED):
                    try:
                        rip = self._handle_exit_style()
                    except EmulationError as exc:
                        self._stop = Stop(StopReason.EMULATION_ERROR, exc.rip or 0, str(exc), exc.insn)
                        return
                    except Exception as exc:  # noqa: BLE001
                        r = self._rip()
                        self._stop = Stop(
                            StopReason.DEVICE_ERROR,
                            r,
                            f"exit handling failed: {exc}",
                            self.read_ram(r, MAX_INSN_LEN),
                        )
                        return
                    self.regfile.set("rip", rip)
                    continue
                self._stop = self._fault_stop(err)
                return
            if self._stop is not None or self._timeout_stop():
                return
            rip = self._rip()
            if self.read_ram(rip - 1, 1) == bytes([HLT]):
                self._stop = Stop(StopReason.HLT, rip - 1, "hlt")
            elif count:
                self._stop = Stop(StopReason.BUDGET, rip, f"instruction budget of {count} exhausted")
            else:
                self._stop = Stop(StopReason.HLT, rip, "emulation ended")
            return

    def _fault_stop(self, err: UcError) -> Stop:
        rip = self._rip()
        insn = self.read_ram(rip, MAX_INSN_LEN)
        if err.errno == UC_ERR_FETCH_UNMAPPED:
            return Stop(StopReason.UNMAPPED, rip, f"instruction fetch from unmapped address {rip:#x}")
        if err.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED):
            return Stop(StopReason.UNMAPPED, rip, f"unmapped access by the instruction at rip={rip:#x}", insn)
        if err.errno == UC_ERR_INSN_INVALID:
            return Stop(
                StopReason.INVALID_INSN,
                rip,
                f"invalid instruction at rip={rip:#x}: {insn[:8].hex(' ')}",
                insn,
            )
        if err.errno == UC_ERR_EXCEPTION:
            return Stop(StopReason.TRIPLE_FAULT, rip, f"unhandled CPU exception at rip={rip:#x}", insn)
        if err.errno in (UC_ERR_READ_PROT, UC_ERR_WRITE_PROT, UC_ERR_FETCH_PROT):
            return Stop(StopReason.TRIPLE_FAULT, rip, f"protection fault at rip={rip:#x} ({err})", insn)
        return Stop(StopReason.TRIPLE_FAULT, rip, f"emulation fault at rip={rip:#x}: {err}", insn)

    def regs(self) -> dict[str, int]:
        """The registers that exist in this mode (R8-R15 and FS/GS base only in 64-bit mode)."""
        snap = self.regfile.snapshot()
        names = REG_NAMES if self.mode == 64 else REG_NAMES[:8] + ("rip", "rflags")
        return {n: snap[REG_INDEX[n]] for n in names}
