"""The host's third promise: never a false positive.

Byte strings near the agreed encoding are enumerated exhaustively where the space is small (every
legacy prefix and REX byte and every pair of them in front, every ModRM after `66 89` and `89`,
REX between `66` and `89`, every opcode in `66 __ 02`, every one-byte change of `66 89 02`,
truncations) and drawn by hypothesis elsewhere, in every mode and for every exit kind. The fast
path must accept exactly the strings an independent decoder (iced-x86) reads as the contract
instruction — `mov word ptr [rdx|edx], ax`, 3 bytes, no other prefix — in the contract's modes,
and only for MMIO writes. Wherever it accepts, its result must equal the generic path's and
Unicorn's (device access, next RIP, registers untouched).

The accept/reject check is pure and cheap, so it is exhaustive; the comparisons with the generic
path and Unicorn run only where the fast path accepts (plus hypothesis samples of those).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.batchcpu import BatchCpu, default_ram_regions
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.platform import LOAD_ADDR, NOTIFY_MMIO, NOTIFY_MMIO_SIZE, RAM_BASE, RAM_SIZE
from fastpath.contract import CONTRACT_V1, LEGACY_PREFIX_BYTES
from fastpath.fast import fast_path

iced = pytest.importorskip("iced_x86")

ENC = CONTRACT_V1.encoding
MODES = (16, 32, 64)
REX = bytes(range(0x40, 0x50))
PREFIXES = bytes(sorted(LEGACY_PREFIX_BYTES)) + REX
SUFFIXES = (b"", b"\x00" * 12, b"\xcc" * 12, bytes.fromhex("00 00 00 00 90 90 90 90 f4 f4 f4 f4"))
MMIO = (NOTIFY_MMIO, NOTIFY_MMIO_SIZE)


def near_encodings() -> Iterator[bytes]:
    """Instruction starts close to `66 89 02` (before suffixes are appended)."""
    bodies = (ENC, ENC[1:])  # 66 89 02 and 89 02
    for body in bodies:
        yield body
        for p in PREFIXES:
            yield bytes([p]) + body
            for q in PREFIXES:
                yield bytes([p, q]) + body
    for modrm in range(256):
        yield bytes([0x66, 0x89, modrm])
        yield bytes([0x89, modrm])
        for r in REX:
            yield bytes([0x66, r, 0x89, modrm])
    for op in range(256):
        yield bytes([0x66, op, 0x02])
        yield bytes([0x66, 0x0F, op, 0x02])
    for i in range(len(ENC)):
        for b in range(256):
            yield ENC[:i] + bytes([b]) + ENC[i + 1 :]
    for n in range(len(ENC)):
        yield ENC[:n]


class MemCpu:
    """The cheapest Cpu the fast path can run on: code at RIP, RAX, and a log of device writes."""

    def __init__(self, mode: int, code: bytes, rip: int, rax: int) -> None:
        self.mode, self.code, self.rip, self.rax = mode, code, rip, rax
        self.writes: list[tuple[int, int, int]] = []

    def read_mem(self, addr: int, size: int) -> bytes:
        off = addr - self.rip
        return self.code[off : off + size]

    def get(self, name: str) -> int:
        assert name == "rax", f"the fast path read {name}"
        return self.rax

    def mmio_write(self, gpa: int, size: int, value: int) -> None:
        self.writes.append((gpa, size, value))


def accepts(mode: int, kind: ExitKind, code: bytes, rip: int = LOAD_ADDR, rax: int = 0x1234) -> bool:
    cpu = MemCpu(mode, code, rip, rax)
    rec = ExitRecord(kind, rip, mode, NOTIFY_MMIO, code[:15], (0,) * len(REG_NAMES))
    out = fast_path(rec, cpu)  # type: ignore[arg-type]
    assert (out is None) == (not cpu.writes), "a device write without an outcome, or the reverse"
    return out is not None


@cache
def _iced_register(mode: int) -> int:
    return iced.Register.RDX if mode == 64 else iced.Register.EDX


def is_contract_instruction(mode: int, code: bytes) -> bool:
    """Independent of fastpath: does iced-x86 read `code` as the contract's instruction?"""
    if mode not in (32, 64):
        return False  # the contract covers 32- and 64-bit code only
    insn = iced.Decoder(mode, code, ip=LOAD_ADDR).decode()
    return (
        insn.code != iced.Code.INVALID
        and insn.len == 3
        and insn.mnemonic == iced.Mnemonic.MOV
        and insn.op_count == 2
        and insn.op0_kind == iced.OpKind.MEMORY
        and insn.memory_size == iced.MemorySize.UINT16
        and insn.memory_base == _iced_register(mode)
        and insn.memory_index == iced.Register.NONE
        and insn.memory_displacement == 0
        and insn.segment_prefix == iced.Register.NONE
        and insn.op1_kind == iced.OpKind.REGISTER
        and insn.op1_register == iced.Register.AX
        and not (insn.has_lock_prefix or insn.has_rep_prefix or insn.has_repne_prefix)
    )


