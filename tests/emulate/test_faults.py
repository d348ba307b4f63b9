"""Precise faults and the REP iteration cap of the generic path (SEMANTICS rules 1, 4, 6; issue 11).

Row 16: an access running off the window end is `UnmappedAccess` (first unmapped GPA), not an
`emulation_error`, and nothing reaches the device. (b): a write straddling two devices is split per
device, low part first. (c): a write through a CS override in 32-bit code is #GP. (a): BT* leave
OF/SF/AF/PF unchanged (and why the docs' old claim about Unicorn was wrong).
"""

from __future__ import annotations

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as U

from emu.batchcpu import BatchCpu, default_ram_regions
from emu.cpu import DeviceAccess
from emu.emulate import AF, CF, OF, PF, SF, ZF
from emu.errors import EmulationError, GuestFault, UnmappedAccess
from emu.exits import ExitKind, ExitRecord
from emu.generic import GenericPath, emulate_at
from emu.platform import NOTIFY_MMIO, REGS_MMIO

RIP = 0x1000


def cpu_for(code: bytes, mode: int = 64, regs: dict[str, int] | None = None,
            mmio: tuple[int, int] = (REGS_MMIO, 0x1000), regions: tuple[tuple[int, int], ...] = (),
            read_value: int = 0) -> BatchCpu:
    cpu = BatchCpu(mode, {**(regs or {}), "rip": RIP, "rflags": 0x2}, mmio, read_value,
                   default_ram_regions(RIP, mmio), regions=regions)
    cpu.write_mem(RIP, code)
    return cpu


def test_row16_write_off_the_window_end_is_unmapped_with_no_device_access() -> None:
    # mov dword ptr [r14+0xffe], eax with r14 = REGS_MMIO
    cpu = cpu_for(bytes.fromhex("41 89 86 fe 0f 00 00"), regs={"r14": REGS_MMIO, "rax": 0x11223344})
    with pytest.raises(UnmappedAccess) as err:
        emulate_at(cpu, RIP, 64)
    assert err.value.gpa == REGS_MMIO + 0x1000 and err.value.write
    assert err.value.rip == RIP and err.value.insn == bytes.fromhex("41 89 86 fe 0f 00 00")
    assert cpu.accesses == []
    assert cpu.get("rax") == 0x11223344


def test_row16_through_the_path_with_an_exit_record() -> None:
    code = bytes.fromhex("41 89 86 fe 0f 00 00")
    cpu = cpu_for(code, regs={"r14": REGS_MMIO, "rax": 0x11223344})
    rec = ExitRecord(kind=ExitKind.MMIO_WRITE, rip=RIP, mode=64, addr=REGS_MMIO + 0xFFE, insn=code,
                     regs=tuple(cpu.regs.values()), truth_size=4, truth_value=0x11223344)
    with pytest.raises(UnmappedAccess):
        GenericPath().handle(rec, cpu)
    assert cpu.accesses == []


def test_unmapped_read_leaves_ram_untouched() -> None:
    # movsd from 0xfeb01fff to RAM: the 3 bytes after the window are unmapped
    cpu = cpu_for(b"\xa5", regs={"rsi": REGS_MMIO + 0xFFF, "rdi": 0x100008})
    cpu.write_mem(0x100008, b"\xaa" * 4)
    with pytest.raises(UnmappedAccess) as err:
        emulate_at(cpu, RIP, 64)
    assert err.value.gpa == REGS_MMIO + 0x1000 and not err.value.write
    assert cpu.read_mem(0x100008, 4) == b"\xaa" * 4 and cpu.accesses == []
    assert cpu.get("rsi") == REGS_MMIO + 0xFFF


