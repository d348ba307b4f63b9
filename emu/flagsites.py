"""Find the instructions whose RFLAGS Unicorn 2.1.4 corrupts when their memory access faults.

QEMU keeps the arithmetic flags lazily: `cc_op` names the last flag-setting operation and
`cc_dst`/`cc_src` hold its operands, RFLAGS is computed from the three on demand. A SETcc with a
memory destination first materialises the flags (`gen_compute_eflags`: `cc_src` := all flags,
`cc_op` := EFLAGS, the old `cc_op`/`cc_dst` discarded without being written back) and only then
stores its byte. When that store faults (an MMIO window in exit style, a window whose permissions
the in-place path removed to decline, the end of a window), QEMU unwinds to the instruction start
and restores `cc_op` from the instruction's start record, which is either the value before the
block (when the block began with no known flags state) or the operation before the SETcc: in both
cases it no longer matches `cc_src`, and RFLAGS read afterwards is computed from mismatched parts
(`cmp eax, 5; jg s; setnz byte ptr [mmio]` gives 0x81 for 0x91: AF lost). Reading RFLAGS inside
the fault callback gives the same wrong value: the operands were already overwritten.

RFLAGS read by a UC_HOOK_CODE callback *at the start of* the SETcc is right, so the engines hook
exactly those instructions (a callback bounded to one address costs nothing elsewhere) and put the
stashed value back after a fault at that address (emu/machine.py `_repair_flags`). This module
finds them in a scanned code page, as emu/codeguard.py finds its sites: from prefixes, opcode and
ModRM only, at every byte where an instruction could start (a candidate that is never an
instruction start is hooked for nothing). The C engine does the same: fastpath/csrc/lockguard.c
`xl_setcc_scan` / `xl_lock_neg_scan` find the sites, fastpath/csrc/flagfix.c hooks them.
"""

from __future__ import annotations

import ctypes
from typing import Any

import capstone
from unicorn import UC_HOOK_CODE, Uc, UcError
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import HOOK_CODE_CFUNC, uclib

from emu.codeguard import MAX_INSN_LEN, _is_prefix
from emu.decode import effective_address, mem_operand
from emu.semantics.core import sub_flags

ARITH_FLAGS = 0x8D5  # OF SF ZF AF PF CF

SETCC_FIRST, SETCC_LAST = 0x90, 0x9F  # 0F 90..9F: SETO .. SETG


def setcc_mem(code: bytes, mode: int) -> bool:
    """True when the instruction starting at code[0] is a SETcc with a memory destination."""
    i = 0
    while i < len(code) and i < MAX_INSN_LEN and _is_prefix(code[i], mode):
        i += 1
    return (
        i + 2 < len(code)
        and i < MAX_INSN_LEN - 2
        and code[i] == 0x0F
        and SETCC_FIRST <= code[i + 1] <= SETCC_LAST
        and code[i + 2] >> 6 != 3
    )


def scan(data: bytes, base: int, mode: int) -> set[int]:
    """Addresses `base + k` where an instruction starting at data[k] is a SETcc to memory."""
    found: set[int] = set()
    k = data.find(0x0F)
    while k >= 0:
        if k + 2 < len(data) and SETCC_FIRST <= data[k + 1] <= SETCC_LAST and data[k + 2] >> 6 != 3:
            first = k
            while first > 0 and k - first < MAX_INSN_LEN - 3 and _is_prefix(data[first - 1], mode):
                first -= 1
            found.update(base + s for s in range(first, k + 1))
        k = data.find(0x0F, k + 1)
    return found


# -- LOCK NEG ----------------------------------------------------------------------------------
# Unicorn 2.1.4 runs LOCK NEG m as a cmpxchg loop and then computes the flags from the loop's
# *old* value instead of the result: SF and PF come from the operand (`lock neg dword [m]` on
# 0xd4000000 gives SF=1; the result 0x2c000000 is positive). CF, OF, ZF and AF happen to agree.
# The engines hook the instruction (which arms a fix-up with its operand's address) and the address
# right after it, where RFLAGS are rewritten as NEG's: those of 0 - operand.

LOCK = 0xF0


def lock_neg(code: bytes, mode: int) -> bool:
    """True when the instruction starting at code[0] is LOCK NEG with a memory operand."""
    i, locked = 0, False
    while i < len(code) and i < MAX_INSN_LEN and _is_prefix(code[i], mode):
        locked |= code[i] == LOCK
        i += 1
    return (
        locked
        and i + 1 < len(code)
        and code[i] in (0xF6, 0xF7)
        and (code[i + 1] >> 3) & 7 == 3
        and code[i + 1] >> 6 != 3
    )


def scan_lock_neg(data: bytes, base: int, mode: int) -> set[int]:
    """Addresses `base + k` where an instruction starting at data[k] is LOCK NEG m."""
    found: set[int] = set()
    k = data.find(LOCK)
    while k >= 0:
        first = k
        while first > 0 and k - first < MAX_INSN_LEN and _is_prefix(data[first - 1], mode):
            first -= 1
        found.update(base + s for s in range(first, k + 1) if lock_neg(data[s : s + MAX_INSN_LEN], mode))
        k = data.find(LOCK, k + 1)
    return found


