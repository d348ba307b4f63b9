"""The generic path: decode the faulting instruction with Capstone and emulate it exactly.

This is the slow path every host has (KVM's emulate.c): nothing is agreed with the guest, so the
instruction is fetched from guest memory, decoded (emu/decode.py) and carried out (emu/emulate.py).
It never reads an exit's truth_* fields; `exit.addr` is used only as a sanity check that the
address it computed is the one the exit reported.
"""

from __future__ import annotations

from dataclasses import replace

from emu.access import Access, MemOperand, Op
from emu.cpu import Cpu, Outcome
from emu.decode import decode, effective_address
from emu.emulate import execute
from emu.errors import EmulationError
from emu.exits import MAX_INSN_LEN, ExitKind, ExitRecord
from emu.opmap import STACK_OPS


def emulate_at(cpu: Cpu, rip: int, mode: int, max_iterations: int | None = None) -> Outcome:
    """Fetch, decode and emulate the instruction at `rip` (no exit to check against).

    `max_iterations` caps a REP string instruction's iterations (the remaining budget); see
    emu.emulate.execute for the faults raised (UnmappedAccess, GuestFault, EmulationError).
    """
    code = cpu.read_mem(rip, MAX_INSN_LEN)
    access = decode(code, mode, rip)
    return execute(access, cpu, rip, mode, max_iterations)




class GenericPath:
    """Handles any supported instruction; the reference every other path must agree with."""

    name = "generic"

    def handle(self, exit: ExitRecord, cpu: Cpu, max_iterations: int | None = None) -> Outcome:
        """Emulate the exit's instruction; `max_iterations` = the remaining instruction budget
        (SEMANTICS rule 1: a REP stops after that many iterations with RIP on the instruction)."""
        code = cpu.read_mem(exit.rip, MAX_INSN_LEN)
        access = decode(code, exit.mode, exit.rip)
        if exit.kind in (ExitKind.MMIO_READ, ExitKind.MMIO_WRITE):
            self._check_address(exit, cpu, access)
        return execute(access, cpu, exit.rip, exit.mode, max_iterations)

    @staticmethod
    def _check_address(exit: ExitRecord, cpu: Cpu, access: Access) -> None:
        """Refuse to touch the device if the decoded operand cannot be the one that exited.

        The exit address must fall inside the operand (or MOVS's other operand); for BT with a
        register offset the operand moves, so only the page is compared there. Checked before
        any device access, so a decode bug cannot reach a device.
        """
        next_rip = exit.rip + access.length
        span = max(access.size, 1)
        candidates = [access.mem] + ([access.src_mem] if access.src_mem is not None else [])
        if access.op is Op.XLAT:
            candidates = [replace(access.mem, disp=cpu.get("rax") & 0xFF)]
        if access.op in STACK_OPS:
            sp, width = ("rsp", 8) if exit.mode == 64 else ("esp", 4)
            down = access.op in (Op.PUSH, Op.CALL, Op.ENTER)
            candidates.append(MemOperand(sp, None, 1, -access.size if down else 0, "ss", width))
            span = max(span, 8)  # CALL m pushes a full-width return address
        if access.op is Op.MOVDIR64B and access.reg2:
            candidates.append(MemOperand(access.reg2, None, 1, 0, "es", access.mem.addr_size))
        for mem in candidates:
            ea = effective_address(mem, cpu.get, next_rip, exit.mode)
            if ea <= exit.addr < ea + span:
                return
        if access.imm is None and access.op in (Op.BT, Op.BTS, Op.BTR, Op.BTC):
            return
        if access.op in (Op.ENTER, Op.LEAVE):
            return  # ENTER copies frame pointers from [rbp - 8*i]; LEAVE reads at the old rbp
        count_mask = (1 << (8 * access.mem.addr_size)) - 1
        if access.rep and cpu.get("rcx") & count_mask == 0:
            return
        raise EmulationError(
            f"decoded address does not match the exit address {exit.addr:#x}", exit.rip, access.raw
        )
