"""Instruction families for `exitlab fuzz --family NAME`: the structured generator restricted to them.

A family is a list of templates, each one instruction form: a mandatory prefix (0 = none), the
opcode bytes, the ModRM /reg field (0-7; ANY; NO_MODRM for forms without one) and the immediate
(0 none, 1 imm8, 2 imm16/imm32 by operand size). fastpath/csrc/fuzzcore.c (`family_bytes`) draws
0-2 legacy prefixes, the mandatory prefix, REX in 64-bit mode, the opcode, a ModRM aimed at memory
with the /reg forced, SIB/displacement and the immediate, then the state solver points the memory
operand at an MMIO window as for every structured case. The names are the family names of
emu/semantics/ and tests/emulate/ (issue 14); append a family here to fuzz it. stack/atomic/vector/misc
are cfam2's templates for its C families (sem_stack.c & co.; on a tree without them the C capstone
oracle refuses those forms).
"""

from __future__ import annotations

ANY, NO_MODRM = 8, 9  # fuzzcore.h: XL_FZ_NO_MODRM
TEMPLATE = 7          # fuzzcore.h: XL_FZ_TEMPLATE
MAX_TEMPLATES = 64    # fuzzcore.h: XL_FZ_MAXFAM

Template = tuple[int, bytes, int, int]  # (mandatory prefix, opcode, /reg, immediate kind)


def _t(opcode: str, reg: int = ANY, imm: int = 0, prefix: int = 0) -> Template:
    return (prefix, bytes.fromhex(opcode), reg, imm)


FAMILIES: dict[str, tuple[Template, ...]] = {
    # CMPS/SCAS with REPE/REPNE (also drawn among the random prefixes), 66, REX.W, 0x67, segments
    "string": tuple(_t(op, NO_MODRM, 0, pre) for op in ("a6", "a7", "ae", "af") for pre in (0, 0xF3, 0xF2)),
    # MUL/IMUL/DIV/IDIV r/m (F6/F7 /4-/7), IMUL r, r/m (0F AF), IMUL r, r/m, imm (69, 6B)
    "muldiv": (*(_t(op, reg) for op in ("f6", "f7") for reg in (4, 5, 6, 7)),
               _t("0f af"), _t("69", imm=2), _t("6b", imm=1)),
    # shifts/rotates by 1, CL, imm8 (every /reg, /6 = SAL); SHLD/SHRD by imm8 and CL
    "shift": (_t("c0", imm=1), _t("c1", imm=1), _t("d0"), _t("d1"), _t("d2"), _t("d3"),
              _t("0f a4", imm=1), _t("0f a5"), _t("0f ac", imm=1), _t("0f ad")),
    # BSF, BSR, and with F3: TZCNT, LZCNT, POPCNT
    "bitscan": (_t("0f bc"), _t("0f bd"), _t("0f bc", prefix=0xF3), _t("0f bd", prefix=0xF3),
                _t("0f b8", prefix=0xF3)),
    # CMOVcc r, m and SETcc m8, every condition
    "cond": (*(_t(f"0f {0x40 + cc:02x}") for cc in range(16)),
             *(_t(f"0f {0x90 + cc:02x}") for cc in range(16))),
    # issue 14 part 2 (cfam2's templates; their C side is fastpath/csrc/sem_stack.c & co.):
    # PUSH/POP m, CALL/JMP m, PUSH/POP r, PUSH imm, CALL rel, RET [imm16], LEAVE, ENTER
    "stack": (_t("ff", 6), _t("8f", 0), _t("ff", 2), _t("ff", 4),
              *(_t(f"{op:02x}", NO_MODRM)
                for op in (0x50, 0x53, 0x55, 0x57, 0x58, 0x5B, 0x5D, 0x5F, 0xC3, 0xC9)),
              _t("6a", NO_MODRM, 1), _t("68", NO_MODRM, 2), _t("e8", NO_MODRM, 2), _t("c2", NO_MODRM, 2),
              _t("c8", NO_MODRM, 2)),
    # CMPXCHG8B/16B (REX.W drawn), MOVBE load/store, MOVDIRI, MOVDIR64B
    "atomic": (_t("0f c7", 1), _t("0f 38 f0"), _t("0f 38 f1"), _t("0f 38 f9"), _t("0f 38 f8", prefix=0x66)),
    # SSE/MMX moves (the C oracle needs vector registers a replay record lacks: checked by the generic oracle)
    "vector": (_t("0f 10", prefix=0xF3), _t("0f 11", prefix=0xF3), _t("0f 10", prefix=0xF2),
               _t("0f 11", prefix=0xF2), _t("0f 6e", prefix=0x66), _t("0f 7e", prefix=0x66),
               _t("0f 7e", prefix=0xF3), _t("0f d6", prefix=0x66), _t("0f f0", prefix=0xF2),
               _t("0f 38 2a", prefix=0x66), _t("0f 2b"), _t("0f e7", prefix=0x66), _t("0f 6f", prefix=0xF3),
               _t("0f 7f", prefix=0x66), _t("0f 28"), _t("0f 29", prefix=0x66), _t("0f 6e"), _t("0f 7e"),
               _t("0f 6f"), _t("0f 7f")),
    # XLAT, SMSW m16, MOVSXD
    "misc": (_t("d7", NO_MODRM), _t("0f 01", 4), _t("63")),
}


def packed(name: str) -> tuple[bytes, int]:
    """(the family's templates as fuzzcore.c reads them, their number); KeyError for an unknown name."""
    out = bytearray()
    templates = FAMILIES[name]
    assert len(templates) <= MAX_TEMPLATES, name
    for prefix, opcode, reg, imm in templates:
        assert 1 <= len(opcode) <= 3
        out += bytes([prefix, len(opcode)]) + opcode.ljust(3, b"\0") + bytes([reg, imm])
    assert len(out) == TEMPLATE * len(templates)
    return bytes(out), len(templates)
