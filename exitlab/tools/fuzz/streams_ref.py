"""The independent reference for stream fuzzing: no exits, no paths, no mmio_map.

The in-place Python path has been wrong (issue 11 row 1), so it cannot be the reference. Here the
two MMIO windows are plain RAM, pre-filled with the register device's reset contents, and Unicorn
executes every instruction itself; memory hooks only *record* what touched the windows, and the
record is replayed into a fresh board's devices to get the device state (kicks per queue, counts,
register contents). What a read returns comes from RAM, i.e. from Unicorn's own load path, so a
misaligned read or a MOVS between windows cannot be answered wrongly by a device shim.

Rules (docs/fuzzing-streams.md, docs/SEMANTICS.md):
- one guest access = one device access, split only at a region boundary (NOTIFY_MMIO's end is
  REGS_MMIO's start), low piece first;
- the notify device reads as 0: its RAM is zeroed in the read hook before the load sees it;
- accesses are committed when the next instruction starts; a fault discards the faulting
  instruction's (iteration's) accesses, so nothing of a faulting access reaches a device;
- the budget counts code-hook executions (Unicorn/QEMU's count: a REP instruction executes once
  per iteration plus once more finding RCX=0); HLT counts; a budget stop is before the
  instruction, RIP on it;
- a hypercall stops the engine on the vmcall, is performed, and the run restarts at RIP+3.
"""

from __future__ import annotations

import ctypes
from typing import Any

