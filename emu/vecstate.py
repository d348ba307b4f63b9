"""The vector registers (and CR0) an exit's instruction needs, for trace records and replays.

A trace record carries the GPRs; the SSE/AVX/MMX moves also read or write an XMM/YMM/MMX register
and SMSW reads CR0. `vector_state` names exactly those (decoded with the generic path's decoder)
with their values at the exit, so `ReplayCpu` can replay the instruction to the same device
accesses. Everything else records nothing: the common exit pays one byte test.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from emu.access import Op
from emu.decode import decode
from emu.errors import EmulationError
from emu.exits import MAX_INSN_LEN

VEC_NAME = re.compile(r"^(xmm(1[0-5]|[0-9])|ymm(1[0-5]|[0-9])|mm[0-7]|cr0)$")
_BITS = {"x": 128, "y": 256, "m": 64, "c": 64}
_LEGACY = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})


def width(name: str) -> int:
    """Bits of a recorded register name (xmm 128, ymm 256, mm 64, cr0 64)."""
    return _BITS[name[0]]


def _may_be_vector(insn: bytes, mode: int) -> bool:
    """Cheap pre-filter: the opcode after the prefixes is 0F (SSE/MMX, SMSW) or C4/C5 (VEX)."""
    for b in insn[:MAX_INSN_LEN]:
        if b in _LEGACY or (mode == 64 and 0x40 <= b <= 0x4F):
            continue
        return b in (0x0F, 0xC4, 0xC5)
    return False


def vector_state(insn: bytes, mode: int, get: Callable[[str], int]) -> tuple[tuple[str, int], ...]:
    """(name, value) of the vector register / CR0 the instruction at the exit uses; () for any
    other instruction. `get(name)` reads one of them from the live CPU."""
    if mode not in (32, 64) or not _may_be_vector(insn, mode):
        return ()
    try:
        a = decode(insn, mode)
    except EmulationError:
        return ()
    if a.op is Op.SMSW:
        return (("cr0", get("cr0")),)
    if a.op not in (Op.SSE_LOAD, Op.SSE_STORE) or a.reg is None:
        return ()
    name = a.reg
    if a.vex and name.startswith("xmm"):
        name = "ymm" + name[3:]  # a VEX write covers the whole YMM register
    return ((name, get(name)),)
