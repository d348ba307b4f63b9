"""ADD OR ADC SBB AND SUB XOR CMP, TEST NOT NEG INC DEC, XCHG XADD CMPXCHG on memory against Unicorn,
plus flag corner cases."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.emulate import CF, STATUS
from emu.generic import emulate_at
from emu.semantics.core import AF, OF, PF, SF, ZF

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_alu_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("alu", seed)


def test_cmp_reads_and_never_writes() -> None:
    cpu = batch(bytes.fromhex("39 02"), regs={"rdx": W, "rax": 5}, read_value=5)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W, 4, False, 5),)
    assert cpu.get("rflags") & STATUS == ZF | PF


def test_add_signed_overflow_and_carry() -> None:
    # add byte ptr [rdx], 0x80 on 0x80: 0x00 with CF OF ZF PF
    cpu = batch(bytes.fromhex("80 02 80"), regs={"rdx": W}, read_value=0x80)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses[-1] == DeviceAccess(W, 1, True, 0)
    assert cpu.get("rflags") & STATUS == CF | OF | ZF | PF


def test_inc_keeps_cf_and_sets_af() -> None:
    cpu = batch(bytes.fromhex("fe 02"), regs={"rdx": W, "rflags": 0x2 | CF}, read_value=0x0F)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rflags") & STATUS == CF | AF


def test_neg_of_zero_clears_cf_and_not_changes_no_flag() -> None:
    cpu = batch(bytes.fromhex("f7 1a"), regs={"rdx": W, "rflags": 0x2 | CF}, read_value=0)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rflags") & CF == 0
    cpu = batch(bytes.fromhex("f7 12"), regs={"rdx": W, "rflags": 0x2 | SF}, read_value=0)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses[-1].value == 0xFFFFFFFF and cpu.get("rflags") & STATUS == SF


def test_failed_32_bit_cmpxchg_loads_and_zero_extends_the_accumulator() -> None:
    cpu = batch(bytes.fromhex("0f b1 0a"), regs={"rdx": W, "rax": 0xFFFF_FFFF_0000_0001}, read_value=7)
    out = emulate_at(cpu, RIP, 64)
    assert cpu.get("rax") == 7 and not cpu.get("rflags") & ZF
    assert out.accesses == (DeviceAccess(W, 4, False, 7), DeviceAccess(W, 4, True, 7))
