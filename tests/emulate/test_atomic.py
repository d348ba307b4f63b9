"""CMPXCHG8B/16B, MOVBE against Unicorn; MOVDIRI/MOVDIR64B (Unicorn has neither) by the SDM."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.emulate import ZF
from emu.errors import EmulationError, GuestFault
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_atomic_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("atomic", seed)


def test_cmpxchg16b_misaligned_is_gp_before_any_access() -> None:
    cpu = batch(bytes.fromhex("48 0f c7 0a"), regs={"rdx": W + 8})
    with pytest.raises(GuestFault) as err:
        emulate_at(cpu, RIP, 64)
    assert err.value.vector == 13 and cpu.accesses == []


def test_cmpxchg16b_failure_loads_rdx_rax_and_writes_the_old_value_back_low_qword_first() -> None:
    cpu = batch(bytes.fromhex("f0 48 0f c7 0a"), regs={"rdx": W + 0x10, "rax": 5, "rbx": 1, "rcx": 2},
                read_value=5)
    cpu.set("rdx", W + 0x10)
    out = emulate_at(cpu, RIP, 64)
    # rdx:rax = (W+0x10):5 != 5:5 -> failure: rdx:rax loaded, old value written back
    assert [(a.gpa - W, a.write) for a in out.accesses] == [
        (0x10, False), (0x18, False), (0x10, True), (0x18, True)]
    assert cpu.get("rax") == 5 and cpu.get("rdx") == 5 and not cpu.get("rflags") & ZF


def test_cmpxchg8b_success_keeps_upper_halves_per_sdm() -> None:
    regs = {"rsi": W, "rax": 0xAAAA_0000_0000_0007, "rdx": 0xBBBB_0000_0000_0000, "rbx": 1, "rcx": 2}
    cpu = batch(bytes.fromhex("0f c7 0e"), regs=regs, read_value=7)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses[-1] == DeviceAccess(W, 8, True, 2 << 32 | 1) and cpu.get("rflags") & ZF
    assert cpu.get("rax") == 0xAAAA_0000_0000_0007 and cpu.get("rdx") == 0xBBBB_0000_0000_0000


def test_movbe_store_swaps() -> None:
    cpu = batch(bytes.fromhex("0f 38 f1 02"), regs={"rdx": W, "rax": 0x11223344})
    assert emulate_at(cpu, RIP, 64).accesses == (DeviceAccess(W, 4, True, 0x44332211),)


def test_movdiri_is_a_plain_store_and_rejects_66() -> None:
    cpu = batch(bytes.fromhex("48 0f 38 f9 02"), regs={"rdx": W, "rax": 0x1122334455667788})
    assert emulate_at(cpu, RIP, 64).accesses == (DeviceAccess(W, 8, True, 0x1122334455667788),)
    with pytest.raises(EmulationError, match="66/F2/F3"):
        emulate_at(batch(bytes.fromhex("66 0f 38 f9 02"), regs={"rdx": W}), RIP, 64)


def test_movdir64b_copies_64_bytes_as_eight_qword_writes() -> None:
    cpu = batch(bytes.fromhex("66 0f 38 f8 0a"), regs={"rcx": W + 0x40, "rdx": 0x100000})
    cpu.write_mem(0x100000, bytes(range(64)))
    out = emulate_at(cpu, RIP, 64)
    assert [a.gpa - W for a in out.accesses] == list(range(0x40, 0x80, 8))
    assert all(a.write for a in out.accesses)
    assert out.accesses[1].value == int.from_bytes(bytes(range(8, 16)), "little")


def test_movdir64b_misaligned_destination_is_gp() -> None:
    cpu = batch(bytes.fromhex("66 0f 38 f8 0a"), regs={"rcx": W + 0x48, "rdx": 0x100000})
    with pytest.raises(GuestFault):
        emulate_at(cpu, RIP, 64)
    assert cpu.accesses == []