def test_rep_movsd_faults_precisely_after_the_iterations_that_fit() -> None:
    # rule 6's example: rep movsd, 4 dwords to REGS_MMIO+0xff8 -> 2 writes, rcx=2, rdi=0xfeb02000
    cpu = cpu_for(b"\xf3\xa5", regs={"rsi": 0x100000, "rdi": REGS_MMIO + 0xFF8, "rcx": 4})
    cpu.write_mem(0x100000, bytes(range(16)))
    with pytest.raises(UnmappedAccess) as err:
        emulate_at(cpu, RIP, 64)
    assert err.value.gpa == REGS_MMIO + 0x1000
    assert err.value.iterations == 2 and len(err.value.accesses) == 2
    assert [a.gpa for a in cpu.accesses] == [REGS_MMIO + 0xFF8, REGS_MMIO + 0xFFC]
    assert cpu.get("rcx") == 2 and cpu.get("rdi") == REGS_MMIO + 0x1000 and cpu.get("rsi") == 0x100008


def test_straddling_write_is_split_per_device_low_part_first() -> None:
    # (b): a 2-byte write across NOTIFY_MMIO -> REGS_MMIO is one device access per region
    regions = ((NOTIFY_MMIO, 0x1000), (REGS_MMIO, 0x1000))
    cpu = cpu_for(bytes.fromhex("66 89 02"), regs={"rdx": REGS_MMIO - 1, "rax": 0xBBAA},
                  mmio=(NOTIFY_MMIO, 0x2000), regions=regions)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(REGS_MMIO - 1, 1, True, 0xAA),
                            DeviceAccess(REGS_MMIO, 1, True, 0xBB))


def test_straddling_read_is_split_and_reassembled() -> None:
    regions = ((NOTIFY_MMIO, 0x1000), (REGS_MMIO, 0x1000))
    cpu = cpu_for(bytes.fromhex("8b 02"), regs={"rdx": REGS_MMIO - 2}, mmio=(NOTIFY_MMIO, 0x2000),
                  regions=regions, read_value=0x44332211)
    out = emulate_at(cpu, RIP, 64)
    assert [(a.gpa, a.size) for a in out.accesses] == [(REGS_MMIO - 2, 2), (REGS_MMIO, 2)]
    assert cpu.get("rax") == 0x22112211


def test_without_regions_one_window_is_one_device() -> None:
    cpu = cpu_for(bytes.fromhex("66 89 02"), regs={"rdx": REGS_MMIO - 1, "rax": 0xBBAA},
                  mmio=(NOTIFY_MMIO, 0x2000))
    assert emulate_at(cpu, RIP, 64).accesses == (DeviceAccess(REGS_MMIO - 1, 2, True, 0xBBAA),)


def test_sixteen_byte_access_splits_per_device_then_in_8_byte_chunks() -> None:
    regions = ((NOTIFY_MMIO, 0x1000), (REGS_MMIO, 0x1000))
    cpu = cpu_for(bytes.fromhex("f3 0f 7f 02"), regs={"rdx": REGS_MMIO - 4}, mmio=(NOTIFY_MMIO, 0x2000),
                  regions=regions)
    out = emulate_at(cpu, RIP, 64)
    assert [(a.gpa - REGS_MMIO, a.size) for a in out.accesses] == [(-4, 4), (0, 8), (8, 4)]


@pytest.mark.parametrize("hexbytes", ["2e 66 89 02", "2e 01 02", "2e c6 02 01", "2e 0f ab 02"])
def test_write_through_cs_override_in_32bit_code_is_gp(hexbytes: str) -> None:
    # (c): flat 32-bit model, CS is execute/read: writing through it is #GP(0), nothing accessed
    cpu = cpu_for(bytes.fromhex(hexbytes), mode=32, regs={"rdx": REGS_MMIO + 8})
    with pytest.raises(GuestFault) as err:
        emulate_at(cpu, RIP, 32)
    assert err.value.vector == 13 and cpu.accesses == []


def test_read_through_cs_override_and_64bit_cs_override_are_fine() -> None:
    cpu = cpu_for(bytes.fromhex("2e 8b 02"), mode=32, regs={"rdx": REGS_MMIO + 8}, read_value=5)
    emulate_at(cpu, RIP, 32)
    assert cpu.get("rax") == 5
    cpu = cpu_for(bytes.fromhex("2e 89 02"), mode=64, regs={"rdx": REGS_MMIO + 8, "rax": 7})
    assert emulate_at(cpu, RIP, 64).accesses == (DeviceAccess(REGS_MMIO + 8, 4, True, 7),)


