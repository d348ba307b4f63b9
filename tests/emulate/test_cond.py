"""CMOVcc and SETcc against Unicorn; the read happens whatever the condition."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.emulate import ZF
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_cond_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("cond", seed)


def test_cmov_false_still_reads_and_zero_extends_32_bit() -> None:
    cpu = batch(bytes.fromhex("0f 44 0a"), regs={"rdx": W, "rcx": 0xFFFF_FFFF_0000_0001}, read_value=7)
    out = emulate_at(cpu, RIP, 64)  # cmove, ZF clear
    assert out.accesses == (DeviceAccess(W, 4, False, 7),) and cpu.get("rcx") == 1


def test_cmov_true_moves() -> None:
    cpu = batch(bytes.fromhex("48 0f 44 0a"), regs={"rdx": W, "rflags": 0x2 | ZF}, read_value=7)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rcx") == 7


@pytest.mark.parametrize("flags,value", [(0x2, 0), (0x2 | ZF, 1)])
def test_setcc_always_writes_its_byte(flags: int, value: int) -> None:
    cpu = batch(bytes.fromhex("0f 94 02"), regs={"rdx": W + 3, "rflags": flags})
    assert emulate_at(cpu, RIP, 64).accesses == (DeviceAccess(W + 3, 1, True, value),)
