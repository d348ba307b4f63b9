"""Find instructions Unicorn must not translate as it would, before it translates them.

Unicorn 2.1.4 aborts the whole process while *translating* LOCK BT/BTS/BTR/BTC with a register
operand, and runs LOCK XADD/XCHG/MOV... with register operands as if the prefix were absent. The
SDM (Vol. 2, "LOCK"): the prefix is allowed only on ADD ADC AND BTC BTR BTS CMPXCHG CMPXCHG8B/16B
DEC INC NEG NOT OR SBB SUB XOR XADD XCHG, and only with a memory destination; anything else is #UD.

Unicorn also runs SYSCALL, SYSENTER, WRMSR, MOV to CR0 and LTR as silent no-ops where the platform
(no IDT, EFER.SCE clear, IA32_SYSENTER_CS zero, a handful of MSRs) faults; the run loop judges
those itself (SEMANTICS rule 9).

`classify(code, mode)` names what the instruction starting at code[0] is, from prefixes, REX,
opcode and ModRM only (no full decode); `lock_ud` is the LOCK part. `scan(data, base, mode)` lists
every address at which an instruction starting there is one of them. The machine registers those
addresses as Unicorn exits, so translation stops in front of them (emu/machine.py explains the W^X
page scheme that makes this also hold for code written at run time).
"""


from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True, slots=True)
class Guarded:
    """A guarded instruction: `kind` is "lock_ud", "syscall", "sysenter", "wrmsr", "mov_cr0" or
    "ltr"; `length` counts prefixes, opcode and ModRM (the system instructions have no more bytes,
    except a memory-form LTR, which the run loop refuses anyway); `modrm` is 0 where absent."""

    kind: str
    length: int
    modrm: int = 0
    rex: int = 0


# Stores Unicorn performs in a helper and reports, when they fault, at a *later* RIP and an address
# inside the operand (measured: tests/test_run_semantics.py::test_late_rip_store_*). Exit style only:
# opcode (after 0F for two-byte opcodes) -> ModRM.reg of the form, 0x66 prefix required or not.
_LATE_RIP_ONE = {0xD9: 6, 0xDD: 6, 0xDB: 7, 0xDF: 6}  # FNSTENV, FNSAVE, FSTP m80, FBSTP (memory forms)
_LATE_RIP_FXSAVE = (0xAE, 0)  # 0F AE /0 FXSAVE (memory form)
_LATE_RIP_MASKMOV = 0xF7  # 0F F7 MASKMOVQ, 66 0F F7 MASKMOVDQU (register form, store to [rDI])

# 0F xx system instructions Unicorn gets wrong, with the ModRM.reg they need (None: no ModRM).
_SYSTEM = {0x05: ("syscall", None), 0x34: ("sysenter", None), 0x30: ("wrmsr", None),
           0x22: ("mov_cr0", 0), 0x00: ("ltr", 3)}


# The LOCK #UD forms Unicorn gets wrong and the guard stops in front of: BT/BTS/BTR/BTC with a
# register operand (Unicorn aborts the process) and XADD/XCHG with a register destination (Unicorn
# drops the prefix). Unicorn raises #UD itself for LOCK ADD/INC/NOT/CMPXCHG... on registers and for
# LOCK NOP/CMP; it runs LOCK MOV, LOCK BT m and the LOCK XOR r,r zeroing idiom as if unprefixed, which
# stays a documented discrepancy: every guard site inside hot translated code costs a retranslation
# per engine stop (Unicorn invalidates the code at every exit address when emu_start returns), so a
# stray F0 byte must not make one (same choice as the C engine).
_GUARDED_LOCK_TWO_BYTE = frozenset((0xA3, 0xAB, 0xB3, 0xBB, 0xBA, 0xC0, 0xC1))
_GUARDED_LOCK_ONE_BYTE = frozenset((0x86, 0x87))


def _unicorn_misses_lock_ud(code: bytes, mode: int) -> bool:
    """True for the LOCK #UD forms Unicorn does not fault on itself (all with ModRM.mod == 3)."""
    i = 0
    while i < len(code) and _is_prefix(code[i], mode):
        i += 1
    if i + 1 < len(code) and code[i] in _GUARDED_LOCK_ONE_BYTE:
        return code[i + 1] >> 6 == 3
    if i + 2 < len(code) and code[i] == 0x0F and code[i + 1] in _GUARDED_LOCK_TWO_BYTE:
        return code[i + 2] >> 6 == 3
    return False


def classify(code: bytes, mode: int, late_rip: bool = False) -> Guarded | None:
    """What the instruction at code[0] is, if the run loop must judge it; else None. With
    `late_rip`, also the helper stores Unicorn reports at a later RIP (kind "late_rip")."""
    if lock_ud(code, mode) and _unicorn_misses_lock_ud(code, mode):
        return Guarded("lock_ud", 0)
    i, rex = 0, 0
    while i < len(code) and _is_prefix(code[i], mode):
        rex = code[i] if 0x40 <= code[i] <= 0x4F and mode == 64 else 0
        i += 1
    if i + 1 >= len(code) or i >= MAX_INSN_LEN:
        return None
    if late_rip and _late_rip(code, i):
        return Guarded("late_rip", 0)
    if code[i] != 0x0F or code[i + 1] not in _SYSTEM:
        return None
    kind, reg = _SYSTEM[code[i + 1]]
    if reg is None:
        return Guarded(kind, i + 2)
    if i + 2 >= len(code):
        return None
    modrm = code[i + 2]
    if (modrm >> 3) & 7 != reg or (kind == "mov_cr0" and rex & 4):  # REX.R: CR8, not CR0
        return None
    return Guarded(kind, i + 3, modrm, rex)


def _late_rip(code: bytes, i: int) -> bool:
    op = code[i]
    if op in _LATE_RIP_ONE:
        modrm = code[i + 1]
        return modrm >> 6 != 3 and (modrm >> 3) & 7 == _LATE_RIP_ONE[op]
    if op != 0x0F or i + 2 >= len(code):
        return False
    op2, modrm = code[i + 1], code[i + 2]
    if op2 == _LATE_RIP_FXSAVE[0]:
        return modrm >> 6 != 3 and (modrm >> 3) & 7 == _LATE_RIP_FXSAVE[1]
    return op2 == _LATE_RIP_MASKMOV and modrm >> 6 == 3


def scan(data: bytes, base: int, mode: int, start: int = 0, late_rip: bool = False) -> set[int]:
    """Addresses `base + k` (k >= start) where an instruction starting at data[k] is guarded.

    Every LOCK and 0F byte is examined together with the run of prefixes (and REX) before it,
    because an instruction may start at any byte of that run."""
    found: set[int] = set()
    anchors = (LOCK, 0x0F, *_LATE_RIP_ONE) if late_rip else (LOCK, 0x0F)
    for anchor in anchors:
        k = data.find(anchor, start)
        while k >= 0:
            if anchor != 0x0F or (k + 1 < len(data) and (data[k + 1] in _SYSTEM or late_rip)):
                first = k
                while first > start and _is_prefix(data[first - 1], mode):
                    first -= 1
                for s in range(first, k + 1):
                    if classify(data[s : s + MAX_INSN_LEN], mode, late_rip) is not None:
                        found.add(base + s)
            k = data.find(anchor, k + 1)
    return found
