"""CMPS/SCAS with REPE/REPNE (and the string family) against Unicorn, plus exact corner cases."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.decode import decode
from emu.emulate import ZF
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_string_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("string", seed)


def test_repe_cmpsb_stops_at_the_first_difference() -> None:
    cpu = batch(b"\xf3\xa6", regs={"rsi": 0x100000, "rdi": W + 0x10, "rcx": 8}, read_value=0x41)
    cpu.write_mem(0x100000, b"AAAB")
    out = emulate_at(cpu, RIP, 64)
    assert len(out.accesses) == 4 and cpu.get("rcx") == 4 and not cpu.get("rflags") & ZF
    assert cpu.get("rsi") == 0x100004 and cpu.get("rdi") == W + 0x14 and out.next_rip == RIP + 2


def test_repne_scasb_finds_the_byte_and_stops() -> None:
    cpu = batch(b"\xf2\xae", regs={"rdi": 0x100000, "rcx": 10, "rax": 0x43})
    cpu.write_mem(0x100000, b"ABCD")
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rcx") == 7 and cpu.get("rdi") == 0x100003 and cpu.get("rflags") & ZF


def test_cmps_reads_rsi_then_rdi_like_kvm() -> None:
    cpu = batch(b"\xa7", regs={"rsi": W + 0x100, "rdi": W + 0x200}, read_value=1)
    assert [a.gpa for a in emulate_at(cpu, RIP, 64).accesses] == [W + 0x100, W + 0x200]


def test_scas_with_0x67_counts_ecx_and_wraps_edi() -> None:
    cpu = batch(b"\x67\xf3\xaf", regs={"rdi": 0x1_FFFF_FFFC, "rcx": 0xFFFF_0000_0000_0001, "rax": 0})
    a = decode(b"\x67\xf3\xaf", 64, RIP)
    assert a.rep and not a.repne and a.mem.addr_size == 4
    assert cpu.get("rdi") & 0xFFFFFFFF == 0xFFFFFFFC


def test_scas_down_with_df() -> None:
    cpu = batch(b"\xf3\xae", regs={"rdi": W + 0x10, "rcx": 3, "rax": 0x7, "rflags": 0x402}, read_value=7)
    out = emulate_at(cpu, RIP, 64)
    assert [a.gpa for a in out.accesses] == [W + 0x10, W + 0xF, W + 0xE]
    assert cpu.get("rdi") == W + 0xD and cpu.get("rcx") == 0


def test_rep_cmps_respects_the_iteration_cap() -> None:
    cpu = batch(b"\xf3\xa6", regs={"rsi": W, "rdi": W + 0x100, "rcx": 5}, read_value=9)
    out = emulate_at(cpu, RIP, 64, max_iterations=2)
    assert out.next_rip == RIP and out.iterations == 2 and cpu.get("rcx") == 3
    assert out.accesses == (DeviceAccess(W, 1, False, 9), DeviceAccess(W + 0x100, 1, False, 9),
                            DeviceAccess(W + 1, 1, False, 9), DeviceAccess(W + 0x101, 1, False, 9))


def test_last_rep_prefix_decides() -> None:
    assert decode(b"\xf3\xf2\xa6", 64, RIP).repne
    assert not decode(b"\xf2\xf3\xa6", 64, RIP).repne


@pytest.mark.parametrize("hexbytes,rule", [
    ("f2 f3 a6", "unicorn-f2-wins-over-f3-on-cmps-scas"),
    ("f2 f3 ae", "unicorn-f2-wins-over-f3-on-cmps-scas"),
    ("f3 f2 a6", "unicorn-cmps-reads-rdi-first"),
    ("a7", "unicorn-cmps-reads-rdi-first"),
])
def test_fuzzer_explains_the_string_deviations_precisely(hexbytes: str, rule: str) -> None:
    from exitlab.tools.fuzz.case import Case as FuzzCase
    from exitlab.tools.fuzz.oracles import Checker

    regs = {"rsi": W + 0x10, "rdi": W + 0x100, "rcx": 5, "rax": 0x41}
    case = FuzzCase.make(bytes.fromhex(hexbytes), 64, regs, MMIO, 0x41)
    result = Checker(use_c=False).check(case)
    assert [f.explained for f in result.findings] == [rule]
