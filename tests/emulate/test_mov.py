"""MOV (r/m,r; r,r/m; r/m,imm), MOVZX/MOVSX, MOVNTI against Unicorn, plus the width rules."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mov_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("mov", seed)


def test_32_bit_load_zero_extends_16_bit_load_merges() -> None:
    cpu = batch(bytes.fromhex("8b 02"), regs={"rdx": W, "rax": 0x1111_2222_3333_4444}, read_value=0xAABBCCDD)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rax") == 0xAABBCCDD
    cpu = batch(bytes.fromhex("66 8b 02"), regs={"rdx": W, "rax": 0x1111_2222_3333_4444}, read_value=0xCCDD)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rax") == 0x1111_2222_3333_CCDD


def test_mov_imm32_to_qword_is_sign_extended() -> None:
    cpu = batch(bytes.fromhex("48 c7 02 00 00 00 80"), regs={"rdx": W})
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W, 8, True, 0xFFFF_FFFF_8000_0000),)
    assert out.next_rip == RIP + 7


def test_movsx_byte_into_64_bit_register() -> None:
    cpu = batch(bytes.fromhex("48 0f be 02"), regs={"rdx": W}, read_value=0x80)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rax") == 0xFFFF_FFFF_FFFF_FF80


def test_high_byte_register_without_rex() -> None:
    # 88 22: mov [rdx], ah (no REX: reg 4 is AH, not SPL)
    cpu = batch(bytes.fromhex("88 22"), regs={"rdx": W, "rax": 0xBEEF})
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W, 1, True, 0xBE),)
