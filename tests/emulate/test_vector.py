"""SSE/AVX moves. Legacy SSE forms against Unicorn; VEX forms (unicorn 2.1.4 has no AVX) against the
legacy form with the same memory behaviour, and by hand for the 256-bit forms."""

from __future__ import annotations

import random

import pytest
from difftest import MMIO, RIP, Case, run_truth
from familytest import assert_family_agrees, batch

from emu.access import Op
from emu.cpu import DeviceAccess
from emu.decode import decode
from emu.errors import EmulationError, GuestFault
from emu.generic import emulate_at

W = MMIO[0]
M128 = (1 << 128) - 1


@pytest.mark.parametrize("seed", [1, 2])
def test_vector_family_agrees_with_unicorn(seed: int) -> None:
    assert_family_agrees("vector", seed)


# (VEX bytes, legacy bytes with the same access) -- both with ModRM [rdx], register 1
PAIRS = [
    ("c5 fa 6f 0a", "f3 0f 6f 0a"),   # vmovdqu xmm1, m128 / movdqu
    ("c5 f9 7f 0a", "66 0f 7f 0a"),   # vmovdqa m128, xmm1
    ("c5 f8 10 0a", "0f 10 0a"),      # vmovups
    ("c5 f9 11 0a", "66 0f 11 0a"),   # vmovupd store
    ("c5 f8 28 0a", "0f 28 0a"),      # vmovaps
    ("c5 fa 10 0a", "f3 0f 10 0a"),   # vmovss load
    ("c5 fb 11 0a", "f2 0f 11 0a"),   # vmovsd store
    ("c5 f9 6e 0a", "66 0f 6e 0a"),   # vmovd load
    ("c5 fa 7e 0a", "f3 0f 7e 0a"),   # vmovq load
    ("c5 fb f0 0a", "f2 0f f0 0a"),   # vlddqu
    ("c4 e2 79 2a 0a", "66 0f 38 2a 0a"),  # vmovntdqa
    ("c5 f9 e7 0a", "66 0f e7 0a"),   # vmovntdq
]


@pytest.mark.parametrize("vex,legacy", PAIRS)
def test_vex128_moves_match_the_legacy_form_and_zero_the_upper_half(vex: str, legacy: str) -> None:
    rng = random.Random(vex)
    for _ in range(20):
        addr = W + rng.randrange(0, 0xFF) * 16
        ymm = {i: rng.getrandbits(256) for i in range(16)}
        rv = rng.getrandbits(64)
        truth = run_truth(Case(bytes.fromhex(legacy), 64, {"rdx": addr}, rv, ymm=ymm))
        assert truth.fault is None
        cpu = batch(bytes.fromhex(vex), regs={"rdx": addr}, read_value=rv, ymm=ymm)
        out = emulate_at(cpu, RIP, 64)
        assert out.accesses == truth.accesses
        a = decode(bytes.fromhex(vex), 64, RIP)
        assert a.vex
        if a.op is Op.SSE_LOAD:
            assert cpu.get_ymm(1) == truth.ymm[1] & M128  # VEX.128 load zeroes bits 255:128
        else:
            assert cpu.get_ymm(1) == ymm[1]


def test_legacy_load_keeps_the_upper_half() -> None:
    cpu = batch(bytes.fromhex("f3 0f 6f 0a"), regs={"rdx": W}, read_value=1, ymm={1: (1 << 256) - 1})
    emulate_at(cpu, RIP, 64)
    assert cpu.get_ymm(1) == ((1 << 256) - 1) & ~M128 | (1 << 64 | 1)


def test_vmovdqu_ymm_load_is_four_qword_reads_low_first() -> None:
    cpu = batch(bytes.fromhex("c5 fe 6f 0a"), regs={"rdx": W + 0x104}, read_value=0x1111)
    out = emulate_at(cpu, RIP, 64)
    assert out.accesses == tuple(DeviceAccess(W + 0x104 + 8 * i, 8, False, 0x1111) for i in range(4))
    assert cpu.get_ymm(1) == sum(0x1111 << (64 * i) for i in range(4))


def test_vmovdqa_ymm_store_and_its_alignment() -> None:
    value = int.from_bytes(bytes(range(32)), "little")
    cpu = batch(bytes.fromhex("c5 fd 7f 0a"), regs={"rdx": W + 0x20}, ymm={1: value})
    out = emulate_at(cpu, RIP, 64)
    assert [(a.gpa - W, a.value) for a in out.accesses] == [
        (0x20 + 8 * i, int.from_bytes(bytes(range(8 * i, 8 * i + 8)), "little")) for i in range(4)]
    cpu = batch(bytes.fromhex("c5 fd 7f 0a"), regs={"rdx": W + 0x10}, ymm={1: value})
    with pytest.raises(GuestFault):  # 16-aligned is not enough for a 32-byte VMOVDQA
        emulate_at(cpu, RIP, 64)
    assert cpu.accesses == []


def test_vmovups_ymm_unaligned_is_fine() -> None:
    cpu = batch(bytes.fromhex("c5 fc 11 0a"), regs={"rdx": W + 3}, ymm={1: 5})
    assert len(emulate_at(cpu, RIP, 64).accesses) == 4


def test_movsd_xmm_is_not_the_string_movsd() -> None:
    assert decode(bytes.fromhex("f2 0f 10 0a"), 64, RIP).op is Op.SSE_LOAD
    assert decode(bytes.fromhex("a5"), 64, RIP).op is Op.MOVS


@pytest.mark.parametrize("hexbytes,match", [
    ("0f fc 0a", "unsupported"), ("66 0f f7 ca", "byte-masked"), ("c5 f9 f7 ca", "byte-masked"),
    ("0f f7 ca", "byte-masked"),
])
def test_refusals(hexbytes: str, match: str) -> None:
    with pytest.raises(EmulationError, match=match):
        decode(bytes.fromhex(hexbytes), 64, RIP)


class _NoYmm:
    """A Cpu without YMM registers (like a trace replay): VEX forms must decline before any access."""

    def __init__(self, cpu: object) -> None:
        self._cpu = cpu

    def __getattr__(self, name: str) -> object:
        if name in ("get_ymm", "set_ymm"):
            raise AttributeError(name)
        return getattr(self._cpu, name)


@pytest.mark.parametrize("hexbytes", ["c5 fe 6f 0a", "c5 fa 6f 0a"])
def test_vex_load_without_ymm_state_declines_before_the_device(hexbytes: str) -> None:
    cpu = batch(bytes.fromhex(hexbytes), regs={"rdx": W}, read_value=1)
    with pytest.raises(EmulationError, match="no YMM"):
        emulate_at(_NoYmm(cpu), RIP, 64)  # type: ignore[arg-type]
    assert cpu.accesses == []
