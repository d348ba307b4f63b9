"""Find the IDIV instructions with which a guest could kill the host process under Unicorn 2.1.4.

QEMU's `helper_idivl_EAX` (IDIV r/m32) divides the 64-bit EDX:EAX by the sign-extended divisor with
a host 64-bit division before it checks that the quotient fits: EDX:EAX = 0x80000000_00000000 and a
divisor of -1 is INT64_MIN / -1, which the host CPU answers with SIGFPE, killing the whole Python
process instead of raising #DE in the guest (found by cfam1's `exitlab fuzz --family muldiv`).
Measured over every DIV/IDIV form, operand size and CPU mode with edge dividends and divisors
(tests/test_divguard.py keeps the matrix): that is the ONLY case. 8-bit IDIV divides in `int`,
the 16-bit one (DX:AX = 0x8000_0000 by -1) does not trap either as built, unsigned DIV cannot
overflow the host division, and 64-bit DIV/IDIV use QEMU's own 128-bit routines: Unicorn raises
#DE itself for all of them.

The operand size is the one QEMU's decoder gives (measured): in 64-bit mode REX.W selects 64 bits
only when the REX byte immediately precedes the opcode (a REX followed by another prefix is
ignored, as on hardware), else any 0x66 selects 16; in 32-bit mode 0x66 selects 16; in 16-bit mode
0x66 selects 32. F2/F3/segment prefixes do not matter, and neither does LOCK: Unicorn ignores it on
IDIV (the SDM says #UD; the engines stop such an instruction as invalid when it would trap).

The engines hook every IDIV r/m32 start (emu/divguard.py, fastpath/csrc/divguard.c) with a code
hook from the code guard's page scan, and stop with the architectural #DE before Unicorn runs the
instruction when `host_traps` holds. `idiv32` is the per-address test, `scan` the page scan.
"""

from __future__ import annotations

import dataclasses

from emu.codeguard import MAX_INSN_LEN, _is_prefix

IDIV_OPCODE = 0xF7  # F7 /7: IDIV r/m16/32/64
IDIV_REG = 7
LOCK = 0xF0
TRAP_DIVIDEND = 1 << 63  # EDX:EAX = INT64_MIN
TRAP_DIVISOR = 0xFFFFFFFF  # -1 as a dword


@dataclasses.dataclass(frozen=True, slots=True)
class Idiv32:
    """An IDIV r/m32 as QEMU decodes it: `opcode` is the index of F7 in the bytes, `rex` the REX
    byte that counts (0: none), `locked` whether a LOCK prefix is present."""

    opcode: int
    modrm: int
    rex: int
    locked: bool

    @property
    def register(self) -> int | None:
        """The divisor's register number (0 = EAX .. 15 = R15D) for a register form, else None."""
        if self.modrm >> 6 != 3:
            return None
        return (self.modrm & 7) | (8 if self.rex & 1 else 0)


def idiv32(code: bytes, mode: int) -> Idiv32 | None:
    """The IDIV r/m32 starting at code[0], or None (another instruction, or bytes that run out)."""
    i, rex, has66, locked = 0, 0, False, False
    while i < len(code) and i < MAX_INSN_LEN and _is_prefix(code[i], mode):
        b = code[i]
        has66 |= b == 0x66
        locked |= b == LOCK
        rex = b if mode == 64 and 0x40 <= b <= 0x4F else 0  # a REX counts only right before the opcode
        i += 1
    if i + 1 >= len(code) or i + 2 > MAX_INSN_LEN or code[i] != IDIV_OPCODE:
        return None
    modrm = code[i + 1]
    if (modrm >> 3) & 7 != IDIV_REG:
        return None
    if mode == 64:
        size = 64 if rex & 8 else 16 if has66 else 32
    else:
        size = (16 if has66 else 32) if mode == 32 else (32 if has66 else 16)
    if size != 32:
        return None
    return Idiv32(i, modrm, rex, locked)


def host_traps(edx: int, eax: int, divisor: int) -> bool:
    """Would Unicorn's IDIV r/m32 of EDX:EAX by `divisor` SIGFPE the host? (architecturally #DE)"""
    dividend = (edx & 0xFFFFFFFF) << 32 | (eax & 0xFFFFFFFF)
    return dividend == TRAP_DIVIDEND and divisor & 0xFFFFFFFF == TRAP_DIVISOR


def scan(data: bytes, base: int, mode: int) -> set[int]:
    """Addresses `base + k` where an instruction starting at data[k] is an IDIV r/m32.

    Every F7 byte followed by a ModRM with reg = 7 is examined together with the run of prefixes
    (and REX) before it, because an instruction may start at any byte of that run."""
    found: set[int] = set()
    k = data.find(IDIV_OPCODE)
    while k >= 0:
        if k + 1 < len(data) and (data[k + 1] >> 3) & 7 == IDIV_REG:
            first = k
            while first > 0 and k - first < MAX_INSN_LEN - 2 and _is_prefix(data[first - 1], mode):
                first -= 1
            found.update(
                base + s for s in range(first, k + 1) if idiv32(data[s : s + MAX_INSN_LEN], mode) is not None
            )
        k = data.find(IDIV_OPCODE, k + 1)
    return found