class FlagFix:
    """The hooks of one machine (emu/machine.py): `hook_sites` is the code guard's scan callback."""

    def __init__(self, machine: Any) -> None:  # emu.machine.Machine, which imports this module
        self.m = machine
        self.sites: set[int] = set()
        self.stash_cb: Any = None  # the raw code hook of the SETcc sites, kept alive with the engine
        self.neg_armed: tuple[int, int, int] | None = None  # (next RIP, operand address, size)

    def hook_sites(self, data: bytes, base: int) -> None:
        """Hook the instructions of a scanned span whose RFLAGS Unicorn gets wrong."""
        self._hook_setcc(scan(data, base, self.m.mode) - self.sites)
        for site in scan_lock_neg(data, base, self.m.mode) - self.sites:
            self._hook_lock_neg(site)

    def _hook_setcc(self, sites: set[int]) -> None:
        """SETcc to memory: a raw UC_HOOK_CODE callback bounded to the one address stashes RFLAGS at
        the instruction start in the machine's `_flags_stash` (shared with the budget hook), which
        `Machine._repair_flags` writes back after a fault there. Other instructions pay nothing."""
        if not sites:
            return
        m = self.m
        handle = m.uc._uch  # noqa: SLF001 - the C handle, for the raw hook and the raw reads
        if self.stash_cb is None:
            flags = ctypes.c_uint64(0)
            flags_ref = ctypes.byref(flags)
            reg_read, eflags_id = uclib.uc_reg_read, X.UC_X86_REG_EFLAGS

            def on_site(_h: int, address: int, _size: int, _ud: int) -> None:
                reg_read(handle, eflags_id, flags_ref)
                m._flags_stash = (address, flags.value)

            self.stash_cb = HOOK_CODE_CFUNC(on_site)
        cb = ctypes.cast(self.stash_cb, ctypes.c_void_p)
        for site in sorted(sites):
            hook = ctypes.c_size_t()
            err = uclib.uc_hook_add(
                handle, ctypes.byref(hook), UC_HOOK_CODE, cb, None,
                ctypes.c_uint64(site), ctypes.c_uint64(site),
            )
            if err:
                raise UcError(err)
        self.sites |= sites

    def _hook_lock_neg(self, site: int) -> None:
        """LOCK NEG m: the hook on the instruction arms a fix-up with its operand's address and size;
        the hook on the next address rewrites RFLAGS as NEG's. A fault on the instruction (an
        exit-style MMIO exit: the path computes the flags) disarms it (`disarm`)."""
        m = self.m
        self.sites.add(site)
        insn = next(m._cs.disasm(m.read_ram(site, MAX_INSN_LEN), site, 1), None)
        mem_type = capstone.x86.X86_OP_MEM
        op = None if insn is None else next((o for o in insn.operands if o.type == mem_type), None)
        if insn is None or op is None:
            return
        mem, size, after = mem_operand(insn, op), op.size, (site + insn.size) & ((1 << m.mode) - 1)

        def on_start(_uc: Uc, address: int, _size: int, _ud: object) -> None:
            self.neg_armed = (after, effective_address(mem, m.regfile.get, after, m.mode), size)
            # and the RFLAGS it starts with: a fault on it (an access running off a window) was
            # restored with AF lost after a CMP in the same block (streams seed 520)
            m._flags_stash = (address, m.regfile.get("rflags"))

        def on_after(_uc: Uc, address: int, _size: int, _ud: object) -> None:
            self.settle_lock_neg(address)

        m.uc.hook_add(UC_HOOK_CODE, on_start, None, site, site)
        m.uc.hook_add(UC_HOOK_CODE, on_after, None, after, after)

    def disarm(self) -> None:
        self.neg_armed = None

    def settle_lock_neg(self, address: int) -> None:
        """Execution reached `address`: if a LOCK NEG armed a fix-up for it, rewrite RFLAGS as NEG's
        (those of 0 - operand). Called by the hook on the next address, and by the run loop after a
        budget stop there (the budget hook stops before that hook runs; RFLAGS written inside the
        stopping hook do not survive the stop)."""
        armed, m = self.neg_armed, self.m
        if armed is None or armed[0] != address:
            return
        self.neg_armed = None
        _, ea, n = armed
        mask = (1 << (8 * n)) - 1
        if m.ram_base <= ea and ea + n <= m.ram_base + m.ram_size:
            operand = -int.from_bytes(m.read_ram(ea, n), "little") & mask  # RAM holds the result
        elif m.inplace.read_stash[:2] == (ea, n):
            operand = m.inplace.read_stash[2]  # in place: the device read of the operand
        else:
            return
        flags = sub_flags(0, operand, 0, n)[1]
        m.regfile.set("rflags", (m.regfile.get("rflags") & ~ARITH_FLAGS) | flags)
