"""The Unicorn machine: maps the board, runs a guest image and turns every trap into an ExitRecord.

Two MMIO styles:
- `inplace`: the window is `mmio_map`-ed and a `UC_HOOK_MEM_READ|WRITE` hook on the same range sees
  the whole access with an exact RIP; the device acts in the hook and Unicorn completes the access.
- `exit`: the window is left unmapped. The access faults (`UC_HOOK_MEM_UNMAPPED`), emulation stops
  with RIP on the faulting instruction, and the host handles the exit through a *path* that sees
  only what hardware gives (GPA, RIP, registers, guest memory), then resumes at the next RIP.
Port I/O is trapped with `UC_HOOK_INSN` IN/OUT, `vmcall`/`vmmcall` with `UC_HOOK_INSN_INVALID`.

The machine is a backend of the one exit loop (emu/dispatch.py, `Dispatcher.run`): it traps and
repairs the engine; routing, records, limits and the stop are the dispatcher's (docs/run-loop.md).
"""

from __future__ import annotations

import ctypes
import enum
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import capstone
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
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_16,
    UC_MODE_32,
    UC_MODE_64,
    UC_PROT_ALL,
    Uc,
    UcError,
)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import HOOK_CODE_CFUNC, uclib

from emu.access import Op
from emu.assemble import GuestImage
from emu.board import Board, default_board
from emu.bus import Space
from emu.chain import Path
from emu.codeguard import classify
from emu.cpu import Outcome
from emu.decode import decode
from emu.dispatch import Dispatcher, Event, Resume
from emu.divguard import DivGuard
from emu.errors import ExitlabError, GuestFormatError
from emu.exits import MAX_INSN_LEN, REG_INDEX, REG_NAMES, ExitKind, ExitRecord
from emu.flagsites import FlagFix
from emu.generic import GenericPath
from emu.guard import CodeGuard
from emu.hypercall import is_hypercall
from emu.inplace import InplaceMmio
from emu.interrupt import check_timeout
from emu.iopaths import HypercallPath, InplacePath, PioPath
from emu.platform import PAGE
from emu.ram import GuestRam
from emu.regfile import RegFile
from emu.stop import Stop, StopReason
from emu.sysinsn import system_instruction
from emu.trace import TraceWriter
from emu.vecstate import vector_state

