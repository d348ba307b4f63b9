"""The length fast path's generated tables (fastpath/csrc/len_fast.h, insn_length.h).

- the compiled-in tables and the checked-in header are what the derivation from the full walk gives
  now (so a change to the full walk's tables or to the derivation cannot leave stale tables behind);
- properties of each table that follow from the x86 encoding, checked independently of the
  derivation: the ModRM/SIB/displacement table against a direct computation, the prefix classes,
  and spot checks of opcode classes whose forms and immediates are known;
- the fast path on instructions that exercise each kind of entry equals the full walk.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "fastpath" / "csrc"
sys.path.insert(0, str(CSRC))
import gen_len_fast  # noqa: E402
from fastpath._exitlab_c import lib  # noqa: E402

BASE, MODRM_MASK = 0xFF, 0xFF << 8
KIND_SHIFT, GRP_SHIFT, FORMS_SHIFT = 16, 19, 32
K_PLAIN, K_SLOW, K_GRP, K_REX, K_ESC, K_PREFIX, K_IMMV = range(7)
ALL_FORMS = 0xFFFFFFFF


@pytest.fixture(scope="module")
def derived() -> object:
    return gen_len_fast.derive()


def test_compiled_tables_are_current(derived: object) -> None:
    """len_fast.h as compiled into the extension == a fresh derivation from the full walk."""
    assert gen_len_fast.table_bytes(gen_len_fast.compiled()) == gen_len_fast.table_bytes(derived), (
        "fastpath/csrc/len_fast.h is stale: run .venv/bin/python fastpath/csrc/gen_len_fast.py "
        "> fastpath/csrc/len_fast.h && make venv"
    )


def test_header_file_is_current(derived: object) -> None:
    """The checked-in header is exactly what the generator writes now."""
    text = (CSRC / "len_fast.h").read_text()
    assert text == gen_len_fast.render(gen_len_fast.table_bytes(derived)), (
        "fastpath/csrc/len_fast.h differs from the generator's output: regenerate it"
    )


def _modrm_len(a16: bool, m: int, sib: int) -> int:
    mod, rm = m >> 6, m & 7
    if mod == 3:
        return 1
    if a16:
        return 1 + {0: 2 if rm == 6 else 0, 1: 1, 2: 2}[mod]
    n = 1
    if rm == 4:
        n += 1
        if mod == 0 and sib & 7 == 5:
            n += 4
    return n + {0: 4 if rm == 5 else 0, 1: 1, 2: 4}[mod]


def test_modrm_table(derived: object) -> None:
    """ml[addressing][ModRM | (SIB & 7) << 8] = length | (32 + (mod, reg)) << 8, every entry."""
    t = derived
    for a16 in (0, 1):
        for i in range(2048):
            m, sib = i & 0xFF, i >> 8
            v = t.ml[a16][i]  # type: ignore[attr-defined]
            assert v & 0xFF == _modrm_len(bool(a16), m, sib), (a16, hex(i))
            assert v >> 8 == 32 + (m >> 3), (a16, hex(i))


def test_prefix_classes(derived: object) -> None:
    t = derived
    seg = {0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65}
    for mi in range(3):
        for b in range(256):
            want = (
                1 if b in seg else 2 if b == 0x66 else 3 if b == 0xF3 else 4 if b == 0xF2
                else 6 if b in (0x67, 0xF0) else 5 if mi == 2 and b & 0xF0 == 0x40 else 0
            )
            assert t.pfx[mi][b] == want, (mi, hex(b))  # type: ignore[attr-defined]


def _kind(e: int) -> int:
    return (e >> KIND_SHIFT) & 7


def test_opcode_class_spot_checks(derived: object) -> None:
    """Entries whose meaning is known from the SDM, in 64-bit mode (mode index 2)."""
    op = derived.op  # type: ignore[attr-defined]
    one, esc = op[0][2][0], op[0][2][1]
    # MOV r/m, r: ModRM, no immediate, every form
    assert one[0x89] == 1 | MODRM_MASK | ALL_FORMS << FORMS_SHIFT
    # PUSH r: one byte, no ModRM
    assert one[0x50] == 1 | ALL_FORMS << FORMS_SHIFT
    # CALL rel32, and rel32 stays 4 bytes after 66 in 64-bit mode (iced / AMD-Intel: Jz is 32-bit)
    assert one[0xE8] & BASE == 5
    # MOV r32, imm32 (B8+r); after a REX it is not the common case (imm64 with REX.W)
    assert one[0xB8] == 5 | ALL_FORMS << FORMS_SHIFT
    rex_one = derived.op_rex[0][2]  # type: ignore[attr-defined]
    assert rex_one[0xB8] == K_IMMV << KIND_SHIFT | 5
    # otherwise the one-byte map after a REX is the one-byte map
    assert all(rex_one[b] == one[b] for b in range(256) if b & 0xF8 != 0xB8)
    # ADD r/m32, imm8 and imm32
    assert one[0x83] & (BASE | MODRM_MASK) == 2 | MODRM_MASK
    assert one[0x81] & BASE == 5
    # with 66: ADD r/m16, imm16
    assert op[1][2][0][0x81] & BASE == 3
    # LEA: memory forms only (mod != 3)
    lea_forms = one[0x8D] >> FORMS_SHIFT
    assert lea_forms == sum(1 << (mod << 3 | reg) for mod in range(3) for reg in range(8))
    # F6/F7: the immediate depends on ModRM.reg (TEST has one): the group table
    assert _kind(one[0xF7]) == K_GRP and one[0xF7] >> FORMS_SHIFT == 0
    grp = derived.grp[0][2][(one[0xF7] >> GRP_SHIFT) & 0x1F]  # type: ignore[attr-defined]
    assert grp[0 << 3 | 0] == 4 and grp[3 << 3 | 2] == 0  # TEST r/m32, imm32; NOT r32
    # REX, 0F and prefixes are not opcodes here; 0F 38 / VEX take the full walk
    assert _kind(one[0x48]) == K_REX and _kind(one[0x0F]) == K_ESC and _kind(one[0x66]) == K_PREFIX
    assert _kind(esc[0x38]) == K_SLOW and _kind(one[0xC5]) == K_SLOW
    # 0F 1F NOP r/m, 0F B6 MOVZX: ModRM, no immediate
    assert esc[0x1F] & (BASE | MODRM_MASK) == 1 | MODRM_MASK
    assert esc[0xB6] == 1 | MODRM_MASK | ALL_FORMS << FORMS_SHIFT
    # 16/32-bit mode: 40-4F are INC/DEC
    assert op[0][1][0][0x48] == 1 | ALL_FORMS << FORMS_SHIFT


# One of each kind of entry, in 64-bit mode: (bytes, length).
CASES = [
    ("89 c7", 2), ("48 8b 44 24 08", 5), ("8b 04 25 00 10 00 00", 7), ("48 b8" + " 11" * 8, 10),
    ("41 b8 01 00 00 00", 6), ("0f b6 c0", 3), ("4c 0f b6 04 24", 5), ("8d 44 24 08", 4),
    ("f7 c0 01 00 00 00", 6), ("f7 d0", 2), ("66 f7 c0 01 00", 5), ("66 0f 1f 44 00 00", 6),
    ("66 2e 0f 1f 84 00 00 00 00 00", 10), ("64 48 8b 04 25 28 00 00 00", 9), ("f3 0f 1e fa", 4),
    ("66 48 c7 c0 01 00 00 00", 8), ("f0 48 0f b1 11", 5), ("c5 f9 6f 07", 4), ("e8 00 00 00 00", 5),
    ("66 66 66 66 66 2e 0f 1f 84 00 00 00 00 00", 14),  # repeated 66, 6 prefixes
    ("66 66 2e 0f 1f 84 00 00 00 00 00", 11),  # nop padding
    ("66 66 66 66 66 66 66 66 66 90", 10),  # 9 prefixes: the full walk
    ("f3 66 0f b8 c0", 5), ("66 f3 0f b8 c0", 5),  # two different ones: the full walk (popcnt)
]


@pytest.mark.parametrize(("hexbytes", "length"), CASES)
def test_fast_path_cases(hexbytes: str, length: int) -> None:
    code = bytes.fromhex(hexbytes) + b"\x90" * 16
    slow = lib.xl_insn_length_slow(code, len(code), 64)
    assert lib.xl_insn_length(code, len(code), 64) == slow
    if length > 0:
        assert slow == length
