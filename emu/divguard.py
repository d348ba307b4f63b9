"""Stop an IDIV r/m32 that would kill the process under Unicorn with the guest's #DE instead.

emu/divsites.py explains the Unicorn 2.1.4 bug (a host division of EDX:EAX = 2**63 by -1 raises
SIGFPE in QEMU's helper) and finds the IDIV r/m32 starts of each page the code guard scans
(emu/guard.py, before QEMU translates the page). Each start gets a raw UC_HOOK_CODE callback
bounded to that one address (the mechanism of emu/flagsites.py's SETcc hooks): other instructions
pay nothing, an IDIV pays two register reads. Only when EDX:EAX is the trapping dividend does the
hook decode the instruction and read its divisor:

- a register, or a dword wholly in guest RAM: when it is -1 the run stops at the IDIV with the
  stop Unicorn gives for any other #DE (`triple_fault`, "#DE divide error", RIP on the IDIV,
  registers as before it). A LOCK-prefixed IDIV stops `invalid_insn` instead (#UD: the SDM forbids
  LOCK on IDIV, Unicorn ignores the prefix);
- a device window, exit style: the read faults before the divide and the path emulates the IDIV
  (emu/semantics/muldiv.py raises #DE), nothing to do here;
- a device window, in place: the device read happens inside Unicorn, so the hook arms
  `InplaceMmio.de_at`; a -1 the device returns to that IDIV is handed to QEMU as 0, for which QEMU
  raises #DE itself after the read (what hardware does: the read, then the fault). The trace keeps
  the value the device returned.

Past MAX_SITES sites one hook on all code does the same test at every instruction (a page filled
with F7 /7 bytes must not make Unicorn walk thousands of bounded hooks per instruction).

Cost (measured, `exitlab run` of a 1,000,000-iteration IDIV loop): +1.1 s, ~1.1 us per IDIV
executed (a ctypes callback and a register read); a loop without IDIV runs as before. The C twin's
hook costs nothing measurable.
"""

from __future__ import annotations

import ctypes
from typing import Any

import capstone
from unicorn import UC_HOOK_CODE, UcError
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import HOOK_CODE_CFUNC, uclib

from emu import divsites
from emu.decode import effective_address, mem_operand
from emu.exits import GPR_NAMES, MAX_INSN_LEN
from emu.stop import StopReason

MAX_SITES = 512
_IN_PLACE = -1  # `_ram_divisor`: the divisor is a device read in place
DE_MESSAGE = "#DE divide error at rip={rip:#x}; the platform has no IDT, so a real CPU would triple-fault"


