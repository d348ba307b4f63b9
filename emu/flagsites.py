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

from emu.codeguard import MAX_INSN_LEN, _is_prefix

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
