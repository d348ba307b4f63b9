"""The platform's answer to the system instructions Unicorn runs as silent no-ops (SEMANTICS rule 9).

Unicorn 2.1.4 executes SYSCALL, SYSENTER, WRMSR to any MSR, MOV to CR0 that leaves long mode and
LTR with a null selector without the fault the architecture gives. The run loop stops in front of
each (emu/codeguard.py) and asks `system_instruction` what the platform does:

- a fault (#UD / #GP): the platform has no IDT, so a real CPU triple-faults -> stop `triple_fault`
  naming the vector and the reason, as KVM reports it (KVM_EXIT_SHUTDOWN);
- allowed, and simple enough to carry out here (WRMSR to an MSR the platform has, a MOV to CR0
  that keeps PE and PG): done on the engine, and the RIP to continue at is returned;
- allowed, but not something Unicorn can be trusted with (SYSCALL with EFER.SCE set, SYSENTER
  with a selector, LTR of a real TSS, a CR0 write that changes the operating mode outside long
  mode): stop `emulation_error` saying the engine does not support it. Never a silent no-op.

docs/known-discrepancies.md lists each case.
"""

from __future__ import annotations

from typing import Any

from unicorn import UcError
from unicorn import x86_const as X

from emu.codeguard import Guarded
from emu.exits import GPR_NAMES, MAX_INSN_LEN
from emu.stop import Stop, StopReason

MSR_EFER = 0xC0000080
MSR_SYSENTER_CS = 0x174
EFER_SCE = 1
CR0_PE, CR0_PG = 1, 1 << 31
# MSRs the platform (KVM's default vCPU, and Unicorn's helper_wrmsr) has.
PLATFORM_MSRS = frozenset(
    (0x10, 0x1B, 0x174, 0x175, 0x176, 0x277, 0xC0000080, 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084,
     0xC0000100, 0xC0000101, 0xC0000102, 0xC0000103)
)


def _gpr(machine: Any, index: int, size: int) -> int:
    value = machine.regfile.get(GPR_NAMES[index]) if index < 8 or machine.mode == 64 else 0
    return value & ((1 << (8 * size)) - 1)


def system_instruction(machine: Any, g: Guarded, rip: int) -> int | Stop:  # machine: emu.machine.Machine
    """What the platform does with the guarded system instruction `g` at `rip`: the next RIP
    after carrying it out, or the Stop."""
    insn = machine.read_ram(rip, MAX_INSN_LEN)
    name = {"syscall": "SYSCALL", "sysenter": "SYSENTER", "wrmsr": "WRMSR", "mov_cr0": "MOV to CR0",
            "ltr": "LTR"}[g.kind]

    def fault(vector: str, why: str) -> Stop:
        return Stop(
            StopReason.TRIPLE_FAULT,
            rip,
            f"{vector} at rip={rip:#x} ({name} {why}); the platform has no IDT, so a real CPU would "
            "triple-fault",
            insn,
        )

    def unsupported(why: str) -> Stop:
        return Stop(
            StopReason.EMULATION_ERROR,
            rip,
            f"{name} at rip={rip:#x} ({why}) is unsupported by the engine: Unicorn would run it as a "
            f"no-op; bytes={insn[: g.length].hex(' ')}",
            insn,
        )

    uc = machine.uc
    next_rip = (rip + g.length) & ((1 << machine.mode) - 1)
    if g.kind == "syscall":
        if machine.mode != 64 or not uc.msr_read(MSR_EFER) & EFER_SCE:
            why = "with EFER.SCE clear" if machine.mode == 64 else "outside 64-bit mode"
            return fault("#UD invalid opcode", why)
        return unsupported("EFER.SCE set")
    if g.kind == "sysenter":
        if uc.msr_read(MSR_SYSENTER_CS) & 0xFFFC == 0:
            return fault("#GP general protection", "with IA32_SYSENTER_CS zero")
        return unsupported("IA32_SYSENTER_CS set")
    if g.kind == "wrmsr":
        msr = machine.regfile.get("rcx") & 0xFFFFFFFF
        value = (machine.regfile.get("rdx") & 0xFFFFFFFF) << 32 | (machine.regfile.get("rax") & 0xFFFFFFFF)
        if msr not in PLATFORM_MSRS:
            return fault("#GP general protection", f"to MSR {msr:#x}, which the platform does not have")
        try:
            uc.msr_write(msr, value)
        except UcError as exc:
            return unsupported(f"MSR {msr:#x} <- {value:#x}: {exc}")
        return next_rip
    if g.kind == "mov_cr0":
        src = (g.modrm & 7) | (8 if g.rex & 1 else 0)
        value = _gpr(machine, src, 8 if machine.mode == 64 else 4)
        if machine.mode == 64:
            if value >> 32:
                return fault("#GP general protection", f"setting reserved bits, value {value:#x}")
            if not value & CR0_PE or not value & CR0_PG:
                return fault("#GP general protection", f"clearing PE or PG in long mode, value {value:#x}")
        elif (value ^ uc.reg_read(X.UC_X86_REG_CR0)) & (CR0_PE | CR0_PG):
            return unsupported(f"changing PE or PG, value {value:#x}")
        uc.reg_write(X.UC_X86_REG_CR0, value)
        return next_rip
    # LTR
    if g.modrm >> 6 != 3:
        return unsupported("memory operand")
    selector = _gpr(machine, (g.modrm & 7) | (8 if g.rex & 1 else 0), 2)
    if selector & 0xFFFC == 0:
        return fault("#GP general protection", "with a null selector")
    return unsupported(f"selector {selector:#x}")