class DivGuard:
    """The IDIV r/m32 site hooks of one machine (emu.machine.Machine, which imports this module)."""

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.sites: set[int] = set()
        self.all_code = False  # past MAX_SITES: one hook on every instruction
        self._cb: Any = None  # the raw callback, kept alive as long as the engine

    def scan(self, data: bytes, base: int) -> None:
        """Hook the new IDIV r/m32 starts of a span the code guard scans (guard.CodeGuard.on_scan)."""
        if self.all_code:
            return
        new = divsites.scan(data, base, self.m.mode) - self.sites
        if not new:
            return
        if len(self.sites) + len(new) > MAX_SITES:
            self._add_hook(1, 0)
            self.all_code = True
            return
        for site in sorted(new):
            self._add_hook(site, site)
        self.sites |= new

    def _add_hook(self, begin: int, end: int) -> None:
        handle = self.m.uc._uch  # noqa: SLF001 - the C handle, for the raw hook and the raw reads
        if self._cb is None:
            edx, eax = ctypes.c_uint64(0), ctypes.c_uint64(0)
            edx_ref, eax_ref = ctypes.byref(edx), ctypes.byref(eax)
            reg_read, edx_id, eax_id = uclib.uc_reg_read, X.UC_X86_REG_EDX, X.UC_X86_REG_EAX

            def on_site(_h: int, address: int, _size: int, _ud: int) -> None:
                reg_read(handle, edx_id, edx_ref)
                if edx.value & 0xFFFFFFFF != divsites.TRAP_DIVIDEND >> 32:
                    return
                reg_read(handle, eax_id, eax_ref)
                if eax.value & 0xFFFFFFFF == 0:
                    self.check(address)

            self._cb = HOOK_CODE_CFUNC(on_site)
        hook = ctypes.c_size_t()
        err = uclib.uc_hook_add(
            handle, ctypes.byref(hook), UC_HOOK_CODE, ctypes.cast(self._cb, ctypes.c_void_p), None,
            ctypes.c_uint64(begin), ctypes.c_uint64(end),
        )
        if err:
            raise UcError(err)

    def check(self, rip: int) -> None:
        """EDX:EAX is the trapping dividend at `rip`: stop if the instruction there is an IDIV r/m32
        whose divisor is -1 (see the module docstring for device operands)."""
        m = self.m
        if m._stop is not None:  # noqa: SLF001 - a hook already decided the stop (budget...)
            return
        try:
            code = m.read_ram(rip, MAX_INSN_LEN)
            form = divsites.idiv32(code, m.mode)
            if form is None:
                return
            reg = form.register
            divisor = m.regfile.get(GPR_NAMES[reg]) if reg is not None else self._ram_divisor(rip, code)
        except Exception as exc:  # noqa: BLE001 - an exception must never cross Unicorn
            m._halt(StopReason.EMULATION_ERROR, rip, f"IDIV guard failed at rip={rip:#x}: {exc}")  # noqa: SLF001
            return
        if divisor == _IN_PLACE and form.locked:
            divisor = divsites.TRAP_DIVISOR  # #UD comes before the read: no device access
        elif divisor == _IN_PLACE:
            m.inplace.de_at = rip  # the device read decides (device_divisor)
            return
        if divisor is None or divisor & 0xFFFFFFFF != divsites.TRAP_DIVISOR:
            return
        if form.locked:
            m._halt(  # noqa: SLF001
                StopReason.INVALID_INSN, rip,
                f"invalid instruction at rip={rip:#x}: {code[:8].hex(' ')} (#UD: LOCK prefix on an "
                "instruction or operand that cannot be locked)", code,
            )
        else:
            m._halt(StopReason.TRIPLE_FAULT, rip, DE_MESSAGE.format(rip=rip), code)  # noqa: SLF001

    def _ram_divisor(self, rip: int, code: bytes) -> int | None:
        """The dword divisor of the memory form at `rip` when it lies wholly in RAM; _IN_PLACE when
        it is on a device the in-place path reads; None when the access faults before the divide
        (exit style on a device, unmapped) or the bytes do not decode (Unicorn raises #GP/#UD)."""
        m = self.m
        insn = next(m._cs.disasm(code, rip, 1), None)  # noqa: SLF001
        mem = capstone.x86.X86_OP_MEM
        op = None if insn is None else next((o for o in insn.operands if o.type == mem), None)
        if insn is None or op is None:
            return None
        ea = effective_address(mem_operand(insn, op), m.regfile.get, rip + insn.size, m.mode)
        if m.ram_base <= ea and ea + 4 <= m.ram_base + m.ram_size:
            return int.from_bytes(m.read_ram(ea, 4), "little")
        if m.mmio_style.value == "inplace" and m.mmio_window(ea) is not None:
            return _IN_PLACE
        return None

    def device_divisor(self, rip: int, size: int, value: int) -> int:
        """In place: what Unicorn gets for the device read of the IDIV at `rip` (armed by `check`):
        0 instead of -1 while EDX:EAX is the trapping dividend, so that QEMU raises #DE itself."""
        m = self.m
        m.inplace.de_at = -1
        if size != 4 or value != divsites.TRAP_DIVISOR:
            return value
        if divsites.idiv32(m.read_ram(rip, MAX_INSN_LEN), m.mode) is None:
            return value
        edx, eax = m.regfile.get("rdx"), m.regfile.get("rax")
        return 0 if divsites.host_traps(edx, eax, value) else value
