"""Find LOCK-prefixed instructions that must raise #UD, before Unicorn translates them.

Unicorn 2.1.4 aborts the whole process while *translating* LOCK BT/BTS/BTR/BTC with a register
operand, and runs LOCK XADD/XCHG/MOV... with register operands as if the prefix were absent. The
SDM (Vol. 2, "LOCK"): the prefix is allowed only on ADD ADC AND BTC BTR BTS CMPXCHG CMPXCHG8B/16B
DEC INC NEG NOT OR SBB SUB XOR XADD XCHG, and only with a memory destination; anything else is #UD.

`lock_ud(code, mode)` decides that for the instruction starting at code[0] (prefixes, REX, opcode
and ModRM only: no full decode). `scan(data, base, mode)` lists every address in a code page at
which an instruction starting there would be such a #UD. The machine registers those addresses as
Unicorn exits, so translation stops in front of them (emu/machine.py explains the W^X page scheme
that makes this also hold for code written at run time).
"""

from __future__ import annotations

LOCK = 0xF0
LEGACY_PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3))
MAX_INSN_LEN = 15

# One-byte opcodes the LOCK prefix may precede (with a memory destination), and for the group
# opcodes the ModRM.reg values that are lockable.
_ONE_BYTE_RM = frozenset((0x00, 0x01, 0x08, 0x09, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x28, 0x29, 0x30, 0x31,
                          0x86, 0x87))
_ONE_BYTE_GROUP = {
    0x80: frozenset(range(7)),  # ADD OR ADC SBB AND SUB XOR (not /7 CMP)
    0x81: frozenset(range(7)),
    0x83: frozenset(range(7)),
    0xF6: frozenset((2, 3)),  # NOT NEG
    0xF7: frozenset((2, 3)),
    0xFE: frozenset((0, 1)),  # INC DEC
    0xFF: frozenset((0, 1)),
}
_TWO_BYTE_RM = frozenset((0xAB, 0xB3, 0xBB, 0xB0, 0xB1, 0xC0, 0xC1))  # BTS BTR BTC CMPXCHG XADD
_TWO_BYTE_GROUP = {
    0xBA: frozenset((5, 6, 7)),  # BTS BTR BTC imm8 (not /4 BT)
    0xC7: frozenset((1,)),  # CMPXCHG8B/16B
}


def _is_prefix(byte: int, mode: int) -> bool:
    """Legacy prefixes, and REX in 64-bit code (Unicorn, like hardware, reads a REX that is followed by
    more prefixes as a prefix too; in 16/32-bit code 40-4F are INC/DEC)."""
    return byte in LEGACY_PREFIXES or (mode == 64 and 0x40 <= byte <= 0x4F)


def lock_ud(code: bytes, mode: int) -> bool:
    """True when the instruction at code[0] carries LOCK and the SDM makes that #UD.

    Returns False when there is no LOCK prefix, when the bytes run out before the ModRM byte, or
    when prefixes alone exceed 15 bytes (that is #GP, Unicorn's business)."""
    i, locked = 0, False
    while i < len(code) and _is_prefix(code[i], mode):
        locked |= code[i] == LOCK
        i += 1
    if not locked or i >= MAX_INSN_LEN or i >= len(code):
        return False
    op = code[i]
    if op == 0x0F:
        if i + 2 >= len(code):
            return False
        op2, modrm = code[i + 1], code[i + 2]
        if op2 in _TWO_BYTE_RM:
            return modrm >> 6 == 3
        if op2 in _TWO_BYTE_GROUP:
            return modrm >> 6 == 3 or (modrm >> 3) & 7 not in _TWO_BYTE_GROUP[op2]
        return True
    if op in _ONE_BYTE_RM or op in _ONE_BYTE_GROUP or (op == 0x82 and mode != 64):
        if i + 1 >= len(code):
            return False
        modrm = code[i + 1]
        if modrm >> 6 == 3:
            return True
        allowed = _ONE_BYTE_GROUP.get(0x80 if op == 0x82 else op)
        return allowed is not None and (modrm >> 3) & 7 not in allowed
    return True


def scan(data: bytes, base: int, mode: int, start: int = 0) -> set[int]:
    """Addresses `base + k` (k >= start) where an instruction starting at data[k] is a LOCK #UD.

    Every LOCK byte is examined together with the run of prefixes (and REX) around it, because an
    instruction may start at any byte of that run."""
    found: set[int] = set()
    k = data.find(LOCK, start)
    while k >= 0:
        first = k
        while first > start and _is_prefix(data[first - 1], mode):
            first -= 1
        for s in range(first, k + 1):
            if lock_ud(data[s : s + MAX_INSN_LEN], mode):
                found.add(base + s)
        k = data.find(LOCK, k + 1)
    return found
