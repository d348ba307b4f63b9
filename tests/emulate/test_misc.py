"""XLAT, MOVSXD (incl. the r16 form: Intel SDM vs AMD APM), SMSW m16."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP, Case, run_truth
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.decode import decode
from emu.errors import EmulationError
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_misc_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("misc", seed)


def test_xlat_reads_rbx_plus_al() -> None:
    cpu = batch(b"\xd7", regs={"rbx": W + 0x100, "rax": 0x1234_5680}, read_value=0x99)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W + 0x180, 1, False, 0x99),) and cpu.get("rax") == 0x1234_5699


def test_movsxd_r16_reads_a_word_per_intel_sdm() -> None:
    """Intel SDM: 66 63 /r is MOVSXD r16, r/m16 (a 2-byte read); QEMU/Unicorn read 4 bytes and keep 2.
    The register result is the same; only the device access size differs (documented)."""
    code = bytes.fromhex("66 63 0a")
    assert decode(code, 64, RIP).size == 2
    cpu = batch(code, regs={"rdx": W, "rcx": 0xFFFF_FFFF_FFFF_FFFF}, read_value=0x8000_1234)
    out = emulate_at(cpu, RIP, 64)
    truth = run_truth(Case(code, 64, {"rdx": W, "rcx": 0xFFFF_FFFF_FFFF_FFFF}, 0x8000_1234))
    assert out.accesses == (DeviceAccess(W, 2, False, 0x1234),)
    assert [(a.gpa, a.size) for a in truth.accesses] == [(W, 4)]
    assert cpu.get("rcx") == truth.reg("rcx") == 0xFFFF_FFFF_FFFF_1234


@pytest.mark.parametrize("mode,hexbytes", [(64, "0f 01 22"), (64, "48 0f 01 22"), (32, "66 0f 01 22")])
def test_smsw_stores_cr0_low_word_like_unicorn(mode: int, hexbytes: str) -> None:
    code = bytes.fromhex(hexbytes)
    truth = run_truth(Case(code, mode, {"rdx": W + 6}, 0))
    cpu = batch(code, mode, regs={"rdx": W + 6}, cr0=0x11)  # unicorn's CR0 in its 32/64-bit modes
    out = emulate_at(cpu, RIP, mode)
    assert out.accesses == truth.accesses == (DeviceAccess(W + 6, 2, True, 0x11),)


def test_smsw_without_cr0_declines_before_any_access() -> None:
    cpu = batch(bytes.fromhex("0f 01 22"), regs={"rdx": W})
    with pytest.raises(EmulationError, match="CR0"):
        emulate_at(cpu, RIP, 64)
    assert cpu.accesses == []
