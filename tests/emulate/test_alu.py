"""ADD OR ADC SBB AND SUB XOR CMP, TEST NOT NEG INC DEC, XCHG XADD CMPXCHG on memory against Unicorn,
plus flag corner cases."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from difftest import MMIO, RIP, _modrm_case, check, run_truth
from familytest import assert_family_agrees, batch

from emu.access import Op
from emu.cpu import DeviceAccess
from emu.decode import decode
from emu.emulate import CF, STATUS
from emu.errors import EmulationError
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


_CRC32_FORMS = [  # (prefix before REX, opcode, memory size, modes)
    (b"\xf2", b"\x0f\x38\xf0", 1, (64, 32)),       # CRC32 r32, r/m8
    (b"\x66\xf2", b"\x0f\x38\xf1", 2, (64, 32)),   # CRC32 r32, r/m16
    (b"\xf2", b"\x0f\x38\xf1", 4, (64, 32)),       # CRC32 r32, r/m32
    (b"\xf2\x48", b"\x0f\x38\xf1", 8, (64,)),      # CRC32 r64, r/m64
    (b"\xf2\x48", b"\x0f\x38\xf0", 1, (64,)),      # CRC32 r64, r/m8
]


@pytest.mark.parametrize("mode", [64, 32])
def test_crc32_agrees_with_unicorn_iced_and_c(mode: int) -> None:
    """CRC32 (SSE4.2, F2 0F 38 F0/F1, Intel SDM vol. 2A): CRC-32C of the memory source into the
    register, zero-extended, no flags. Added by one [ops] and one [forms] row of the opcode map, its
    semantics in emu/semantics/alu.py and fastpath/csrc/sem_alu.c (no sem.c edit: its operand
    shapes, memsrc and needreg, come from the map). Python against Unicorn and iced-x86 (difftest
    check: length, memory size, accesses, registers, flags), the C path against Unicorn and Python."""
    from test_c_families import _ctx, _exit, c_vs_python, c_vs_unicorn

    rng = random.Random(f"crc32:{mode}")
    ctx = _ctx(MMIO)
    seen = Counter()
    for prefix, opcode, size, modes in _CRC32_FORMS * 12:
        if mode not in modes:
            continue
        case = _modrm_case(rng, mode, opcode, rng.randrange(16 if mode == 64 else 8), size, prefix=prefix)
        case.read_value = rng.getrandbits(8) * 0x0101_0101_0101_0101  # c_vs_unicorn: a constant-byte device
        assert decode(case.code, mode, RIP).op is Op.CRC32, case.where()
        assert check(case) == "agree"
        truth = run_truth(case)
        if not truth.accesses:
            continue  # a RAM operand: no exit for the C path
        rec = _exit(case, tuple(truth.accesses))
        assert c_vs_unicorn(case, rec, truth, ctx) == "agree", case.where()
        assert c_vs_python(case, rec, bytes(range(256)) * (MMIO[1] // 256), ctx) == "agree", case.where()
        seen[size] += 1
    assert set(seen) == ({1, 2, 4, 8} if mode == 64 else {1, 2, 4}), seen


def test_crc32_known_value_and_refusals() -> None:
    # CRC-32C("123456789") = 0xE3069283 (the published check value: init and final xor ~0): a qword
    # "12345678" then a byte "9" through RAX, flags untouched
    cpu = batch(bytes.fromhex("f2 48 0f 38 f1 02"), regs={"rdx": W, "rax": 0xFFFF_FFFF,
                                                          "rflags": 0x2 | STATUS},
                read_value=int.from_bytes(b"12345678", "little"))
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == (DeviceAccess(W, 8, False, int.from_bytes(b"12345678", "little")),)
    cpu2 = batch(bytes.fromhex("f2 48 0f 38 f0 02"), regs={"rdx": W, "rax": cpu.get("rax"),
                                                           "rflags": 0x2 | STATUS}, read_value=ord("9"))
    emulate_at(cpu2, RIP, 64)
    assert cpu2.get("rax") ^ 0xFFFF_FFFF == 0xE306_9283 and cpu2.get("rflags") & STATUS == STATUS
    # F3 next to F2 (Unicorn: #UD), LOCK (#UD), a memory destination does not exist
    for code in ("f3 f2 0f 38 f1 02", "f0 f2 0f 38 f1 02"):
        with pytest.raises(EmulationError):
            emulate_at(batch(bytes.fromhex(code), regs={"rdx": W}), RIP, 64)
