"""PUSH/POP (reg, imm, m), CALL/JMP through memory, RET, LEAVE, ENTER; stack or pointer in MMIO."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.cpu import DeviceAccess
from emu.errors import EmulationError, GuestFault
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stack_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("stack", seed)


def test_push_to_a_stack_in_mmio() -> None:
    cpu = batch(b"\x53", regs={"rsp": W + 0x100, "rbx": 0x1122334455667788})
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W + 0xF8, 8, True, 0x1122334455667788),)
    assert cpu.get("rsp") == W + 0xF8


def test_pop_from_a_stack_in_mmio_32bit() -> None:
    cpu = batch(b"\x5e", mode=32, regs={"rsp": W + 0x100}, read_value=0xCAFEBABE)
    out = emulate_at(cpu, RIP, 32)
    assert out.accesses == (DeviceAccess(W + 0x100, 4, False, 0xCAFEBABE),)
    assert cpu.get("rsi") == 0xCAFEBABE and cpu.get("rsp") == W + 0x104


def test_call_through_a_pointer_in_mmio_reads_then_pushes() -> None:
    cpu = batch(b"\xff\x12", regs={"rdx": W + 0x40, "rsp": 0x200000}, read_value=0x3000)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W + 0x40, 8, False, 0x3000),)
    assert out.next_rip == 0x3000 and cpu.get("rsp") == 0x1FFFF8
    assert cpu.read_mem(0x1FFFF8, 8) == (RIP + 2).to_bytes(8, "little")


def test_pop_m_addresses_with_the_incremented_rsp() -> None:
    # pop qword ptr [rsp+8]: the destination is computed after RSP += 8
    cpu = batch(b"\x8f\x44\x24\x08", regs={"rsp": W + 0x100}, read_value=0x55)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W + 0x100, 8, False, 0x55), DeviceAccess(W + 0x110, 8, True, 0x55))


def test_enter_with_nesting_copies_frame_pointers() -> None:
    cpu = batch(b"\xc8\x10\x00\x02", regs={"rsp": W + 0x100, "rbp": W + 0x200}, read_value=0x77)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W + 0xF8, 8, True, W + 0x200),
                            DeviceAccess(W + 0x1F8, 8, False, 0x77),
                            DeviceAccess(W + 0xF0, 8, True, 0x77),
                            DeviceAccess(W + 0xE8, 8, True, W + 0xF8))
    assert cpu.get("rbp") == W + 0xF8 and cpu.get("rsp") == W + 0xF8 - 0x10 - 16


def test_non_canonical_return_address_is_gp_and_rsp_unchanged() -> None:
    cpu = batch(b"\xc3", regs={"rsp": W + 0x100}, read_value=0x8000_0000_0000_0000)
    with pytest.raises(GuestFault) as err:
        emulate_at(cpu, RIP, 64)
    assert err.value.vector == 13 and cpu.get("rsp") == W + 0x100


def test_operand_size_override_on_near_branches_is_refused() -> None:
    with pytest.raises(EmulationError, match="operand-size override"):
        emulate_at(batch(b"\x66\xc3", regs={"rsp": W}), RIP, 64)


def _exit(cpu: object, code: bytes, addr: int, write: bool) -> object:
    from emu.exits import REG_NAMES, ExitKind, ExitRecord

    regs = tuple(cpu.regs[n] for n in REG_NAMES)  # type: ignore[attr-defined]
    kind = ExitKind.MMIO_WRITE if write else ExitKind.MMIO_READ
    return ExitRecord(kind=kind, rip=RIP, mode=64, addr=addr, insn=code, regs=regs,
                      truth_size=8, truth_value=0)


def test_the_path_accepts_an_exit_on_the_stack_slot_and_refuses_a_foreign_address() -> None:
    from emu.generic import GenericPath

    code = b"\x53"  # push rbx, stack in MMIO: the exit is the stack write
    cpu = batch(code, regs={"rsp": W + 0x100, "rbx": 1})
    out = GenericPath().handle(_exit(cpu, code, W + 0xF8, True), cpu)  # type: ignore[arg-type]
    assert out.accesses == (DeviceAccess(W + 0xF8, 8, True, 1),)
    cpu = batch(code, regs={"rsp": W + 0x100, "rbx": 1})
    with pytest.raises(EmulationError, match="does not match"):
        GenericPath().handle(_exit(cpu, code, W + 0x500, True), cpu)  # type: ignore[arg-type]
    assert cpu.accesses == []


def test_the_path_accepts_xlat_and_call_m_exits() -> None:
    from emu.generic import GenericPath

    cpu = batch(b"\xd7", regs={"rbx": W, "rax": 0x30}, read_value=1)
    GenericPath().handle(_exit(cpu, b"\xd7", W + 0x30, False), cpu)  # type: ignore[arg-type]
    assert cpu.get("rax") == 1
    cpu = batch(b"\xff\x12", regs={"rdx": 0x100000, "rsp": W + 0x100}, read_value=0)
    cpu.write_mem(0x100000, (0x2000).to_bytes(8, "little"))
    out = GenericPath().handle(_exit(cpu, b"\xff\x12", W + 0xF8, True), cpu)  # type: ignore[arg-type]
    assert out.next_rip == 0x2000 and out.accesses == (DeviceAccess(W + 0xF8, 8, True, RIP + 2),)
