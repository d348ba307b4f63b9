"""BT BTS BTR BTC on memory (register and immediate bit offsets) against Unicorn, plus offsets that
leave the operand."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.emulate import CF
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bit_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("bit", seed)


def test_negative_register_offset_addresses_the_operand_below() -> None:
    # bts dword ptr [rdx], eax with eax = -1: bit 31 of the dword at rdx-4
    cpu = batch(bytes.fromhex("0f ab 02"), regs={"rdx": W + 0x10, "rax": 0xFFFF_FFFF}, read_value=0)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W + 0xC, 4, False, 0), DeviceAccess(W + 0xC, 4, True, 0x8000_0000))
    assert not cpu.get("rflags") & CF


def test_immediate_offset_is_taken_modulo_the_operand_width() -> None:
    # bt word ptr [rdx], 17: bit 1 of the word at rdx (no displacement for an immediate offset)
    cpu = batch(bytes.fromhex("66 0f ba 22 11"), regs={"rdx": W}, read_value=0b10)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W, 2, False, 2),)
    assert cpu.get("rflags") & CF


def test_btr_clears_and_reports_the_old_bit() -> None:
    cpu = batch(bytes.fromhex("0f ba 32 03"), regs={"rdx": W}, read_value=0xFF)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses[-1] == DeviceAccess(W, 4, True, 0xF7) and cpu.get("rflags") & CF
