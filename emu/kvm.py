"""Run a GuestImage under real KVM: oracle 4 of the design, and the machine the seed measured on.

Only the standard library: `fcntl.ioctl` on /dev/kvm, `mmap` for guest RAM and the shared kvm_run
page, ctypes structs from `emu.kvm_abi`. One VM, one vCPU, no in-kernel irqchip (so `hlt` exits
to userspace as KVM_EXIT_HLT).

Memory: one memslot covers exactly the platform's RAM (0x1000-0x400000); everything else -
page 0, the MMIO windows at 0xFEB00000 - has no memslot, so every access there exits with
KVM_EXIT_MMIO after the *kernel* has decoded the instruction (length, size, data). Port I/O exits
with KVM_EXIT_IO. Both are dispatched to the same `Board`/`Bus` the Unicorn machine uses, so device
state is directly comparable.

CPU state at entry matches `emu.machine.Machine.init_regs`: RSP=STACK_TOP, RFLAGS=2, RIP=entry,
flat segments with base 0. Protected and long mode need descriptor tables and page tables that
Unicorn does not; they live in the top pages of RAM, which the built-in snippets never touch:
    0x3F8000  GDT (null, 0x08 code32, 0x10 data, 0x18 code64)     32- and 64-bit modes
    0x3F9000  PML4, 0x3FA000 PDPT, 0x3FB000-0x3FEFFF four PDs   64-bit mode only
The page tables identity-map 0-4 GiB with 2 MiB pages, so the MMIO windows are reachable.
No IDT (base 0, limit 0): any exception escalates to a triple fault (KVM_EXIT_SHUTDOWN), as the
platform's documentation says for Unicorn.

Differences from the Unicorn machine (docs/kvm.md):
- `vmcall`/`vmmcall` never reach userspace: the kernel answers them (unknown numbers, like
  HC_MMIO_WRITE, get -KVM_ENOSYS = -1000 in RAX), so there are no hypercall exit records; on AMD
  the kernel also rewrites an Intel `vmcall` in guest memory into `vmmcall` the first time it runs.
- String port I/O (`rep outsb`) arrives as one KVM_EXIT_IO carrying `count` elements; exit counts
  here are per element (as Unicorn's hooks count them), round trips are in `kvm_exits`.
- KVM cannot count instructions, so there is no instruction budget; a run ends by hlt, a fault,
  the wall-clock timeout or an optional budget of userspace exits.

The timeout: a timer thread sets `immediate_exit` in kvm_run and then kicks the vCPU thread with
a real-time signal whose (no-op) Python handler is installed once from the main thread, so a
KVM_RUN that is spinning in the guest returns EINTR. `immediate_exit` alone would stop a guest
that still exits now and then; a `jmp $` never leaves the kernel without the signal.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from emu import kvm_abi as A
from emu.assemble import GuestImage
from emu.board import Board, default_board
from emu.bus import Space
from emu.chain import Path
from emu.cpu import Outcome
from emu.dispatch import Dispatcher, Event, Resume
from emu.errors import EmulationError, ExitlabError, GuestFormatError, UnmappedAccess
from emu.exits import GPR_NAMES, MAX_INSN_LEN, REG_NAMES, ExitKind, ExitRecord
from emu.interrupt import TIMEOUT, Watchdog, check_timeout
from emu.iopaths import HypercallPath, InplacePath, PioPath
from emu.kvm_ins import FILLER, INS_OPCODES, InsBatch, outs_fault
from emu.kvm_probe import (
    fault_of,
    flags_before_iteration,
    identify_write,
    instruction_ends,
    may_touch_another_place,
    probe_at,
)
from emu.machine import RunResult, Stop, StopReason
from emu.platform import PAGE, PlatformSpec
from emu.ram import GuestRam
from emu.trace import TraceWriter

KVM_DEVICE = "/dev/kvm"

# Reserved top-of-RAM pages (see the module docstring).
GDT_ADDR = 0x3F8000
PML4_ADDR = 0x3F9000
PDPT_ADDR = 0x3FA000
PD_ADDR = 0x3FB000  # four consecutive PDs, one per GiB
RESERVED_BASE = GDT_ADDR
RESERVED_END = PD_ADDR + 4 * PAGE
TSS_ADDR = 0xFFFBD000  # three pages KVM needs for real mode on Intel without unrestricted guest

SEL_CODE32 = 0x08
SEL_DATA = 0x10
SEL_CODE64 = 0x18
_GDT = (
    0,
    0x00CF9B000000FFFF,  # code32: base 0, limit 4 GiB, D=1, present, DPL 0, exec/read, accessed
    0x00CF93000000FFFF,  # data: base 0, limit 4 GiB, B=1, present, read/write, accessed
    0x00AF9B000000FFFF,  # code64: L=1, D=0
)

_MASK64 = (1 << 64) - 1
_MASK32 = 0xFFFFFFFF
_WIDEST_ACCESS = 64  # bytes: MOVDIR64B, ENTER's frame copies aside, the widest single access
_RIP = REG_NAMES.index("rip")
_GO_ON = Resume(None)  # a KVM exit handled inline: KVM_RUN again, from where the vCPU is


class KvmError(ExitlabError):
    """A KVM ioctl failed, or KVM reported a state exitlab cannot turn into a stop."""


class KvmUnavailableError(KvmError):
    """/dev/kvm is absent, not accessible, or too old: the message says which, for a skip reason."""


def _ioctl(fd: int, request: int, arg: Any = 0, what: str = "") -> int:
    try:
        return int(fcntl.ioctl(fd, request, arg))
    except OSError as exc:
        raise KvmError(f"{what or hex(request)}: {os.strerror(exc.errno or 0)}") from None


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def open_kvm() -> int:
    """Open /dev/kvm and check the API version; errors say exactly what is wrong."""
    try:
        fd = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KvmUnavailableError(f"{KVM_DEVICE}: no such device (KVM not loaded or not exposed)") from None
    except PermissionError:
        raise KvmUnavailableError(
            f"{KVM_DEVICE}: permission denied (add the user to the 'kvm' group, or run as root)"
        ) from None
    except OSError as exc:
        raise KvmUnavailableError(f"{KVM_DEVICE}: {exc.strerror}") from None
    try:
        version = int(fcntl.ioctl(fd, A.KVM_GET_API_VERSION, 0))
    except OSError as exc:
        os.close(fd)
        raise KvmUnavailableError(f"{KVM_DEVICE}: KVM_GET_API_VERSION failed: {exc.strerror}") from None
    if version != A.KVM_API_VERSION:
        os.close(fd)
        raise KvmUnavailableError(f"{KVM_DEVICE}: KVM API version {version}, need {A.KVM_API_VERSION}")
    return fd


def kvm_unavailable_reason() -> str | None:
    """None when a VM with one vCPU can be created here, else why not (used for test skips)."""
    try:
        with KvmVm(PlatformSpec()):
            pass
    except KvmError as exc:
        return str(exc)
    return None


# -- host CPU facts (for the bench table and the vmcall/vmmcall choice) -------------------------------
@dataclass(frozen=True, slots=True)
class HostCpu:
    """What the table must say about the machine: vendor, model, and whether we are nested."""

    vendor: str  # "GenuineIntel", "AuthenticAMD", ...
    model: str
    hypervisor: bool  # CPUID.1:ECX[31] on the host: this "host" is itself a guest

    @property
    def is_amd(self) -> bool:
        return self.vendor in ("AuthenticAMD", "HygonGenuine")

    @property
    def native_hypercall(self) -> str:
        return "vmmcall" if self.is_amd else "vmcall"


def host_cpu() -> HostCpu:
    """Read /proc/cpuinfo (Linux only, like KVM): vendor_id, model name and the `hypervisor` flag."""
    vendor, model, flags = "unknown", "unknown", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "vendor_id" and vendor == "unknown":
                    vendor = value
                elif key == "model name" and model == "unknown":
                    model = value
                elif key == "flags" and not flags:
                    flags = value
                if line.strip() == "":
                    break
    except OSError:
        pass
    return HostCpu(vendor=vendor, model=model, hypervisor="hypervisor" in flags.split())


def kvm_backend() -> str:
    """Which KVM vendor module serves /dev/kvm: "vmx" (kvm_intel), "svm" (kvm_amd), "pvm" (kvm_pvm).

    It decides what a hypercall does: VMX/SVM answer `vmcall`/`vmmcall` in the kernel, while PVM
    (pagetable-based, no hardware virtualization; the guest runs de-privileged) only understands its
    own hypercall ABI and leaves a plain `vmcall` spinning in the kernel, never returning.
    """
    for module, name in (("kvm_intel", "vmx"), ("kvm_amd", "svm"), ("kvm_pvm", "pvm")):
        if os.path.isdir(f"/sys/module/{module}"):
            return name
    return "unknown"


# -- the VM ---------------------------------------------------------------------------------------
def _ctypes_addr(mm: mmap.mmap) -> tuple[int, ctypes.c_char]:
    anchor = ctypes.c_char.from_buffer(mm)
    return ctypes.addressof(anchor), anchor


class KvmVm:
    """One VM, its RAM and one vCPU, set up for a mode. A context manager: `close()` frees all.

    The low-level object `run_machine_kvm` and the cost bench build on: it knows nothing about
    boards or exits, only ioctls, memory and registers.
    """

    def __init__(self, spec: PlatformSpec) -> None:
        self.spec = spec
        self.ram_base, self.ram_size = spec.ram.base, spec.ram.size
        self.sys_fd = -1
        self.vm_fd = -1
        self.vcpu_fd = -1
        self._ram: mmap.mmap | None = None
        self._run_mm: mmap.mmap | None = None
        self._anchors: list[Any] = []
        self._eventfds: list[int] = []
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        self.sys_fd = open_kvm()
        try:
            self.vm_fd = int(fcntl.ioctl(self.sys_fd, A.KVM_CREATE_VM, 0))
        except OSError as exc:
            raise KvmUnavailableError(f"{KVM_DEVICE}: KVM_CREATE_VM failed: {exc.strerror}") from None
        # Needed on Intel without unrestricted guest; a no-op on AMD. The address does not fit the
        # C int that fcntl.ioctl passes, so this one goes through libc with an unsigned long.
        _libc().ioctl(self.vm_fd, ctypes.c_ulong(A.KVM_SET_TSS_ADDR), ctypes.c_ulong(TSS_ADDR))
        if self.ram_base % PAGE or self.ram_size % PAGE:
            raise GuestFormatError("KVM needs page-aligned RAM")
        self._ram = mmap.mmap(
            -1, self.ram_size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE
        )
        ram_addr, anchor = _ctypes_addr(self._ram)
        self._anchors.append(anchor)
        self.ram_view = memoryview(self._ram)
        self.ram = GuestRam(self.ram_view, self.ram_base)
        region = A.KvmUserspaceMemoryRegion(
            slot=0, flags=0, guest_phys_addr=self.ram_base, memory_size=self.ram_size, userspace_addr=ram_addr
        )
        _ioctl(self.vm_fd, A.KVM_SET_USER_MEMORY_REGION, region, "KVM_SET_USER_MEMORY_REGION")
        try:
            self.vcpu_fd = int(fcntl.ioctl(self.vm_fd, A.KVM_CREATE_VCPU, 0))
        except OSError as exc:
            raise KvmUnavailableError(f"{KVM_DEVICE}: KVM_CREATE_VCPU failed: {exc.strerror}") from None
        size = _ioctl(self.sys_fd, A.KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")
        self._run_mm = mmap.mmap(self.vcpu_fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.run_view = memoryview(self._run_mm)
        self.run = A.KvmRun.from_buffer(self._run_mm)
        self._anchors.append(self.run)
        self.sync_regs = False
        self._set_cpuid()

    def enable_sync_regs(self) -> bool:
        """Have the kernel copy the GPRs into kvm_run at every exit (KVM_CAP_SYNC_REGS), so that
        `exit_rip` costs no ioctl. Off by default: kvm-bench measures exits without it."""
        self.sync_regs = bool(self.check_extension(A.KVM_CAP_SYNC_REGS) & A.KVM_SYNC_X86_REGS)
        if self.sync_regs:
            self.run.kvm_valid_regs = A.KVM_SYNC_X86_REGS
        return self.sync_regs

    def _set_cpuid(self) -> None:
        """Give the guest the host's supported CPUID: KVM rejects EFER.LME without CPUID.LM."""
        cpuid = A.KvmCpuid2(nent=A.CPUID_MAX_ENTRIES)
        _ioctl(self.sys_fd, A.KVM_GET_SUPPORTED_CPUID, cpuid, "KVM_GET_SUPPORTED_CPUID")
        _ioctl(self.vcpu_fd, A.KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2")

    def close(self) -> None:
        for fd in self._eventfds:
            os.close(fd)
        self._eventfds.clear()
        self._anchors.clear()
        for name in ("run", "run_view", "ram_view"):
            obj = getattr(self, name, None)
            if isinstance(obj, memoryview):
                obj.release()
            if obj is not None:
                setattr(self, name, None)
        for mm in (self._run_mm, self._ram):
            if mm is not None:
                try:
                    mm.close()
                except BufferError:  # a caller still holds a view; the GC unmaps it later
                    pass
        self._run_mm = self._ram = None
        for attr in ("vcpu_fd", "vm_fd", "sys_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)

    def __enter__(self) -> KvmVm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- memory -------------------------------------------------------------------------------
    def read_ram(self, addr: int, size: int) -> bytes:
        return self.ram.read(addr, size)

    def write_ram(self, addr: int, data: bytes) -> None:
        self.ram.write(addr, data)

    def load(self, image: GuestImage) -> None:
        reserved = image.mode != 16
        for seg in image.segments:
            end = seg.addr + len(seg.data)
            if reserved and seg.addr < RESERVED_END and RESERVED_BASE < end:
                raise GuestFormatError(
                    f"{image.name}: segment at {seg.addr:#x} overlaps {RESERVED_BASE:#x}-"
                    f"{RESERVED_END - 1:#x}, where the KVM engine keeps its GDT and page tables"
                )
        self.ram.load(image)

    # -- registers ----------------------------------------------------------------------------
    def get_regs(self) -> A.KvmRegs:
        regs = A.KvmRegs()
        _ioctl(self.vcpu_fd, A.KVM_GET_REGS, regs, "KVM_GET_REGS")
        return regs

    def exit_rip(self) -> int:
        """RIP at the last exit: from the sync-regs area when the kernel fills it, else an ioctl.
        Only valid right after an exit, before any KVM_SET_REGS."""
        if self.sync_regs:
            return int(self.run.s_regs.rip)
        return int(self.get_regs().rip)

    def set_regs(self, regs: A.KvmRegs) -> None:
        _ioctl(self.vcpu_fd, A.KVM_SET_REGS, regs, "KVM_SET_REGS")

    def get_sregs(self) -> A.KvmSregs:
        sregs = A.KvmSregs()
        _ioctl(self.vcpu_fd, A.KVM_GET_SREGS, sregs, "KVM_GET_SREGS")
        return sregs

    def set_sregs(self, sregs: A.KvmSregs) -> None:
        _ioctl(self.vcpu_fd, A.KVM_SET_SREGS, sregs, "KVM_SET_SREGS")

    def setup(self, mode: int, entry: int, stack_top: int) -> None:
        """Enter `mode` with the Unicorn machine's entry state (flat segments, RSP, RFLAGS=2, RIP)."""
        sregs = self.get_sregs()
        if mode == 16:
            for seg in (sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
                seg.base, seg.selector = 0, 0
            sregs.cr0 = A.CR0_ET  # reset state minus CD/NW: caches on, still real mode
        elif mode in (32, 64):
            self._write_tables(paging=mode == 64)
            code = sregs.cs
            code.base, code.limit, code.type = 0, _MASK32, 0xB  # execute/read, accessed
            code.present, code.s, code.g = 1, 1, 1
            code.dpl = code.avl = code.unusable = 0
            if mode == 64:
                code.selector, code.l, code.db = SEL_CODE64, 1, 0
            else:
                code.selector, code.l, code.db = SEL_CODE32, 0, 1
            for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
                seg.base, seg.limit, seg.selector, seg.type = 0, _MASK32, SEL_DATA, 0x3
                seg.present = seg.db = seg.s = seg.g = 1
                seg.dpl = seg.l = seg.avl = seg.unusable = 0
            sregs.gdt.base, sregs.gdt.limit = GDT_ADDR, 8 * len(_GDT) - 1
            sregs.idt.base, sregs.idt.limit = 0, 0
            sregs.cr0 = A.CR0_PE | A.CR0_MP | A.CR0_ET | A.CR0_NE
            sregs.cr4 = A.CR4_OSFXSR | A.CR4_OSXMMEXCPT
            if mode == 64:
                sregs.cr3 = PML4_ADDR
                sregs.cr4 |= A.CR4_PAE
                sregs.cr0 |= A.CR0_PG
                sregs.efer = A.EFER_LME | A.EFER_LMA
        else:
            raise GuestFormatError(f"mode must be 16, 32 or 64 (got {mode})")
        self.set_sregs(sregs)
        regs = A.KvmRegs(rsp=stack_top, rflags=0x2, rip=entry)
        self.set_regs(regs)

    def _write_tables(self, paging: bool) -> None:
        self.write_ram(GDT_ADDR, b"".join(d.to_bytes(8, "little") for d in _GDT))
        if not paging:
            return
        present_rw, large = 0x3, 0x80
        pml4 = (PDPT_ADDR | present_rw).to_bytes(8, "little") + bytes(PAGE - 8)
        pdpt = b"".join((PD_ADDR + i * PAGE | present_rw).to_bytes(8, "little") for i in range(4))
        self.write_ram(PML4_ADDR, pml4)
        self.write_ram(PDPT_ADDR, pdpt + bytes(PAGE - len(pdpt)))
        pds = b"".join(((i << 21) | present_rw | large).to_bytes(8, "little") for i in range(4 * 512))
        self.write_ram(PD_ADDR, pds)

    # -- running ------------------------------------------------------------------------------
    def kvm_run(self) -> int:
        """One KVM_RUN; returns the exit reason (KVM_EXIT_INTR when interrupted by the watchdog)."""
        try:
            fcntl.ioctl(self.vcpu_fd, A.KVM_RUN, 0)
        except InterruptedError:
            return A.KVM_EXIT_INTR
        except OSError as exc:
            raise KvmError(f"KVM_RUN: {os.strerror(exc.errno or 0)}") from None
        return int(self.run.exit_reason)

    def check_extension(self, cap: int) -> int:
        return _ioctl(self.sys_fd, A.KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION")

    def add_ioeventfd(self, addr: int, length: int, pio: bool = False, datamatch: int | None = None) -> int:
        """Register an in-kernel notifier: matching guest writes signal an eventfd, no exit at all.

        `length` 0 (MMIO only, KVM_CAP_IOEVENTFD_ANY_LENGTH) matches a write of any size: upstream's
        "fast MMIO", which on Intel EPT skips the instruction decode entirely. Returns the eventfd.
        """
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._eventfds.append(efd)
        flags = (A.KVM_IOEVENTFD_FLAG_PIO if pio else 0) | (
            A.KVM_IOEVENTFD_FLAG_DATAMATCH if datamatch is not None else 0
        )
        req = A.KvmIoeventfd(datamatch=datamatch or 0, addr=addr, len=length, fd=efd, flags=flags)
        _ioctl(self.vm_fd, A.KVM_IOEVENTFD, req, "KVM_IOEVENTFD")
        return efd


# -- the watchdog ----------------------------------------------------------------------------------
KICK_SIGNAL = signal.SIGRTMIN + 6 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR2


def _kick_handler(signum: int, frame: object) -> None:
    """Does nothing: its only job is to make KVM_RUN return EINTR in the vCPU thread."""


def _kick_ready() -> bool:
    """Install the no-op kick handler once (only the main thread may); True if a kick is safe."""
    current = signal.getsignal(KICK_SIGNAL)
    if current is _kick_handler:
        return True
    if current in (signal.SIG_DFL, None) and threading.current_thread() is threading.main_thread():
        signal.signal(KICK_SIGNAL, _kick_handler)
        return True
    return False


class VcpuKicker:
    """Makes a KVM_RUN of this thread return: immediate_exit for the next entry, a signal to the
    vCPU thread for this one (KVM_RUN returns EINTR). Create on the vCPU thread; `kick` from any
    thread until `finish`."""

    def __init__(self, vm: KvmVm) -> None:
        self.vm = vm
        self._lock = threading.Lock()
        self._done = False
        self._thread_id = threading.get_ident()
        self._can_kick = _kick_ready()

    def kick(self) -> None:
        with self._lock:
            if self._done:
                return
            if self.vm.run is not None:
                self.vm.run.immediate_exit = 1
            if self._can_kick:
                signal.pthread_kill(self._thread_id, KICK_SIGNAL)

    def finish(self) -> None:
        with self._lock:
            self._done = True


class _Watchdog:
    """For a raw KVM_RUN loop (exitlab/tools/kvmcosts.py): stops it at the deadline or on SIGINT
    (emu/interrupt.py). Machine runs get the same from the dispatcher's watchdog + `kick`."""

    def __init__(self, vm: KvmVm, timeout: float | None) -> None:
        self.timeout = timeout
        self.reason: str | None = None
        self._kicker = VcpuKicker(vm)
        self._dog = Watchdog(self._fire, timeout).start()

    @property
    def fired(self) -> bool:
        return self.reason is not None

    def _fire(self, reason: str = TIMEOUT) -> None:
        self.reason = reason
        self._kicker.kick()

    def finish(self) -> None:
        self._kicker.finish()
        self._dog.finish()


# -- the machine --------------------------------------------------------------------------------
@dataclass
class KvmRunResult(RunResult):
    """A RunResult plus the userspace round trips by KVM exit reason (string I/O batches elements)."""

    kvm_exits: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = RunResult.to_json(self)
        out["engine"] = "kvm"
        out["kvm_exits"] = self.kvm_exits
        return out


def mmio_windows(board: Board) -> list[tuple[int, int]]:
    """Page-aligned spans of the bus's MMIO mappings: the same windows the Unicorn machine maps."""
    spans: list[list[int]] = []
    for m in board.bus.mappings(Space.MMIO):
        lo, hi = m.base & ~(PAGE - 1), (m.end + PAGE - 1) & ~(PAGE - 1)
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    return [(lo, hi - lo) for lo, hi in spans]


class KvmCpu:
    """The `Cpu` seam over a KVM vCPU: registers by ioctl (read only when a path asks), RAM from
    the memslot's mapping, MMIO and port I/O to the board's bus. The kernel decodes every exit, so
    the paths routed here (emu/iopaths.py: pio, inplace) touch devices only."""

    def __init__(self, machine: KvmMachine) -> None:
        self.m = machine
        self.mode = machine.mode
        self.bus = machine.board.bus

    def get(self, name: str) -> int:
        return int(getattr(self.m.vm.get_regs(), name)) & self.m._mask

    def set(self, name: str, value: int) -> None:
        regs = self.m.vm.get_regs()
        setattr(regs, name, value & self.m._mask)
        self.m.vm.set_regs(regs)

    def get_xmm(self, index: int) -> int:
        raise EmulationError(f"the KVM engine reads no xmm{index} for a path (the kernel decodes)")

    def set_xmm(self, index: int, value: int) -> None:
        raise EmulationError(f"the KVM engine writes no xmm{index} for a path (the kernel decodes)")

    def read_mem(self, addr: int, size: int) -> bytes:
        return self.m.vm.read_ram(addr, size)

    def write_mem(self, addr: int, data: bytes) -> None:
        self.m.vm.write_ram(addr, data)

    def is_mmio(self, gpa: int) -> bool:
        return self.m.in_window(gpa)

    def mmio_region(self, gpa: int) -> tuple[int, int] | None:
        m = self.bus.find(Space.MMIO, gpa)
        return (m.base, m.size) if m is not None else None

    def mmio_claims(self, gpa: int) -> bool:
        return self.bus.claims(Space.MMIO, gpa)

    def mmio_read(self, gpa: int, size: int) -> int:
        return self.bus.read(Space.MMIO, gpa, size)

    def mmio_write(self, gpa: int, size: int, value: int) -> None:
        self.bus.write(Space.MMIO, gpa, size, value)

    def pio_read(self, port: int, size: int) -> int:
        return self.bus.read(Space.PIO, port, size)

    def pio_write(self, port: int, size: int, value: int) -> None:
        self.bus.write(Space.PIO, port, size, value)


class KvmMachine:
    """One guest on one board under KVM. Create, `run()`, read the result; not reusable.

    A backend of the one exit loop (emu/dispatch.py): `run_until_exit` is one KVM_RUN whose
    port I/O and MMIO exits (already decoded by the kernel) go to the dispatcher inline, through
    the pio and inplace paths; the rewinds of SEMANTICS rule 6 (emu/kvm_probe.py) and the INS
    batches (emu/kvm_ins.py) are this engine's own repairs."""

    def __init__(
        self,
        image: GuestImage,
        board: Board | None = None,
        trace: TraceWriter | None = None,
        keep_records: bool = False,
    ) -> None:
        self.image = image
        self.mode = image.mode
        self.board = board or default_board()
        self.trace = trace
        self.keep_records = keep_records
        inplace, pio = InplacePath(), PioPath(completed=True)  # KVM reports I/O with RIP past it
        routes: dict[ExitKind, Path] = {
            ExitKind.MMIO_READ: inplace,
            ExitKind.MMIO_WRITE: inplace,
            ExitKind.PIO_IN: pio,
            ExitKind.PIO_OUT: pio,
            ExitKind.HYPERCALL: HypercallPath(),  # never reached: the kernel answers hypercalls
        }
        self.dispatch = Dispatcher(routes, trace, keep_records)
        self.kvm_exits: Counter[str] = Counter()
        self.windows = mmio_windows(self.board)
        self.vm = KvmVm(self.board.spec)
        try:
            self.vm.load(image)
            self.vm.setup(self.mode, image.entry, self.board.spec.stack_top)
            self.vm.enable_sync_regs()  # the exit checks read RIP at every MMIO read
        except BaseException:
            self.vm.close()
            raise
        self._mask = _MASK64 if self.mode == 64 else _MASK32
        # INS elements KVM read ahead from a port and will write to a window as one access: the
        # device must see one write per element (rule 4), low address first
        self._ins = InsBatch()
        self._reads: list[tuple[int, int, int, int, int]] = []  # (rip, rcx, gpa, size, value)
        self._ends: dict[int, int] = {}  # the code's instruction stream (kvm_probe.instruction_ends)
        for seg in image.segments:
            if seg.addr <= image.entry < seg.addr + len(seg.data):
                self._ends = instruction_ends(seg.data[image.entry - seg.addr :], image.entry, self.mode)
        gprs = GPR_NAMES if self.mode == 64 else GPR_NAMES[:8]
        self._compare = (*gprs, "rip", "rflags")
        self.cpu = KvmCpu(self)
        self._kicker: VcpuKicker | None = None

    @property
    def records(self) -> list[ExitRecord]:
        return self.dispatch.records

    @property
    def exit_counts(self) -> Counter[str]:
        return self.dispatch.exit_counts

    def close(self) -> None:
        self.vm.close()

    def in_window(self, gpa: int) -> bool:
        return any(base <= gpa < base + size for base, size in self.windows)

    def _snapshot(self) -> tuple[int, ...]:
        """REG_NAMES order (x86 encoding order, then rip, rflags, fs/gs base), like RegFile.snapshot."""
        r = self.vm.get_regs()
        m = self._mask
        vals = {name: getattr(r, name) & m for name in REG_NAMES[:18]}
        if self.mode == 64:
            s = self.vm.get_sregs()
            vals["fs_base"], vals["gs_base"] = s.fs.base, s.gs.base
        else:
            for name in ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"):
                vals[name] = 0
            vals["fs_base"] = vals["gs_base"] = 0
        return tuple(vals[n] for n in REG_NAMES)

    def regs(self) -> dict[str, int]:
        snap = self._snapshot()
        names = REG_NAMES if self.mode == 64 else REG_NAMES[:8] + ("rip", "rflags")
        return {n: snap[REG_NAMES.index(n)] for n in names}

    # -- exits that must fault (SEMANTICS rule 6; emu/kvm_probe.py) ---------------------------------
    def _state(self) -> dict[str, int]:
        return dict(zip(REG_NAMES, self._snapshot(), strict=True))

    def _read_ram(self, addr: int, size: int) -> bytes:
        return self.vm.ram.read(addr, size)

    def _mapped(self, addr: int) -> bool:
        return self.in_window(addr) or bool(self.vm.ram.read(addr, 1))

    def _near_window_edge(self, gpa: int, length: int) -> bool:
        """May this write exit be the first piece of an access that goes on into unmapped space?

        KVM hands userspace a page's fragment in pieces of at most 8 bytes, so the first piece of
        a wide store (up to 64 bytes) can end short of the page end it runs over.
        """
        end = gpa + length
        page_end = (gpa | (PAGE - 1)) + 1
        if self.in_window(page_end):
            return False
        return end == page_end or (length == 8 and page_end - end < _WIDEST_ACCESS)

    def _mmio_fault(self, gpa: int, length: int, write: bool) -> Stop | None:
        """The precise `unmapped` stop for the instruction behind this MMIO exit, or None.

        Only an exit outside the windows, or a piece near a window end that borders unmapped space
        (`_near_window_edge`), can belong to a faulting access, and for a read also an instruction
        with another memory operand (MOVS/CMPS, the stack). A read exit shows the state before the
        instruction (KVM writes nothing back until the data is in), so the instruction at RIP is
        checked as it stands. A write exit shows the state after it; the instruction is identified
        first (emu/kvm_probe.py).
        """
        near_edge = self._near_window_edge(gpa, length)
        if self.in_window(gpa) and not near_edge:
            if write:
                return None
            rip = self.vm.exit_rip() & self._mask
            if not may_touch_another_place(rip, self.mode, self._read_ram):
                return None
        state = self._state()
        if not write:
            got = probe_at(state["rip"], state, self.mode, self._read_ram, self.in_window)
            if got is None:  # not decodable by the generic path: OUTS is checked here
                code = self.vm.read_ram(state["rip"], MAX_INSN_LEN)
                bad = outs_fault(code, self.mode, state, self._mapped)
                if bad is None:
                    return None
                return self._fault_stop(state["rip"], state, UnmappedAccess(bad, False), restore=False)
            if got[1] is None:
                return None
            found, pre = got[0], got[0].regs
            rcx_mask = (1 << (8 * found.access.mem.addr_size)) - 1
            answers = {
                (g, n): v for rip, rcx, g, n, v in self._reads
                if rip == found.rip and rcx & rcx_mask == (pre["rcx"] + 1) & rcx_mask
            }
            flags = flags_before_iteration(found, self.mode, self._read_ram, answers) if answers else None
            if flags is not None and flags != pre["rflags"]:
                return self._fault_stop(found.rip, dict(pre, rflags=flags), got[1], restore=True)
            return self._fault_stop(found.rip, pre, got[1], restore=False)
        store = identify_write(state, gpa, self.mode, self._read_ram, self._compare, self._ends)
        if store is None:
            return None
        fault = fault_of(store, self.mode, self._read_ram, self.in_window)
        return None if fault is None else self._fault_stop(store.rip, store.regs, fault, restore=True)

    def _fault_stop(self, rip: int, pre: dict[str, int], fault: UnmappedAccess, restore: bool) -> Stop:
        """Stop `unmapped` on the instruction with the registers as before it (for a REP: before
        the faulting iteration). `restore`: KVM already wrote the registers back (a write exit), so
        put the pre-instruction state into the vCPU; the pending MMIO completion is never run."""
        if restore:
            regs = self.vm.get_regs()
            for name in self._compare:
                setattr(regs, name, pre[name] & self._mask)
            self.vm.set_regs(regs)
        what = "write to" if fault.write else "read from"
        return Stop(
            StopReason.UNMAPPED,
            rip,
            f"{what} unmapped address {fault.gpa:#x} by the instruction at rip={rip:#x}",
            self.vm.read_ram(rip, MAX_INSN_LEN),
        )

    def _plan_ins(self, size: int, count: int) -> tuple[Stop | None, int]:
        """At a port-input exit: (a stop, how many elements to read from the port) - emu/kvm_ins.py.

        Not INS: (None, count). INS whose first element's store leaves RAM and the windows: the
        `unmapped` stop before its port read (as Unicorn's INS probes the store first)."""
        rip = self.vm.exit_rip() & self._mask
        code = self.vm.read_ram(rip, MAX_INSN_LEN)
        if not any(op in code for op in INS_OPCODES):  # cheap: most port inputs are IN
            self._ins.clear()
            return None, count
        state = self._state()
        real = self._ins.plan(code, self.mode, state, size, count, self.in_window, self._mapped)
        if real is None:
            return None, count
        if real == 0:
            assert self._ins.fault is not None
            fault = UnmappedAccess(self._ins.fault[0], True, rip)
            self._ins.clear()
            return self._fault_stop(rip, state, fault, restore=False), 0
        return None, real

    def _rip(self) -> int:
        return int(self.vm.get_regs().rip) & self._mask

    def _exit_head(self) -> tuple[int, bytes, tuple[int, ...]]:
        """What every record of this KVM exit shares: RIP, the bytes there, and the registers (only
        when the run records exits; the paths read none, as the kernel decoded the exit)."""
        snap = self._snapshot() if self.dispatch.recording else ()
        rip = snap[_RIP] if snap else self.vm.exit_rip() & self._mask
        return rip, self.vm.read_ram(rip, MAX_INSN_LEN), snap

    def _exit(
        self, head: tuple[int, bytes, tuple[int, ...]], kind: ExitKind, addr: int, size: int, value: int
    ) -> ExitRecord:
        rip, insn, snap = head
        return ExitRecord(kind, rip, self.mode, addr, insn, snap, size, value)

    def _stop_at(self, reason: StopReason, message: str, insn: bool = True) -> Stop:
        rip = self._rip()
        return Stop(
            reason, rip, message.format(rip=rip), self.vm.read_ram(rip, MAX_INSN_LEN) if insn else b""
        )

    def run(self, timeout: float | None = 10.0, max_exits: int | None = None) -> KvmRunResult:
        """Run until hlt, a fault, the timeout or `max_exits` userspace exits."""
        if max_exits is not None and max_exits <= 0:
            raise ExitlabError("the exit budget must be positive")
        try:
            check_timeout(timeout)
        except ValueError as exc:
            raise ExitlabError(str(exc)) from None
        t0 = time.perf_counter()
        self.dispatch.max_exits = max_exits
        self._kicker = VcpuKicker(self.vm)
        try:
            stop = self.dispatch.run(self, None, timeout)
        finally:
            self._kicker.finish()
        seconds = time.perf_counter() - t0
        return KvmRunResult(
            stop=stop,
            exits=dict(self.exit_counts),
            regs=self.regs(),
            console=self.board.console.text,
            devices=self.board.state(),
            records=self.records,
            seconds=seconds,
            kvm_exits=dict(self.kvm_exits),
        )

    # -- the Backend of emu/dispatch.py -----------------------------------------------------------
    def rip(self) -> int:
        return self._rip()

    def kick(self) -> None:
        """From the watchdog thread: make KVM_RUN return (a `jmp $` never leaves the kernel else)."""
        if self._kicker is not None:
            self._kicker.kick()

    def resume(self, exit: ExitRecord, outcome: Outcome | None) -> int | None:
        """Not used: every exit is handled inline, in `run_until_exit` (the kernel completes it)."""
        return None if outcome is None else outcome.next_rip

    def run_until_exit(self, rip: int | None) -> Event:
        """Backend.run_until_exit: one KVM_RUN, from where the vCPU is (`rip` is always None)."""
        vm = self.vm
        reason = vm.kvm_run()
        self.kvm_exits[A.EXIT_NAMES.get(reason, f"exit_{reason}")] += 1
        if reason == A.KVM_EXIT_IO:
            return self._on_io()
        if reason == A.KVM_EXIT_MMIO:
            return self._on_mmio()
        if reason == A.KVM_EXIT_HLT:
            return Stop(StopReason.HLT, (self._rip() - 1) & self._mask, "hlt")
        if reason == A.KVM_EXIT_INTR:
            return None  # the watchdog's kick: the dispatcher makes the stop
        if reason == A.KVM_EXIT_SHUTDOWN:
            return self._stop_at(
                StopReason.TRIPLE_FAULT,
                "triple fault (KVM_EXIT_SHUTDOWN) near rip={rip:#x}; the platform has no IDT",
            )
        if reason == A.KVM_EXIT_FAIL_ENTRY:
            fe = vm.run.u.fail_entry
            raise KvmError(
                "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason "
                f"{fe.hardware_entry_failure_reason:#x} "
                f"on cpu {fe.cpu} (the engine's initial CPU state is invalid for {self.mode}-bit mode)"
            )
        if reason == A.KVM_EXIT_INTERNAL_ERROR:
            return self._internal_error()
        return self._stop_at(
            StopReason.EMULATION_ERROR,
            f"unexpected {A.EXIT_NAMES.get(reason, f'exit reason {reason}')} at rip={{rip:#x}}",
        )

    def _on_io(self) -> Event:
        """One KVM_EXIT_IO: `count` elements (string I/O), each an exit of the pio path."""
        io_u, view, d, cpu = self.vm.run.u.io, self.vm.run_view, self.dispatch, self.cpu
        size, port, count, off = io_u.size, io_u.port, io_u.count, io_u.data_offset
        if io_u.direction == A.KVM_EXIT_IO_OUT:
            self._ins.clear()
            head = self._exit_head()
            for i in range(count):
                o = off + i * size
                value = int.from_bytes(view[o : o + size], "little")
                if d.exit(self._exit(head, ExitKind.PIO_OUT, port, size, value), cpu) is None:
                    return None
            return _GO_ON
        stop, real = self._plan_ins(size, count)
        if stop is not None:
            return stop
        head = self._exit_head()
        mask = (1 << (8 * size)) - 1
        for i in range(real):
            outcome = d.exit(self._exit(head, ExitKind.PIO_IN, port, size, 0), cpu, answer=True)
            if outcome is None:
                return None
            o = off + i * size
            view[o : o + size] = (outcome.accesses[0].value & mask).to_bytes(size, "little")
        # elements KVM reads ahead but will not store (emu/kvm_ins.py): no port read
        view[off + real * size : off + count * size] = bytes([FILLER] * ((count - real) * size))
        return _GO_ON

    def _on_mmio(self) -> Event:
        """One KVM_EXIT_MMIO: a piece of a batched INS store, a fault (rule 6), or one access (one
        exit of the inplace path per device piece)."""
        mmio_u = self.vm.run.u.mmio
        gpa, length, write = mmio_u.phys_addr, mmio_u.len, bool(mmio_u.is_write)
        data = bytes(mmio_u.data)[:length]
        pieces: list[tuple[int, int, int]] = []
        if write and self._ins.active:
            try:
                pieces, fault_now = self._ins.store(gpa, length, data)
            except ValueError as exc:
                return self._stop_at(StopReason.EMULATION_ERROR, f"{exc} (rip={{rip:#x}})")
            if fault_now:
                done = self._ins_fault_after(pieces)
                self._ins.clear()
                return done
        if not pieces:
            self._ins.clear()
            stop = self._mmio_fault(gpa, length, write)
            if stop is not None:
                return stop
            if not self.in_window(gpa):
                what = "write of" if write else "read of"
                return self._stop_at(
                    StopReason.UNMAPPED,
                    f"{what} {length} bytes at unmapped address {gpa:#x} "
                    "by the instruction at rip={rip:#x}",
                )
            pieces = [(gpa, length, int.from_bytes(data, "little"))]
        head = self._exit_head()
        d, cpu = self.dispatch, self.cpu
        if write:
            for addr, n, value in pieces:
                if d.exit(self._exit(head, ExitKind.MMIO_WRITE, addr, n, value), cpu) is None:
                    return None
            return _GO_ON
        outcome = d.exit(self._exit(head, ExitKind.MMIO_READ, gpa, length, 0), cpu, answer=True)
        if outcome is None:
            return None
        value = outcome.accesses[0].value
        ctypes.memmove(mmio_u.data, value.to_bytes(8, "little"), 8)
        if self.vm.sync_regs:  # for flags_before_iteration: the last few reads served
            sr = self.vm.run.s_regs
            self._reads.append((sr.rip, sr.rcx, gpa, length, value))
            del self._reads[:-4]
        return _GO_ON

    def _ins_fault_after(self, pieces: list[tuple[int, int, int]]) -> Stop | None:
        """The INS batch reached its faulting element: store the earlier ones, then stop on the
        instruction with the state before the faulting element (KVM wrote back the whole batch).
        None: a device failed on one of them (the dispatcher has the stop)."""
        assert self._ins.fault is not None
        head = self._exit_head()
        for addr, n, value in pieces:
            if self.dispatch.exit(self._exit(head, ExitKind.MMIO_WRITE, addr, n, value), self.cpu) is None:
                return None
        fault = UnmappedAccess(self._ins.fault[0], True, self._ins.rip)
        return self._fault_stop(self._ins.rip, self._ins.registers_at_fault(), fault, restore=True)

    def _internal_error(self) -> Stop:
        ie = self.vm.run.u.internal
        what = A.INTERNAL_SUBERRORS.get(ie.suberror, f"suberror {ie.suberror}")
        data = " ".join(f"{ie.data[i]:#x}" for i in range(min(ie.ndata, 16)))
        rip = self._rip()
        ram_end = self.vm.ram_base + self.vm.ram_size
        if not (self.vm.ram_base <= rip < ram_end):
            return Stop(
                StopReason.UNMAPPED, rip, f"instruction fetch from unmapped address {rip:#x} ({what})"
            )
        if ie.suberror == 1:
            # KVM's emulator refused the instruction (e.g. an SSE store) before doing anything; if
            # its access leaves RAM and the windows, the architecture's answer is the fault (rule 6)
            state = self._state()
            got = probe_at(rip, state, self.mode, self._read_ram, self.in_window)
            if got is not None and got[1] is not None:
                return self._fault_stop(rip, state, got[1], restore=False)
        return Stop(
            StopReason.EMULATION_ERROR,
            rip,
            f"KVM_EXIT_INTERNAL_ERROR: {what} at rip={rip:#x}" + (f" (data {data})" if data else ""),
            self.vm.read_ram(rip, MAX_INSN_LEN),
        )


def run_machine_kvm(
    image: GuestImage,
    board: Board | None = None,
    max_insns: int | None = None,
    timeout: float | None = 10.0,
    trace: TraceWriter | None = None,
    keep_records: bool = False,
    max_exits: int | None = None,
) -> KvmRunResult:
    """`exitlab run --engine kvm`: the same image and board as the Unicorn machine, on real KVM.

    `max_insns` is rejected: hardware virtualization has no instruction counter to stop on.
    """
    if max_insns is not None:
        raise ExitlabError(
            "--max-insns: KVM cannot count guest instructions; bound the run with --timeout instead"
        )
    machine = KvmMachine(image, board, trace=trace, keep_records=keep_records)
    try:
        return machine.run(timeout=timeout, max_exits=max_exits)
    finally:
        machine.close()


__all__ = [
    "KvmError",
    "KvmMachine",
    "KvmRunResult",
    "KvmUnavailableError",
    "KvmVm",
    "HostCpu",
    "host_cpu",
    "kvm_backend",
    "kvm_unavailable_reason",
    "run_machine_kvm",
]