def test_enumeration_is_exhaustive_where_small() -> None:
    cands = set(near_encodings())
    assert len(cands) > 6500
    assert all(bytes([p]) + ENC in cands for p in PREFIXES)
    assert all(bytes([0x66, 0x89, m]) in cands and bytes([0x89, m]) in cands for m in range(256))


def test_fast_path_accepts_exactly_the_contract() -> None:
    """Every candidate x suffix x mode x exit kind: accepted iff MMIO write and iced says contract."""
    accepted: set[tuple[int, bytes]] = set()
    checked = 0
    for body in set(near_encodings()):
        for suffix in SUFFIXES:
            code = body + suffix
            for mode in MODES:
                want = is_contract_instruction(mode, code + b"\x00" * 15)
                for kind in ExitKind:
                    got = accepts(mode, kind, code)
                    assert got == (want and kind is ExitKind.MMIO_WRITE), (mode, kind.value, code.hex(" "))
                    checked += 1
                if want:
                    accepted.add((mode, code[:3]))
    assert accepted == {(32, ENC), (64, ENC)}
    assert checked > 100_000


prefix_soup = st.lists(
    st.one_of(st.sampled_from(list(PREFIXES) + [0x66, 0x89, 0x02, 0x0F, 0x8B, 0xC7]), st.integers(0, 255)),
    min_size=0,
    max_size=6,
).map(bytes)


@settings(max_examples=1500, deadline=None)
@given(head=prefix_soup, tail=st.binary(max_size=12), mode=st.sampled_from(MODES),
       kind=st.sampled_from(ExitKind))
def test_fast_path_accepts_exactly_the_contract_by_hypothesis(head: bytes, tail: bytes, mode: int,
                                                              kind: ExitKind) -> None:
    code = head + tail
    want = is_contract_instruction(mode, code + b"\x00" * 15) and kind is ExitKind.MMIO_WRITE
    assert accepts(mode, kind, code) == want


# -- wherever it accepts: the generic path and Unicorn agree ---------------------------------------


def _agree(mode: int, suffix: bytes, rip: int, rax: int, offset: int, others: dict[str, int]) -> None:
    from emu.generic import GenericPath
    from emu.oracle import run_one

    mask = (1 << mode) - 1
    gpa = NOTIFY_MMIO + offset
    code = ENC + suffix
    regs = {**others, "rax": rax & mask, "rdx": gpa}
    ram = default_ram_regions(rip, MMIO)

    def cpu() -> BatchCpu:
        c = BatchCpu(mode, regs, mmio=MMIO, ram=ram)
        c.write_mem(rip, code)
        return c

    fast_cpu, gen_cpu = cpu(), cpu()
    before = dict(fast_cpu.regs)
    rec = ExitRecord(ExitKind.MMIO_WRITE, rip, mode, gpa, code[:15], tuple(before[n] for n in REG_NAMES))
    fast = fast_path(rec, fast_cpu)
    assert fast is not None
    generic = GenericPath().handle(rec, gen_cpu)
    truth = run_one(code, mode, rip, regs, MMIO, 0, ram)
    assert truth.fault is None
    assert fast == generic
    assert fast.accesses == truth.accesses == tuple(fast_cpu.accesses)
    assert fast.next_rip == truth.next_rip == rip + 3
    assert fast_cpu.regs == before == gen_cpu.regs  # a store changes no register
    assert all(before[name] & mask == value for name, value in truth.regs if name not in ("rip", "rflags"))


@pytest.mark.parametrize("mode", [32, 64])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_accepted_encodings_agree_with_generic_and_unicorn(mode: int, suffix: bytes) -> None:
    _agree(mode, suffix, LOAD_ADDR + 0x100, 0xFFFF_FFFF_FFFF_ABCD, 6, {"rcx": 0x77})


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from([32, 64]),
    suffix=st.binary(max_size=12),
    # Not in RAM's last page: Unicorn's translator reads ahead past the instruction and faults there.
    rip=st.integers(RAM_BASE + 0x1000, RAM_BASE + RAM_SIZE - 0x1000 - 16),
    rax=st.integers(0, (1 << 64) - 1),
    offset=st.integers(0, NOTIFY_MMIO_SIZE - 2),
    others=st.fixed_dictionaries({n: st.integers(0, 0xFFFF_FFFF) for n in ("rbx", "rcx", "rsi", "rdi")}),
)
def test_accepted_encodings_agree_by_hypothesis(mode: int, suffix: bytes, rip: int, rax: int, offset: int,
                                               others: dict[str, int]) -> None:
    _agree(mode, suffix, rip, rax, offset, others)


@pytest.mark.parametrize("code", ["67 89 02", "66 89 02"])
def test_16_bit_lookalikes_are_rejected_even_when_harmless(code: str) -> None:
    """`67 89 02` is `mov word ptr [edx], ax` in 16-bit code — the same store, but not the agreed
    bytes or mode; `66 89 02` there is a 4-byte store from [bp+si]. Neither takes the fast path."""
    assert not accepts(16, ExitKind.MMIO_WRITE, bytes.fromhex(code))
