"""The generic path: decode the faulting instruction with Capstone and emulate it exactly.

This is the slow path every host has (KVM's emulate.c): nothing is agreed with the guest, so the
instruction is fetched from guest memory, decoded (emu/decode.py) and carried out (emu/emulate.py).
It never reads an exit's truth_* fields; `exit.addr` is used only as a sanity check that the
address it computed is the one the exit reported.
"""

from __future__ import annotations

from emu.access import Access, Op
from emu.cpu import Cpu, Outcome
from emu.decode import decode, effective_address
from emu.emulate import execute
from emu.errors import EmulationError
from emu.exits import MAX_INSN_LEN, ExitKind, ExitRecord


def emulate_at(cpu: Cpu, rip: int, mode: int) -> Outcome:
    """Fetch, decode and emulate the instruction at `rip` (no exit to check against)."""
    code = cpu.read_mem(rip, MAX_INSN_LEN)
    access = decode(code, mode, rip)
    return execute(access, cpu, rip, mode)


class GenericPath:
    """Handles any supported instruction; the reference every other path must agree with."""

    name = "generic"

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome:
        code = cpu.read_mem(exit.rip, MAX_INSN_LEN)
        access = decode(code, exit.mode, exit.rip)
        if exit.kind in (ExitKind.MMIO_READ, ExitKind.MMIO_WRITE):
            self._check_address(exit, cpu, access)
        return execute(access, cpu, exit.rip, exit.mode)

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
        for mem in candidates:
            ea = effective_address(mem, cpu.get, next_rip, exit.mode)
            if ea <= exit.addr < ea + span:
                return
        if access.imm is None and access.op in (Op.BT, Op.BTS, Op.BTR, Op.BTC):
            return
        count_mask = (1 << (8 * access.mem.addr_size)) - 1
        if access.rep and cpu.get("rcx") & count_mask == 0:
            return
        raise EmulationError(
            f"decoded address does not match the exit address {exit.addr:#x}", exit.rip, access.raw
        )
