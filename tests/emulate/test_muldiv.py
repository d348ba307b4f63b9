"""MUL/IMUL (1, 2, 3 operands)/DIV/IDIV against Unicorn; #DE as a GuestFault."""

from __future__ import annotations

import pytest
from difftest import MMIO, RIP
from familytest import assert_family_agrees, batch

from emu.access import Op
from emu.decode import decode
from emu.emulate import CF, OF
from emu.errors import GuestFault
from emu.generic import emulate_at

W = MMIO[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_muldiv_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("muldiv", seed)


@pytest.mark.parametrize("hexbytes,reg,imm", [
    ("f7 2a", None, None), ("0f af 0a", "ecx", None), ("6b 0a fe", "ecx", 0xFFFFFFFE),
    ("48 69 0a 00 00 00 80", "rcx", 0xFFFFFFFF80000000),
])
def test_imul_forms_decode(hexbytes: str, reg: str | None, imm: int | None) -> None:
    a = decode(bytes.fromhex(hexbytes), 64, RIP)
    assert a.op is Op.IMUL and a.reg == reg and a.imm == imm


def test_imul_three_operand_truncates_and_sets_cf_of() -> None:
    cpu = batch(bytes.fromhex("6b 0a 10"), regs={"rdx": W}, read_value=0x10000000)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rcx") == 0 and cpu.get("rflags") & (CF | OF) == CF | OF


@pytest.mark.parametrize("hexbytes,regs,read_value", [
    ("f6 3a", {"rax": 0xFF80}, 0xFF),          # idiv byte: -128 / -1 does not fit
    ("f7 32", {"rax": 0, "rbx": 0}, 0),        # div by zero
    ("48 f7 32", {"rdx": 0}, 1),               # rdx is the address: rdx:rax / 1 overflows
])
def test_divide_errors_are_de(hexbytes: str, regs: dict[str, int], read_value: int) -> None:
    cpu = batch(bytes.fromhex(hexbytes), regs={**regs, "rdx": W}, read_value=read_value)
    before = dict(cpu.regs)
    with pytest.raises(GuestFault) as err:
        emulate_at(cpu, RIP, 64)
    assert err.value.vector == 0 and cpu.regs == before


def test_idiv_truncates_toward_zero_with_remainder_sign_of_dividend() -> None:
    cpu = batch(bytes.fromhex("f7 3b"), regs={"rbx": W, "rax": (-7) & 0xFFFFFFFF, "rdx": 0xFFFFFFFF},
                read_value=2)
    emulate_at(cpu, RIP, 64)
    assert cpu.get("rax") == (-3) & 0xFFFFFFFF and cpu.get("rdx") == (-1) & 0xFFFFFFFF


def test_muldiv_through_cs_override_reads_without_gp() -> None:
    """32-bit `cs: mul/imul/div/idiv [m]` only reads its memory operand: no #GP (a CS override is
    #GP only for writes; found by `exitlab fuzz --family muldiv`), while `cs: shl [m], 1` writes."""
    for code in ("2e f7 23", "2e f6 2b", "2e f7 33", "2e f7 3b"):  # mul/imul/div/idiv [ebx]
        cpu = batch(bytes.fromhex(code), mode=32, regs={"rbx": W, "rax": 6, "rdx": 0}, read_value=3)
        emulate_at(cpu, RIP, 32)
    cpu = batch(bytes.fromhex("2e d1 22"), mode=32, regs={"rdx": W}, read_value=3)
    with pytest.raises(GuestFault):
        emulate_at(cpu, RIP, 32)