_UC_MODE = {16: UC_MODE_16, 32: UC_MODE_32, 64: UC_MODE_64}
_PLATFORM_CR0 = {64: 0x80000033, 32: 0x33}  # PG|NE|ET|MP|PE in long mode, PE|... in 32-bit (emu/kvm.py)
_CS_MODE = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
# Mnemonics (last word, so `rep stosb` matches) that access memory without a memory operand.
_IMPLICIT_MEMORY = frozenset(
    "movsb movsw movsd movsq stosb stosw stosd stosq lodsb lodsw lodsd lodsq cmpsb cmpsw cmpsd cmpsq "
    "scasb scasw scasd scasq insb insw insd outsb outsw outsd push pop pushf pushfd pushfq popf popfd "
    "popfq pusha pushal popa popal call ret retf enter leave xlatb iret iretd iretq maskmovdqu "
    "maskmovq".split()
)
MAX_BUDGET = (1 << 63) - 1  # --max-insns is 1 .. 2**63-1 (SEMANTICS rule 1)

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

    # YMM, MMX and CR0: the vector-move and SMSW forms of the generic path (emu/semantics/core.py
    # Exec.get_vec / misc.py) find them here, as on a BatchCpu
    def get_ymm(self, index: int) -> int:
        return self.m.regfile.get_ymm(index)

    def set_ymm(self, index: int, value: int) -> None:
        self.m.regfile.set_ymm(index, value)

    def get_mm(self, index: int) -> int:
        return self.m.regfile.get_mm(index)

    def set_mm(self, index: int, value: int) -> None:
        self.m.regfile.set_mm(index, value)

    def get_cr0(self) -> int:
        return self.m.regfile.get_cr0()

    def read_mem(self, addr: int, size: int) -> bytes:
        return self.m.read_ram(addr, size)

    def write_mem(self, addr: int, data: bytes) -> None:
        self.m.write_ram(addr, data)

    def is_mmio(self, gpa: int) -> bool:
        return self.m.mmio_window(gpa) is not None

    def mmio_region(self, gpa: int) -> tuple[int, int] | None:
        """The device range holding `gpa` (an access crossing its end is split there, rule 4)."""
        m = self.m.board.bus.find(Space.MMIO, gpa)
        return (m.base, m.size) if m is not None else self.m.mmio_window(gpa)

    def mmio_read(self, gpa: int, size: int) -> int:
        return self.m.board.bus.read(Space.MMIO, gpa, size)

    def mmio_write(self, gpa: int, size: int, value: int) -> None:
        self.m.board.bus.write(Space.MMIO, gpa, size, value)

    def mmio_claims(self, gpa: int) -> bool:
        return self.m.board.bus.claims(Space.MMIO, gpa)

    def pio_read(self, port: int, size: int) -> int:
        return self.m.board.bus.read(Space.PIO, port, size)

    def pio_write(self, port: int, size: int, value: int) -> None:
        self.m.board.bus.write(Space.PIO, port, size, value)


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
        if path is None and self.mmio_style is MmioStyle.EXIT:
            path = GenericPath()  # the decode path is the default for exit style
        self.path = path
        self.trace = trace
        self.keep_records = keep_records
        # the one exit loop (emu/dispatch.py): routes, records, limits and the stop of this run
        self.dispatch = Dispatcher(self._routes(), trace, keep_records)
        self.uc = Uc(UC_ARCH_X86, _UC_MODE[self.mode])
        self.regfile = RegFile(self.uc, self.mode)
        self._rip_mask = (1 << self.mode) - 1  # RIP/EIP/IP wrap at the mode's width
        self.cpu = UnicornCpu(self)
        spec = self.board.spec
        self.ram_base, self.ram_size = spec.ram.base, spec.ram.size
        self._ram = ctypes.create_string_buffer(self.ram_size)
        self.ram_ptr = ctypes.addressof(self._ram)
        self.ram_view = memoryview(self._ram).cast("B")
        self.ram = GuestRam(self.ram_view, self.ram_base)
        self.uc.mem_map_ptr(self.ram_base, self.ram_size, UC_PROT_ALL, self.ram_ptr)
        self.windows = self._mmio_windows()
        self._pending: tuple[int, int, int, int] | None = None  # access, gpa, size, value
        self._rep: tuple[str, int, int, int, bool | None] | None = None  # a REP capped by the budget
        self._flags_stash: tuple[int, int] = (-1, 0)  # (address, RFLAGS) at the last instruction start
        self._resume: int | None = None  # where to restart after a hypercall
        self._restart: int | None = None  # a hypercall's resume RIP, until the engine restarts there
        self._last_insn = -1  # address of the last instruction start the budget hook saw
        self._smc_insn = -1  # a store that wrote into a code page (see _on_tlb_fill)
        self._identity_tlb = False  # set by _install_guard: CR0.PG then translates nothing
        self.inplace = InplaceMmio(self)
        self.guard = CodeGuard(
            self.uc, self.read_ram, self.ram_base, self.ram_size, self.mode,
            late_rip=self.mmio_style is MmioStyle.EXIT, on_code_written=self._on_code_written,
            on_scan=self._on_scan,
        )
        self.divguard = DivGuard(self)  # IDIV r/m32 that would SIGFPE the host: #DE (emu/divsites.py)
        self._exit_sites: dict[int, bool] = {}  # address -> may end in an exit (budget hook's cache)
        self._budget_cb: Any = None
        self.flagfix = FlagFix(self)  # hooks for the RFLAGS Unicorn gets wrong (emu/flagsites.py)
        self._cs = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODE[self.mode])
        self._cs.detail = True
        self.ram.load(image)

    def _routes(self) -> dict[ExitKind, Path]:
        """Exit kind -> path: MMIO to the exit-style path (or, in place, the access Unicorn
        decoded), port I/O and hypercalls to their paths (emu/iopaths.py)."""
        exit_style = self.mmio_style is MmioStyle.EXIT and self.path is not None
        mmio: Path = self.path if exit_style and self.path is not None else InplacePath()
        pio, hypercall = PioPath(), HypercallPath()
        return {
            ExitKind.MMIO_READ: mmio,
            ExitKind.MMIO_WRITE: mmio,
            ExitKind.PIO_IN: pio,
            ExitKind.PIO_OUT: pio,
            ExitKind.HYPERCALL: hypercall,
        }

    @property
    def records(self) -> list[ExitRecord]:
        return self.dispatch.records

    @property
    def exit_counts(self) -> Counter[str]:
        return self.dispatch.exit_counts

    @property
    def _stop(self) -> Stop | None:
        """The stop decided so far (the dispatcher's; hooks read it to learn a stop is set)."""
        return self.dispatch.stop

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
        """A host write (a path emulating a store to RAM). Unicorn does not see it, so a code page it
        touches is forgotten here: translated blocks dropped, page rescanned before it runs again."""
        self.ram.write(addr, data)
        self.guard.host_write(addr, len(data))

    # -- exits --------------------------------------------------------------------------------
    def _record(self, kind: ExitKind, rip: int, addr: int, size: int, value: int) -> ExitRecord:
        """Build the exit's record and count/trace it (an exit no path handles)."""
        rec = self._exit(kind, rip, addr, size, value)
        self.dispatch.emit(rec)
        return rec

    def _exit(
        self, kind: ExitKind, rip: int, addr: int, size: int, value: int, regs: bool = True
    ) -> ExitRecord:
        """The ExitRecord of a trap, not yet counted nor written (the dispatcher does that).

        `regs=False`: no register snapshot unless the run records exits. For the exits handled in
        a hook (port I/O, hypercalls, in-place MMIO) whose paths read registers through the Cpu
        (emu/iopaths.py), as KVM's records and the C engine's lazy register fill: the snapshot
        costs microseconds per exit that nothing would read."""
        insn = self.read_ram(rip, MAX_INSN_LEN)
        value &= (1 << (8 * max(size, 8))) - 1  # Unicorn's hooks pass the value as a signed int64
        vec: tuple[tuple[str, int], ...] = ()
        recorded = self.dispatch.recording
        if recorded and kind in (ExitKind.MMIO_READ, ExitKind.MMIO_WRITE):
            vec = vector_state(insn, self.mode, self._vec_reg)  # what an SSE/AVX/MMX move or SMSW reads
        rec = ExitRecord(
            kind=kind,
            rip=rip,
            mode=self.mode,
            addr=addr,
            insn=insn,
            regs=self.regfile.snapshot() if regs or recorded else (),
            truth_size=size,
            truth_value=value,
            vec=vec,
        )
        return rec

    def _vec_reg(self, name: str) -> int:
        """xmmN / ymmN / mmN / cr0 from the engine (trace records of vector moves and SMSW)."""
        if name == "cr0":
            return self.regfile.get_cr0()
        if name.startswith("mm"):
            return self.regfile.get_mm(int(name[2:]))
        index = int(name[3:])
        return self.regfile.get_ymm(index) if name.startswith("ymm") else self.regfile.get_xmm(index)

    def _halt(self, reason: StopReason, rip: int, message: str, insn: bytes = b"") -> None:
        self.dispatch.halt(Stop(reason, rip, message, insn))
        self.uc.emu_stop()

    def _rip(self) -> int:
        return self.regfile.get("rip")

    def device_access(self, kind: ExitKind, rip: int, gpa: int, size: int, value: int) -> int | None:
        """An in-place MMIO access (emu/inplace.py), through the dispatcher like every exit: the value
        read (0 for a write), or None when it ended the run (the engine is asked to stop)."""
        read = kind is ExitKind.MMIO_READ
        outcome = self.dispatch.exit(self._exit(kind, rip, gpa, size, value, False), self.cpu, answer=read)
        if outcome is None:
            self.uc.emu_stop()
            return None
        return outcome.accesses[0].value if read and outcome.accesses else 0

    # -- hooks (each catches its own errors: an exception must never cross Unicorn) ----------------
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
                self.dispatch.halt(Stop(StopReason.UNMAPPED, rip, f"{target} (rip={rip:#x})"))
            else:
                self.dispatch.halt(Stop(
                    StopReason.UNMAPPED,
                    rip,
                    f"{target} by the instruction at rip={rip:#x}",
                    self.read_ram(rip, MAX_INSN_LEN),
                ))
        except Exception as exc:  # noqa: BLE001
            self.dispatch.halt(Stop(StopReason.DEVICE_ERROR, 0, f"unmapped-access hook failed: {exc}"))
        return False

    # Port I/O and hypercalls go to the dispatcher from inside the hook: IN must return its value
    # at once; a hypercall stops the engine and the loop restarts at its next RIP (rule 3).
    def _on_in(self, uc: Uc, port: int, size: int, _ud: object) -> int:
        try:
            rip = self._rip()
            self.inplace.note_port_read(rip)
            rec = self._exit(ExitKind.PIO_IN, rip, port, size, 0, False)
            outcome = self.dispatch.exit(rec, self.cpu, True)
            if outcome is None:
                uc.emu_stop()
                return 0
            return outcome.accesses[0].value
        except Exception as exc:  # noqa: BLE001 - an exception must never cross Unicorn
            self._halt(StopReason.DEVICE_ERROR, 0, f"IN hook failed: {exc}")
            return 0

    def _on_out(self, uc: Uc, port: int, size: int, value: int, _ud: object) -> None:
        try:
            rec = self._exit(ExitKind.PIO_OUT, self._rip(), port, size, value, False)
            if self.dispatch.exit(rec, self.cpu) is None:
                uc.emu_stop()
        except Exception as exc:  # noqa: BLE001
            self._halt(StopReason.DEVICE_ERROR, 0, f"OUT hook failed: {exc}")

    def _on_invalid(self, uc: Uc, _ud: object) -> bool:
        try:
            rip = self._rip()
            self._repair_flags(rip)
            insn = self.read_ram(rip, MAX_INSN_LEN)
            if not is_hypercall(insn):
                self.dispatch.halt(Stop(
                    StopReason.INVALID_INSN,
                    rip,
                    f"invalid instruction at rip={rip:#x}: {insn[:8].hex(' ')}",
                    insn,
                ))
                return False
            rec = self._exit(ExitKind.HYPERCALL, rip, self.regfile.get("rax"), 0, 0, False)
            outcome = self.dispatch.exit(rec, self.cpu)
            if outcome is not None:
                # Stop here and let the run loop restart at RIP+3 (SEMANTICS rule 3): writing RIP in
                # the hook and continuing leaves Unicorn's RIP stale for every later exit of the run.
                self._resume = outcome.next_rip
        except Exception as exc:  # noqa: BLE001
            self.dispatch.halt(Stop(StopReason.DEVICE_ERROR, 0, f"invalid-instruction hook failed: {exc}"))
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

    def _install_budget_hook(self) -> None:
        """The instruction counter of SEMANTICS rule 1, as a raw ctypes UC_HOOK_CODE callback.

        Counts instruction starts (QEMU re-enters a REP instruction once per iteration). Registered
        through the C API directly: the binding's wrapper costs ~1.3 us per instruction, this one
        ~0.35 us. It also keeps RFLAGS as they are at the start of every instruction that can end
        in an exit (memory operand or hypercall): with any UC_HOOK_CODE installed, Unicorn 2.1.4
        loses CF when the instruction right after a SUB/CMP faults, and `_repair_flags` puts the
        stashed value back. Reading RFLAGS costs microseconds, hence only at those addresses."""
        handle = self.uc._uch  # noqa: SLF001 - the C handle, for the raw hook and the raw reads
        flags = ctypes.c_uint64(0)
        flags_ref = ctypes.byref(flags)
        reg_read, emu_stop = uclib.uc_reg_read, uclib.uc_emu_stop
        eflags_id = X.UC_X86_REG_EFLAGS
        d = self.dispatch  # the budget is the dispatcher's; this hook is how Unicorn counts for it
        limit = d.max_insns
        assert limit is not None
        sites = self._exit_sites
        classify = self._classify_exit_site

        def on_code(_h: int, address: int, _size: int, _ud: int) -> None:
            if self._smc_insn >= 0:
                smc, self._smc_insn = self._smc_insn, -1
                if address == smc:
                    return  # QEMU re-running a store that invalidated its own block: one instruction
            self._last_insn = address
            if d.executed >= limit:
                d.halt(d.budget_stop(address))
                emu_stop(handle)
                return
            d.executed += 1
            may_exit = sites.get(address)
            if may_exit is None:
                may_exit = classify(address)
            if may_exit:
                reg_read(handle, eflags_id, flags_ref)
                self._flags_stash = (address, flags.value)

        self._budget_cb = HOOK_CODE_CFUNC(on_code)  # kept alive as long as the engine
        hook = ctypes.c_size_t()
        err = uclib.uc_hook_add(
            handle, ctypes.byref(hook), UC_HOOK_CODE, ctypes.cast(self._budget_cb, ctypes.c_void_p), None,
            ctypes.c_uint64(1), ctypes.c_uint64(0),
        )
        if err:
            raise UcError(err)

    def _classify_exit_site(self, address: int) -> bool:
        """Can the instruction at `address` end in an exit the run loop handles (a memory access that
        may fault, or a hypercall)? Cached per address until its page is written."""
        code = self.read_ram(address, MAX_INSN_LEN)
        may = is_hypercall(code)
        if not may:
            insn = next(self._cs.disasm(code, address, 1), None)
            may = insn is None or insn.mnemonic.split(" ")[-1] in _IMPLICIT_MEMORY or any(
                op.type == capstone.x86.X86_OP_MEM for op in insn.operands
            )
        self._exit_sites[address] = may
        return may

    def _on_scan(self, data: bytes, base: int) -> None:
        """A code page is being scanned before QEMU translates it: hook the sites it holds."""
        self.flagfix.hook_sites(data, base)
        self.divguard.scan(data, base)

    def _repair_flags(self, rip: int | None = None) -> None:
        """After a fault at `rip` (default: RIP now), restore RFLAGS from the stash of the budget hook
        or of a SETcc site hook (emu/flagsites.py). RIP is read only when there is a stash."""
        self.flagfix.disarm()  # a faulting LOCK NEG did not complete
        address, flags = self._flags_stash
        if address < 0:
            return
        if address == (self._rip() if rip is None else rip):
            self._flags_stash = (-1, 0)
            self.regfile.set("rflags", flags)

    def _on_code_written(self) -> None:
        """A scanned code page was written (guard): per-address caches are stale, and if the store
        hit its own translated block QEMU runs it again, which the budget must not count twice."""
        self._exit_sites.clear()
        self.inplace.forget_code()
        self._smc_insn = self._last_insn

    def _install_hooks(self, budget_hook: bool) -> None:
        uc = self.uc
        if self.mmio_style is MmioStyle.INPLACE:
            inplace = self.inplace
            for base, size in self.windows:
                uc.mmio_map(base, size, inplace.map_read(base), None, inplace.map_write, None)
                end = base + size - 1
                uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, inplace.on_access, None, base, end)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self._install_guard()
        if budget_hook:
            self._install_budget_hook()

    def _install_guard(self) -> None:
        """The guard of SEMANTICS rule 9 (emu/guard.py). With it Unicorn's exits are enabled, so the
        engine stops on its own only for HLT and in front of a guard site; every other stop is
        requested by this class and records its reason first: `run_until_exit`'s HLT detection is
        exact."""
        self._identity_tlb = True
        self.guard.install()

    def init_regs(self) -> None:
        """Entry state: RSP at the stack top, RFLAGS.IF clear, RIP at the entry (public for the C engine)."""
        rf = self.regfile
        rf.set("rsp", self.board.spec.stack_top)
        rf.set("rflags", 0x2)
        rf.set("rip", self.image.entry)

    # -- the Backend of emu/dispatch.py -----------------------------------------------------------
    def _pending_exit(self) -> ExitRecord:
        """Turn the pending fault into an exit for the dispatcher to route. Under a budget, a REP
        string instruction's count is capped first (`_rep_budget`; `resume` gives the rest back)."""
        assert self._pending is not None
        access, gpa, size, value = self._pending
        self._pending = None
        write = access == UC_MEM_WRITE_UNMAPPED
        kind = ExitKind.MMIO_WRITE if write else ExitKind.MMIO_READ
        rec = self._exit(kind, self._rip(), gpa, size, value if write else 0)
        self._rep = self._rep_budget(rec) if self.dispatch.max_insns is not None else None
        return rec

    def resume(self, exit: ExitRecord, outcome: Outcome | None) -> int | None:
        """After the dispatcher routed an exit-style exit: give back a REP's held-back count and
        charge its iterations to the budget; the RIP to restart at (None: the path failed)."""
        rep, self._rep = self._rep, None
        done = self._rep_settle(rep) if rep is not None else 0
        if outcome is None:
            return None
        next_rip = outcome.next_rip
        if rep is not None:
            next_rip = self._rep_next(exit.rip, next_rip, rep, done)
        self.regfile.set("rip", next_rip)
        return next_rip

    def _rep_next(
        self, rip: int, next_rip: int, rep: tuple[str, int, int, int, bool | None], done: int
    ) -> int:
        """Where a REP string instruction under a budget resumes, with its iterations counted."""
        d = self.dispatch
        d.executed += max(done - 1, 0)  # the code hook counted the first iteration
        if done and rep[4] is not None and bool(self.regfile.get("rflags") & 0x40) == rep[4]:
            # REPE/REPNE CMPS/SCAS ended by its compare: done, and QEMU leaves from that
            # iteration's own entry (no extra entry to find RCX = 0), budget cap or not
            return next_rip
        if self.regfile.get("rcx") & rep[1]:
            if rep[3]:
                return rip  # capped by the budget: an interrupted REP, RIP stays on it (rule 1)
        elif done and next_rip != rip:
            # QEMU enters a REP instruction once more after its last iteration to find RCX = 0,
            # and that entry counts (in place it is a code-hook call): count it here too, or
            # stop in front of it when the budget has no room left, exactly as in place.
            if d.budget_exhausted():
                return rip
            d.executed += 1
        return next_rip

    def rip(self) -> int:
        """RIP now: after a handled hypercall, before the restart, its resume RIP (the vmcall is done)."""
        return self._rip() if self._restart is None else self._restart

    def kick(self) -> None:
        """From the watchdog thread: stop the engine (the dispatcher raised its flag first)."""
        try:
            self.uc.emu_stop()
        except UcError:
            pass

    def run_until_exit(self, rip: int | None) -> Event:
        """Backend.run_until_exit: one `emu_start` from `rip`, turned into the dispatcher's Event. The engine
        stops on its own only for HLT and in front of a guard exit; every other stop is requested by
        a hook, which records its reason first (`_install_guard`), so HLT is known by elimination."""
        d = self.dispatch
        self._resume = self._restart = None
        try:
            self.uc.emu_start(self._rip() if rip is None else rip, 0)  # `until` is ignored: exits are on
        except UcError as err:
            # a fault rolled the instruction back to its start: the stash (if it saw that start)
            # holds its right RFLAGS, also when a hook already decided the stop (unmapped...)
            self._repair_flags()
            if d.stop is not None:
                return None
            if self._resume is not None:  # a hypercall was handled: restart behind it (rule 3)
                self._restart = self._resume  # where the guest is until emu_start runs from there
                return Resume(self._resume)
            if d.external is not None:
                return None
            if self._pending is not None and err.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED):
                return self._pending_exit()
            return self._fault_stop(err)
        if d.stop is not None and d.stop.reason is StopReason.BUDGET:
            self.flagfix.settle_lock_neg(d.stop.rip)  # stopped right after a LOCK NEG: its fix-up
        if d.stop is not None or d.external is not None:
            return None
        rip = self._rip()
        if rip in self.guard.exits:
            next_rip = self._guard_stop(rip)
            if next_rip is None or isinstance(next_rip, Stop):
                return next_rip
            self.regfile.set("rip", next_rip)
            return Resume(next_rip)
        return Stop(StopReason.HLT, (rip - 1) & self._rip_mask, "hlt")

    def _rep_budget(self, rec: ExitRecord) -> tuple[str, int, int, int, bool | None] | None:
        """For a REP string instruction under a budget: cap the count register so the path performs at
        most the iterations the budget has left (SEMANTICS rule 1). Returns (register, mask, count
        handed to the path, count held back, REPNE for CMPS/SCAS else None) for `_rep_settle`, or
        None for anything else. CMPS/SCAS count like MOVS/STOS/LODS (each iteration is an
        instruction, as in place), except that one ended by its compare has no extra entry."""
        try:
            access = decode(rec.insn, self.mode, rec.rip)
        except ExitlabError:
            return None  # the path reports it
        if not access.rep or access.op not in (Op.MOVS, Op.STOS, Op.LODS, Op.CMPS, Op.SCAS):
            return None
        compare = access.repne if access.op in (Op.CMPS, Op.SCAS) else None
        mask = (1 << (8 * access.mem.addr_size)) - 1
        rcx = self.regfile.get("rcx")
        count = rcx & mask
        allowed = 1 + self.dispatch.max_insns - self.dispatch.executed  # type: ignore[operator]
        if count <= allowed:
            return ("rcx", mask, count, 0, compare)
        self.regfile.set("rcx", (rcx & ~mask) | allowed)
        return ("rcx", mask, allowed, count - allowed, compare)

    def _rep_settle(self, rep: tuple[str, int, int, int, bool | None]) -> int:
        """Give back the held-back count; return how many iterations the path performed."""
        _, mask, handed, held, _compare = rep
        rcx = self.regfile.get("rcx")
        left = rcx & mask
        if held:
            self.regfile.set("rcx", (rcx & ~mask) | ((left + held) & mask))
        return handed - left

    def run(self, max_insns: int | None = None, timeout: float | None = 10.0) -> RunResult:
        """Run until hlt, the instruction budget, the wall-clock timeout, SIGINT or a fault."""
        if max_insns is not None and (
            isinstance(max_insns, bool) or not isinstance(max_insns, int) or not 1 <= max_insns <= MAX_BUDGET
        ):
            raise ExitlabError(f"the instruction budget must be 1 .. 2**63-1 (got {max_insns!r})")
        try:
            check_timeout(timeout)
        except ValueError as exc:
            raise ExitlabError(str(exc)) from None
        d = self.dispatch
        d.routes = self._routes()  # `path` may have been replaced since construction
        d.max_insns = max_insns
        d.executed = 0
        self._install_hooks(budget_hook=max_insns is not None)
        self.init_regs()
        if self._identity_tlb and self.mode in _PLATFORM_CR0:
            # CR0 as the platform (and KVM) has it; with the identity TLB of the guard, PG changes
            # no translation, but `mov rax, cr0; mov cr0, rax` must see PG set (emu/sysinsn.py).
            self.uc.reg_write(X.UC_X86_REG_CR0, _PLATFORM_CR0[self.mode])
        t0 = time.perf_counter()
        # The dispatcher's watchdog stops the engine at the deadline or on SIGINT through `kick`.
        # (Unicorn's own `timeout` argument starts a thread per emu_start: milliseconds per exit.)
        stop = d.run(self, self.image.entry, timeout)
        if self._restart is not None:  # stopped between a hypercall and its restart: the guest is there
            self.regfile.set("rip", self._restart)
        seconds = time.perf_counter() - t0
        return RunResult(
            stop=stop,
            exits=dict(self.exit_counts),
            regs=self.regs(),
            console=self.board.console.text,
            devices=self.board.state(),
            records=self.records,
            seconds=seconds,
        )

    def _guard_stop(self, rip: int) -> int | Stop | None:
        """Execution reached a guard exit (emu/codeguard.py): judge the instruction there.

        Returns the RIP to continue at (bytes rewritten since the scan: the exit is dropped; or a
        system instruction the platform allows, carried out here), the Stop it ends in, or None
        when the dispatcher's stop is set or the watchdog fired meanwhile."""
        d = self.dispatch
        insn = self.read_ram(rip, MAX_INSN_LEN)
        g = classify(insn, self.mode, self.guard.late_rip)
        if g is None:
            self.guard.drop(rip)
            return rip
        if d.budget_exhausted():
            return d.budget_stop(rip, insn)
        if g.kind == "lock_ud":
            return Stop(
                StopReason.INVALID_INSN,
                rip,
                f"invalid instruction at rip={rip:#x}: {insn[:8].hex(' ')} (#UD: LOCK prefix on an "
                "instruction or operand that cannot be locked)",
                insn,
            )
        if g.kind == "late_rip":
            return self._step_late_rip(rip, insn)
        verdict = system_instruction(self, g, rip)
        if isinstance(verdict, Stop):
            return verdict
        if d.max_insns is not None:
            d.executed += 1
        return verdict

    def _step_late_rip(self, rip: int, insn: bytes) -> int | Stop | None:
        """Run one helper store (FXSAVE, FNSAVE, MASKMOVDQU...) alone, between two exits, so that a
        fault is known to be its own. Unicorn would report that fault at a later RIP and an address
        inside the operand, and a path would then "handle" the wrong instruction (rule 7). No path
        emulates these instructions, so a fault on an MMIO window is an `emulation_error`."""
        decoded = next(self._cs.disasm_lite(insn, rip, 1), None)
        if decoded is None:
            return Stop(StopReason.INVALID_INSN, rip, f"invalid instruction at rip={rip:#x}", insn)
        length, text = decoded[1], f"{decoded[2]} {decoded[3]}".strip()
        after = (rip + length) & self._rip_mask
        self.guard.step_over(rip, after)
        try:
            self.uc.emu_start(rip, 0)
        except UcError as err:
            if self.dispatch.stop is not None or self.dispatch.external is not None:
                return None
            self._repair_flags(rip)
            if self._pending is not None:
                _, gpa, _, _ = self._pending
                self._pending = None
                return Stop(
                    StopReason.EMULATION_ERROR,
                    rip,
                    f"'{text}' at rip={rip:#x} accesses MMIO at {gpa:#x}; no path emulates it (Unicorn "
                    f"would report this exit at a later RIP) bytes={insn[:length].hex(' ')}",
                    insn,
                )
            return self._fault_stop(err)
        finally:
            self.guard.restore(rip)
        if self.dispatch.stop is not None or self.dispatch.external is not None:
            return None
        return self._rip()

    def _fault_stop(self, err: UcError) -> Stop:
        rip = self._rip()
        insn = self.read_ram(rip, MAX_INSN_LEN)
        if err.errno == UC_ERR_FETCH_UNMAPPED or (err.errno == UC_ERR_FETCH_PROT and self.mmio_window(rip)):
            # in place a device window is mapped (without exec): a fetch there is still no RAM's
            # (exit style, the C engine and KVM all stop `unmapped`)
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