import capstone
from unicorn import (
    UC_ARCH_X86,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_MEM_READ,
    UC_MEM_WRITE,
    UC_MODE_32,
    UC_MODE_64,
    UC_PROT_ALL,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from emu.assemble import GuestImage
from emu.board import default_board
from emu.bus import Space
from emu.decode import effective_address, mem_operand
from emu.devices import RegisterDevice
from emu.divsites import TRAP_DIVIDEND, Idiv32, host_traps, idiv32
from emu.exits import REG_NAMES
from emu.flagsites import lock_neg
from emu.hypercall import HYPERCALL_LEN, is_hypercall
from emu.platform import (
    HC_MMIO_WRITE,
    KVM_EFAULT,
    KVM_EINVAL,
    KVM_ENOSYS,
    NOTIFY_MMIO,
    NOTIFY_MMIO_SIZE,
    REGS_MMIO,
    REGS_MMIO_SIZE,
    PlatformSpec,
)
from emu.regfile import RegFile
from emu.semantics.core import sub_flags
from exitlab.tools.fuzz.streams_run import Outcome, norm_regs, py_devices, ram_hash

_CS_MODE = {64: capstone.CS_MODE_64, 32: capstone.CS_MODE_32, 16: capstone.CS_MODE_16}
_PREFIXES = frozenset((0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67))
RUNAWAY = 200_000  # instructions; generated programs execute a few hundred at most
_UNTIL = (1 << 64) - 1
WIN_BASE = NOTIFY_MMIO
WIN_SIZE = NOTIFY_MMIO_SIZE + REGS_MMIO_SIZE
assert REGS_MMIO == NOTIFY_MMIO + NOTIFY_MMIO_SIZE


class _Stop(Exception):
    pass


class Reference:
    """One run. `stop_at=(rip, n)` stops before the n-th execution of the instruction at `rip`
    (used to get the reference state at a path's decline)."""

    def __init__(
        self, image: GuestImage, max_insns: int | None = None, stop_at: tuple[int, int] | None = None
    ) -> None:
        self.image = image
        self.mode = image.mode
        self.max_insns = max_insns
        self.stop_at = stop_at
        self.board = default_board()
        spec = PlatformSpec()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64 if self.mode == 64 else UC_MODE_32)
        self.rf = RegFile(self.uc, self.mode)
        self._ram = ctypes.create_string_buffer(spec.ram.size)
        self._view = memoryview(self._ram).cast("B")  # never `.raw`: that copies all 4 MiB
        self.ram_base = spec.ram.base
        self.uc.mem_map_ptr(spec.ram.base, spec.ram.size, UC_PROT_ALL, ctypes.addressof(self._ram))
        self._win = ctypes.create_string_buffer(WIN_SIZE)
        ctypes.memmove(
            ctypes.addressof(self._win) + NOTIFY_MMIO_SIZE, bytes(RegisterDevice().mem), REGS_MMIO_SIZE
        )
        self.uc.mem_map_ptr(WIN_BASE, WIN_SIZE, UC_PROT_ALL, ctypes.addressof(self._win))
        for seg in image.segments:
            off = seg.addr - self.ram_base
            ctypes.memmove(ctypes.addressof(self._ram) + off, seg.data, len(seg.data))
        self.pending: list[tuple[bool, int, int, int]] = []  # write?, gpa, size, value
        self.log: list[tuple[str, bool, int, int, int]] = []  # source, write?, gpa, size, value
        self.executed = 0
        self.arrivals = 0
        self.current = image.entry  # RIP of the instruction being executed
        self.current_is_hlt = False
        self.current_locked = False
        self.stop: tuple[str, int, str] | None = None
        self.resume: int | None = None
        self.pio = {"pio_in": 0, "pio_out": 0, "hypercall": 0}
        self.neg: tuple[int, int, int] | None = None  # LOCK NEG fix-up: (next RIP, operand, size)
        self.cs: capstone.Cs | None = None
        self.flags_at: tuple[int, int] = (-1, 0)  # (rip, RFLAGS) when the current instruction started
        self.rips: list[int] = []  # RIP of every exit a hardware run would take, in order

    # -- hooks --------------------------------------------------------------------------------
    def _commit(self) -> None:
        bus = self.board.bus
        if self.pending:
            self.rips.append(self.current)
        for write, gpa, size, value in self.pending:
            self.log.append(("mmio", write, gpa, size, value))
            if write:
                bus.write(Space.MMIO, gpa, size, value)
            else:
                bus.read(Space.MMIO, gpa, size)
        self.pending.clear()

    def _on_code(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        self._commit()
        if self.neg is not None and self.neg[0] == address:
            self._fix_lock_neg_flags()
        self.neg = None
        self.current = address
        # RFLAGS as the instruction starts: Unicorn restores them wrongly when the instruction then
        # faults on memory (lazy flags of the previous ADC/SUB/CMP lost; pyengine's row-7 finding),
        # and a fault, budget or stop_at stop must show the state *before* this instruction
        self.flags_at = (address, self.rf.get("rflags"))
        if self.max_insns is not None and self.executed >= self.max_insns:
            self._halt("budget", address, "instruction budget exhausted")
            return
        if self.stop_at is not None and address == self.stop_at[0]:
            self.arrivals += 1
            if self.arrivals == self.stop_at[1]:
                self._halt("stop_at", address, "reference stopped at the requested instruction")
                return
        if self.executed >= RUNAWAY:
            self._halt("timeout", address, f"runaway: more than {RUNAWAY} instructions")
            return
        self.executed += 1
        self.current_is_hlt = size == 1 and self._byte(address) == 0xF4
        self.current_locked = 0xF0 in self._prefixes(address)
        if self.current_locked and lock_neg(self._read(address, 15), self.mode):
            self._arm_lock_neg(address)
        idiv = self._idiv_traps_host(address)
        if idiv is not None:  # stopped before Unicorn's host idiv kills the process
            locked = idiv.locked
            self._halt(*(("invalid_insn", address, "invalid instruction (LOCK IDIV)") if locked else
                         ("triple_fault", address, "exception vector 0")))  # as Unicorn's own #DE

    def _idiv_traps_host(self, address: int) -> Idiv32 | None:
        """The IDIV r/m32 at `address` when it divides EDX:EAX = 2**63 by -1, which Unicorn 2.1.4
        would do with a host idiv that SIGFPEs the process (emu/divsites.py); else None. The stop is
        the engines' one: #DE, or #UD for LOCK IDIV (Unicorn ignores that prefix). The windows are
        RAM here, so a memory divisor is read like any other; its device read is committed unless
        LOCK makes the instruction #UD before it."""
        code = self._read(address, 15)
        form = idiv32(code, self.mode) if 0xF7 in code else None
        if form is None:
            return None
        rf = self.rf
        if rf.get("rdx") & 0xFFFFFFFF != TRAP_DIVIDEND >> 32 or rf.get("rax") & 0xFFFFFFFF:
            return None
        reg = form.register
        if reg is not None:
            return form if host_traps(rf.get("rdx"), rf.get("rax"), rf.get(REG_NAMES[reg])) else None
        insn = next(self._disasm().disasm(code, address, 1), None)
        mem_type = capstone.x86.X86_OP_MEM
        op = None if insn is None else next((o for o in insn.operands if o.type == mem_type), None)
        if insn is None or op is None:
            return None
        ea = effective_address(mem_operand(insn, op), rf.get, address + insn.size, self.mode)
        try:
            raw = bytearray(self.uc.mem_read(ea, 4))  # windows are RAM here
        except UcError:
            return None  # unmapped: Unicorn faults on the read first
        for i in range(4):
            if NOTIFY_MMIO <= ea + i < REGS_MMIO:
                raw[i] = 0  # the notify device reads as 0 (_on_mem)
        if not host_traps(rf.get("rdx"), rf.get("rax"), int.from_bytes(raw, "little")):
            return None
        if not form.locked:  # the read happens before the divide faults: a device sees it (_on_intr)
            self._on_mem(self.uc, UC_MEM_READ, ea, 4, 0, None)
            self._commit()
        return form

    def _disasm(self) -> capstone.Cs:
        cs = self.cs
        if cs is None:
            cs = self.cs = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODE[self.mode])
            cs.detail = True
        return cs

    def _arm_lock_neg(self, address: int) -> None:
        """Unicorn computes LOCK NEG's flags from the operand, not the result (emu/flagsites.py):
        note the operand's address; the next instruction's hook puts NEG's flags in place."""
        insn = next(self._disasm().disasm(self._read(address, 15), address, 1), None)
        mem_type = capstone.x86.X86_OP_MEM
        op = None if insn is None else next((o for o in insn.operands if o.type == mem_type), None)
        if insn is None or op is None:
            return
        after = address + insn.size
        self.neg = (after, effective_address(mem_operand(insn, op), self.rf.get, after, self.mode), op.size)

    def _fix_lock_neg_flags(self) -> None:
        assert self.neg is not None
        _, ea, n = self.neg
        mask = (1 << (8 * n)) - 1
        try:
            result = int.from_bytes(bytes(self.uc.mem_read(ea, n)), "little")  # windows are RAM here
        except UcError:
            return
        flags = sub_flags(0, -result & mask, 0, n)[1]
        self.rf.set("rflags", (self.rf.get("rflags") & ~0x8D5) | flags)

    def _prefixes(self, addr: int) -> bytes:
        """The legacy prefixes (and REX) in front of the opcode at `addr`."""
        code = self._read(addr, 15)
        n = 0
        while n < len(code) and code[n] in _PREFIXES:
            n += 1
        return code[:n]

    def _byte(self, addr: int) -> int:
        off = addr - self.ram_base
        return self._view[off] if 0 <= off < len(self._view) else -1

    def _on_mem(self, uc: Uc, access: int, addr: int, size: int, value: int, _ud: object) -> None:
        write = access == UC_MEM_WRITE
        end = addr + size
        pieces = []
        for lo, hi in ((NOTIFY_MMIO, REGS_MMIO), (REGS_MMIO, REGS_MMIO + REGS_MMIO_SIZE)):
            a, b = max(addr, lo), min(end, hi)
            if a < b:
                pieces.append((a, b - a))
        for a, n in pieces:
            if not write and a < REGS_MMIO:  # the notify device reads as zero
                ctypes.memset(ctypes.addressof(self._win) + (a - WIN_BASE), 0, n)
            v = (value >> (8 * (a - addr))) & ((1 << (8 * n)) - 1) if write else 0
            if not write and self.current_locked and (False, a, n, 0) in self.pending:
                # QEMU runs LOCK NEG as a load plus an atomic cmpxchg (which loads again): one access
                continue
            if write and self.pending and self.pending[-1][:3] == (True, a, n):
                # QEMU's INS stores a dummy 0 before the port read (to fault restartably) and then
                # the data: one guest access, the last store wins
                self.pending[-1] = (write, a, n, v)
                continue
            self.pending.append((write, a, n, v))

    def _on_in(self, uc: Uc, port: int, size: int, _ud: object) -> int:
        self.rips.append(self.current)
        self.pio["pio_in"] += 1
        return self.board.bus.read(Space.PIO, port, size)

    def _on_out(self, uc: Uc, port: int, size: int, value: int, _ud: object) -> None:
        self.rips.append(self.current)
        self.pio["pio_out"] += 1
        self.board.bus.write(Space.PIO, port, size, value)

    def _on_invalid(self, uc: Uc, _ud: object) -> bool:
        rip = self.current
        insn = self._read(rip, 15)
        if not is_hypercall(insn):
            self._halt("invalid_insn", rip, f"invalid instruction {insn[:8].hex(' ')}")
            return False
        self.pio["hypercall"] += 1
        self.rips.append(rip)
        rf = self.rf
        nr = rf.get("rax")
        if nr == HC_MMIO_WRITE:
            rf.set("rax", self._hc_mmio_write(rf.get("rbx"), rf.get("rcx"), rf.get("rdx")))
        else:  # every other number: -KVM_ENOSYS
            rf.set("rax", (-KVM_ENOSYS) & ((1 << 64) - 1 if self.mode == 64 else 0xFFFFFFFF))
        if self.flags_at[0] == rip:  # a hypercall changes no flag; keep them exact across the restart
            rf.set("rflags", self.flags_at[1])
        self.resume = rip + HYPERCALL_LEN
        uc.emu_stop()
        return True

    def _hc_mmio_write(self, gpa: int, size: int, value: int) -> int:
        """HC_MMIO_WRITE done here, not by emu.iopaths.HypercallPath: the same checks (size 1/2/4/8, 8 only in
        64-bit mode, the whole range on devices), and the write split per region like any access."""
        mask = (1 << 64) - 1 if self.mode == 64 else 0xFFFFFFFF
        if size not in (1, 2, 4, 8) or (size == 8 and self.mode != 64):
            return (-KVM_EINVAL) & mask
        if not (WIN_BASE <= gpa and gpa + size <= WIN_BASE + WIN_SIZE):
            return (-KVM_EFAULT) & mask
        value &= (1 << (8 * size)) - 1
        for lo, hi in ((NOTIFY_MMIO, REGS_MMIO), (REGS_MMIO, REGS_MMIO + REGS_MMIO_SIZE)):
            a, b = max(gpa, lo), min(gpa + size, hi)
            if a < b:
                piece = (value >> (8 * (a - gpa))) & ((1 << (8 * (b - a))) - 1)
                self.log.append(("hypercall", True, a, b - a, piece))
                self.board.bus.write(Space.MMIO, a, b - a, piece)
        self._sync_window_from_devices()
        return 0

    def _sync_window_from_devices(self) -> None:
        """HC_MMIO_WRITE writes the device directly; keep the RAM copy of the registers equal."""
        ctypes.memmove(
            ctypes.addressof(self._win) + NOTIFY_MMIO_SIZE, bytes(self.board.regs.mem), REGS_MMIO_SIZE
        )

    def _on_intr(self, uc: Uc, intno: int, _ud: object) -> None:
        if intno == 0:  # #DE comes after DIV/IDIV read its divisor: that device read happened
            self._commit()
        self._halt("triple_fault", self.current, f"exception vector {intno}")

    def _halt(self, reason: str, rip: int, message: str) -> None:
        if self.stop is None:
            self.stop = (reason, rip, message)
        self.uc.emu_stop()

    def _read(self, addr: int, size: int) -> bytes:
        off = addr - self.ram_base
        return bytes(self._view[max(off, 0) : max(off + size, 0)])

    # -- running ------------------------------------------------------------------------------
    def run(self) -> Outcome:
        uc = self.uc
        uc.hook_add(UC_HOOK_CODE, self._on_code)
        uc.hook_add(
            UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._on_mem, None, WIN_BASE, WIN_BASE + WIN_SIZE - 1
        )
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        rf = self.rf
        rf.set("rsp", PlatformSpec().stack_top)
        rf.set("rflags", 0x2)
        rip = self.image.entry
        while True:
            self.resume = None
            try:
                uc.emu_start(rip, _UNTIL, timeout=0, count=0)
            except UcError as err:
                if self.stop is None:
                    self.pending.clear()  # the faulting instruction's accesses never happened
                    self.stop = self._fault(err)
                break
            if self.stop is not None:
                break
            if self.resume is not None:
                rip = self.resume
                rf.set("rip", rip)
                continue
            self._commit()
            if self.current_is_hlt:
                self.stop = ("hlt", self.current, "hlt")
            else:
                self.stop = ("triple_fault", rf.get("rip"), "emulation ended without hlt")
            break
        if self.stop[0] in ("budget", "stop_at", "timeout"):
            self.pending.clear()
        return self.outcome()

    def _fault(self, err: UcError) -> tuple[str, int, str]:
        rip = self.current
        if err.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED):
            return "unmapped", rip, f"unmapped access ({err})"
        if err.errno == UC_ERR_INSN_INVALID:
            return "invalid_insn", rip, "invalid instruction"
        return "triple_fault", rip, f"fault: {err}"

    def outcome(self) -> Outcome:
        assert self.stop is not None
        reason, rip, message = self.stop
        regs = self.rf.snapshot()
        rd = dict(zip(REG_NAMES, regs, strict=False))
        if reason != "hlt" and self.flags_at[0] == rip:
            rd["rflags"] = self.flags_at[1]
        win_regs = ctypes.string_at(ctypes.addressof(self._win) + NOTIFY_MMIO_SIZE, REGS_MMIO_SIZE)
        if win_regs != bytes(self.board.regs.mem):  # Unicorn wrote part of a faulting access
            message += " [reference: window RAM and device model diverged]"
        return Outcome(
            config="reference",
            stop=reason,
            rip=rip,
            message=message,
            regs=norm_regs(rd, self.mode),
            xmm=tuple(self.rf.get_xmm(i) for i in range(4)),
            devices=py_devices(self.board),
            regs_mem=bytes(self.board.regs.mem),
            exits=dict(self.pio),
            console=bytes(self.board.console.out),
            ram=ram_hash(self._read),
            insns=self.executed,
            exit_rips=tuple(self.rips),
        )

    def write_log(self) -> list[dict[str, Any]]:
        return [{"source": s, "write": w, "gpa": g, "size": n, "value": v} for s, w, g, n, v in self.log]


def reference(
    image: GuestImage, max_insns: int | None = None, stop_at: tuple[int, int] | None = None
) -> tuple[Outcome, Reference]:
    ref = Reference(image, max_insns=max_insns, stop_at=stop_at)
    return ref.run(), ref
