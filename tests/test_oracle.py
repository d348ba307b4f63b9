"""The Unicorn oracle itself: the facts the differential tests rely on."""

from __future__ import annotations

from emu.batchcpu import default_ram_regions
from emu.cpu import DeviceAccess
from emu.oracle import run_one

MMIO = (0xFEB00000, 0x1000)
RAM = default_ram_regions(0x1000, MMIO)


def test_qword_arrives_whole_with_read_value() -> None:
    r = run_one(b"\x48\x8b\x02", 64, 0x1000, {"rdx": MMIO[0]}, MMIO, 0x1122334455667788, RAM)
    assert r.accesses == (DeviceAccess(MMIO[0], 8, False, 0x1122334455667788),)
    assert r.reg("rax") == 0x1122334455667788 and r.next_rip == 0x1003 and r.fault is None


def test_sixteen_bytes_arrive_as_two_halves_low_first() -> None:
    r = run_one(b"\x66\x0f\x7f\x0a", 64, 0x1000, {"rdx": MMIO[0]}, MMIO, 0, RAM, xmm={1: (2 << 64) | 1})
    assert r.accesses == (DeviceAccess(MMIO[0], 8, True, 1), DeviceAccess(MMIO[0] + 8, 8, True, 2))


def test_faults_are_reported() -> None:
    assert run_one(b"\x8b\x02", 64, 0x1000, {"rdx": 0x7000_0000}, MMIO, 0, RAM).fault
    assert run_one(b"\x0f\x0b", 64, 0x1000, {}, MMIO, 0, RAM).fault


def test_rep_runs_all_iterations() -> None:
    r = run_one(b"\xf3\xaa", 64, 0x1000, {"rdi": MMIO[0], "rcx": 3, "rax": 0x41}, MMIO, 0, RAM)
    assert [a.gpa for a in r.accesses] == [MMIO[0], MMIO[0] + 1, MMIO[0] + 2] and r.reg("rcx") == 0
