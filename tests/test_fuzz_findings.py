"""Regressions for what `exitlab fuzz` found in exitlab's own paths (one case each, every oracle).

- `66 f3 0f a3 08`: Capstone sizes BT/XADD/CMPXCHG with 66 and F2/F3 as 32-bit; the CPU uses the
  66 (16-bit). The generic path now takes GPR operand sizes from the raw prefixes.
- `49 0f a3 32` with RSI = 2^63: BT's register bit offset moves the address to a non-canonical one;
  the generic path raises #GP as the SDM says (Unicorn wraps to 48 bits: documented).
- `67 ab` at DI = 0xafff: a 4-byte store leaving the MMIO window at a page edge is split there.
- `c5 bc eb 39`: the C length function gave a length to VPOR without its mandatory 66.
- `66 0f c7 3b`: ... and to VMPTRST with a 66 (group 9 forms depend on the mandatory prefix).
"""

import pytest

from emu.errors import EmulationError
from exitlab.tools.fuzz.case import Case
from exitlab.tools.fuzz.oracles import Checker

CASES = [
    ("66 f3 0f a3 08", 64, {"rax": 0xFEB01EC0, "rcx": 0x1234}, (0xFEB01000, 0x1000)),
    ("66 f3 0f c1 08", 64, {"rax": 0xFEB01EC0, "rcx": 0x8001}, (0xFEB01000, 0x1000)),
    ("f3 66 67 0f c1 0b", 32, {"rbx": 0xA7E7, "rcx": 5}, (0xA000, 0x1000)),
    ("49 0f a3 32", 64, {"rsi": 1 << 63, "r10": 0xFEB019A8}, (0xFEB01000, 0x1000)),
    ("67 ab", 32, {"rdi": 0xFFFFAFFF}, (0xA000, 0x1000)),
    ("c5 bc eb 39", 64, {}, (0xFEB00000, 0x1000)),
    ("c5 63 75 0f d1", 64, {}, (0xFEB00000, 0x1000)),
    ("66 f3 0f 7e 00", 32, {"rax": 0xFEB00D8E}, (0xFEB00000, 0x1000)),  # explained: unicorn lets 66 win
    ("66 0f c7 3b", 64, {}, (0xFEB00000, 0x1000)),
    ("62 a3 5f 56 71 65 68 0b", 64, {}, (0xFEB00000, 0x1000)),
    ("0f ae c2", 64, {}, (0xFEB00000, 0x1000)),
    ("f3 0f 37", 64, {}, (0xFEB00000, 0x1000)),
    ("62 b3 e5 6e 3e eb fc", 64, {}, (0xFEB00000, 0x1000)),
    ("66 0f 01 c1", 32, {}, (0xFEB00000, 0x1000)),
    ("66 0f 38 2a c0", 64, {}, (0xFEB00000, 0x1000)),
]


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker()


@pytest.mark.parametrize("hexbytes,mode,regs,mmio", CASES, ids=[c[0] for c in CASES])
def test_no_unexplained_disagreement(checker, hexbytes, mode, regs, mmio):
    result = checker.check(Case.make(bytes.fromhex(hexbytes), mode, regs, mmio, 0x1122334455667788))
    assert not [f for f in result.findings if f.explained is None], result.findings


def test_operand_size_from_prefixes():
    from emu.decode import decode

    assert decode(bytes.fromhex("66 f3 0f a3 08"), 64).size == 2
    assert decode(bytes.fromhex("48 66 ff 00"), 64).size == 2  # a REX before 66 is ignored
    assert decode(bytes.fromhex("66 48 ff 00"), 64).size == 8


def test_noncanonical_is_gp():
    from emu.batchcpu import BatchCpu, default_ram_regions
    from emu.generic import emulate_at

    mmio = (0xFEB01000, 0x1000)
    cpu = BatchCpu(
        64, regs={"rsi": 1 << 63, "r10": 0xFEB019A8}, mmio=mmio, ram=default_ram_regions(0x1000, mmio)
    )
    cpu.write_mem(0x1000, bytes.fromhex("49 0f a3 32"))
    with pytest.raises(EmulationError, match="non-canonical"):
        emulate_at(cpu, 0x1000, 64)
    assert cpu.accesses == []


@pytest.mark.parametrize("mode", [32, 64])
@pytest.mark.parametrize("group", ["c7", "ae"])
def test_group_lengths_equal_iced_for_every_prefix_and_modrm(mode, group):
    """Groups 9 (0F C7) and 15 (0F AE): the mandatory prefix selects the form (VMPTRST is NP,
    RDFSBASE needs F3, SENDUIPI and RD/WRFSBASE are 64-bit only, ...)."""
    from iced_x86 import Decoder

    from fastpath.cengine import insn_length

    prefixes = ["", "66", "f3", "f2", "66f3", "f366", "66f2"] + (["48", "4866"] if mode == 64 else [])
    for pfx in prefixes:
        for modrm in range(256):
            code = bytes.fromhex(f"{pfx}0f{group}{modrm:02x}") + bytes(8)
            insn = Decoder(mode, code).decode()
            assert insn_length(code, mode) == (-1 if insn.is_invalid else insn.len), code.hex(" ")


@pytest.mark.parametrize("mode", [32, 64])
def test_no_length_for_what_iced_rejects_two_byte_maps(mode):
    """Every one-byte, 0F, 0F38 and 0F3A opcode with each single mandatory prefix and every ModRM:
    where iced-x86 says invalid, the length function must say -1; where both give a length, the
    same one (the length function may decline forms it does not cover)."""
    from iced_x86 import Decoder

    from fastpath.cengine import insn_length

    for pfx in ("", "66", "f3", "f2"):
        for esc in ("", "0f", "0f38", "0f3a"):
            for op in range(256):
                for modrm in range(0, 256, 7):
                    code = bytes.fromhex(f"{pfx}{esc}{op:02x}{modrm:02x}") + bytes(10)
                    insn = Decoder(mode, code).decode()
                    got = insn_length(code, mode)
                    if insn.is_invalid:
                        assert got == -1, code[:8].hex(" ")
                    elif got != -1:
                        assert got == insn.len, code[:8].hex(" ")