def test_rep_stops_after_max_iterations_with_rip_on_the_instruction() -> None:
    cpu = cpu_for(b"\xf3\xaa", regs={"rdi": REGS_MMIO + 0x20, "rax": 0x41, "rcx": 3})
    out = emulate_at(cpu, RIP, 64, max_iterations=1)
    assert out.next_rip == RIP and out.iterations == 1 and len(out.accesses) == 1
    assert cpu.get("rcx") == 2 and cpu.get("rdi") == REGS_MMIO + 0x21
    out = emulate_at(cpu, RIP, 64, max_iterations=5)
    assert out.next_rip == RIP + 2 and out.iterations == 2 and cpu.get("rcx") == 0


def test_iterations_of_a_rep_with_zero_count_and_of_a_plain_instruction() -> None:
    cpu = cpu_for(b"\xf3\xaa", regs={"rdi": REGS_MMIO, "rcx": 0})
    assert emulate_at(cpu, RIP, 64).iterations == 0
    cpu = cpu_for(b"\x89\x02", regs={"rdx": REGS_MMIO})
    assert emulate_at(cpu, RIP, 64, max_iterations=1).iterations == 1


def test_max_iterations_must_be_positive() -> None:
    cpu = cpu_for(b"\xf3\xaa", regs={"rdi": REGS_MMIO, "rcx": 1})
    with pytest.raises(ValueError):
        emulate_at(cpu, RIP, 64, max_iterations=0)


@pytest.mark.parametrize("hexbytes", ["0f a3 02", "0f ab 02", "0f b3 02", "0f bb 02", "0f ba 22 05"])
def test_bt_family_changes_only_cf(hexbytes: str) -> None:
    # (a): OF SF AF PF are undefined (SDM), ZF unchanged; the generic path leaves all but CF as they were
    for before in (0x2, 0x2 | OF | SF | AF | PF | ZF):
        cpu = cpu_for(bytes.fromhex(hexbytes), regs={"rdx": REGS_MMIO, "rax": 5}, read_value=0xFFFFFFFF)
        cpu.set("rflags", before)
        emulate_at(cpu, RIP, 64)
        assert cpu.get("rflags") == before | CF


def test_unicorn_bt_after_dec_does_not_leave_the_undefined_flags_unchanged() -> None:
    """Why docs/known-discrepancies.md no longer says Unicorn leaves them unchanged: after a DEC in
    the same block QEMU rebuilds them from DEC's lazy result (AF cleared, OF recomputed)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x1000, 0x10000)
    code = bytes.fromhex("ff c9 0f ba 22 00")  # dec ecx; bt dword ptr [rdx], 0
    uc.mem_write(0x1000, code)
    uc.mem_write(0x4000, (1).to_bytes(4, "little"))
    uc.reg_write(U.UC_X86_REG_RCX, 0x80000000)
    uc.reg_write(U.UC_X86_REG_RDX, 0x4000)
    uc.reg_write(U.UC_X86_REG_EFLAGS, 0x2)
    uc.emu_start(0x1000, 0x1000 + len(code))
    after = uc.reg_read(U.UC_X86_REG_EFLAGS)
    # DEC alone gives OF|AF|PF (0x816); BT should only have added CF -> 0x817
    assert after & (OF | AF) == 0 and after & CF


def test_divide_error_is_a_guest_fault_after_the_read() -> None:
    cpu = cpu_for(bytes.fromhex("f7 32"), regs={"rdx": REGS_MMIO}, read_value=0)
    with pytest.raises(GuestFault) as err:
        emulate_at(cpu, RIP, 64)
    assert err.value.vector == 0 and isinstance(err.value, EmulationError)
    assert len(cpu.accesses) == 1 and not cpu.accesses[0].write  # the divisor was read (as Unicorn)


def test_non_canonical_address_is_gp_before_any_access() -> None:
    cpu = cpu_for(bytes.fromhex("89 02"), regs={"rdx": 1 << 63})
    with pytest.raises(GuestFault) as err:
        emulate_at(cpu, RIP, 64)
    assert err.value.vector == 13 and cpu.accesses == []
