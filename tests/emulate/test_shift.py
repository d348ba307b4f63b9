"""SHL/SHR/SAR/ROL/ROR/RCL/RCR (1, CL, imm8) and SHLD/SHRD against Unicorn, plus count corner cases."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.emulate import CF, STATUS
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shift_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("shift", seed)


def test_zero_count_changes_no_flag_but_writes_back() -> None:
    cpu = batch(bytes.fromhex("d3 22"), regs={"rdx": W, "rcx": 0x20, "rflags": 0x2 | STATUS}, read_value=5)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W, 4, False, 5), DeviceAccess(W, 4, True, 5))
    assert cpu.get("rflags") == 0x2 | STATUS


def test_rcl_byte_by_nine_is_a_full_rotation() -> None:
    cpu = batch(bytes.fromhex("c0 12 09"), regs={"rdx": W, "rflags": 0x2 | CF}, read_value=0x81)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses[-1].value == 0x81 and cpu.get("rflags") & CF


def test_shld_sixteen_bit_count_above_16_follows_intel() -> None:
    # QEMU/Intel: shld r/m16, r16, 20 shifts dst:src:dst
    cpu = batch(bytes.fromhex("66 0f a4 0a 14"), regs={"rdx": W, "rcx": 0xBBBB}, read_value=0x1234)
    out = emulate_at(cpu, RIP, 64)
    wide = 0x1234 << 32 | 0xBBBB << 16 | 0x1234
    assert out.accesses[-1].value == ((wide << 20) >> 32) & 0xFFFF
