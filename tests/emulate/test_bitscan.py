"""BSF/BSR/POPCNT/LZCNT/TZCNT against Unicorn, zero inputs and the F3 prefix."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.access import Op
from emu.decode import decode
from emu.emulate import CF, STATUS, ZF
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_bitscan_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("bitscan", seed)


@pytest.mark.parametrize("hexbytes,op", [
    ("0f bc 0a", Op.BSF), ("0f bd 0a", Op.BSR), ("f3 0f bc 0a", Op.TZCNT), ("f3 0f bd 0a", Op.LZCNT),
    ("f3 0f b8 0a", Op.POPCNT), ("66 f3 0f bd 0a", Op.LZCNT),
])
def test_f3_selects_the_count_forms(hexbytes: str, op: Op) -> None:
    assert decode(bytes.fromhex(hexbytes), 64, RIP).op is op


@pytest.mark.parametrize("hexbytes,rcx,flags", [
    ("0f bc 0a", 0x1234_5678_9ABC_DEF0 & 0xFFFFFFFF, ZF | 0x4),   # BSF: dest written back (32-bit), ZF
    ("48 0f bd 0a", 0x1234_5678_9ABC_DEF0, ZF | 0x4),              # BSR r64: unchanged
    ("f3 0f bc 0a", 32, CF),                                        # TZCNT: operand size, CF
    ("f3 48 0f bd 0a", 64, CF),                                     # LZCNT r64
    ("f3 0f b8 0a", 0, ZF),                                         # POPCNT: ZF only
])
def test_zero_input(hexbytes: str, rcx: int, flags: int) -> None:
    regs = {"rdx": W, "rcx": 0x1234_5678_9ABC_DEF0, "rflags": 0x2 | STATUS}
    cpu = batch(bytes.fromhex(hexbytes), regs=regs, read_value=0)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rcx") == rcx and cpu.get("rflags") & STATUS == flags
