"""Decoder tests: kinds, sizes, address formulas and errors; length and memory-operand size
cross-checked against iced-x86 (an independent decoder) over the encodings the differential
tests generate."""

from __future__ import annotations

import json

import iced_x86
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_emulate import FORMS, M64, Form, form_case

from emu.access import AccessKind, Op
from emu.decode import decode, effective_address
from emu.errors import EmulationError
from exitlab import cli


def iced(code: bytes, mode: int) -> tuple[int, int]:
    ins = iced_x86.Decoder(mode, code, ip=0x1000).decode()
    return ins.len, iced_x86.MemorySizeExt.size(ins.memory_size)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_length_and_size_agree_with_iced(form: Form) -> None:
    @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=form_case(form, 64))
    def check(case: tuple) -> None:
        code, _, _, _, mode = case
        a = decode(code, mode, 0x1000)
        length, size = iced(code, mode)
        assert a.length == length == len(code)
        if a.op not in (Op.BT, Op.BTS, Op.BTR, Op.BTC) or a.imm is not None:
            assert a.size == size, code.hex(" ")

    check()


@pytest.mark.parametrize("hexbytes,mode,kind,size,reg,formula", [
    ("66 89 02", 64, AccessKind.WRITE, 2, "ax", "[rdx]"),
    ("66 89 02", 32, AccessKind.WRITE, 2, "ax", "[edx]"),
    ("c7 44 8a 10 01 00 00 00", 64, AccessKind.WRITE_IMM, 4, None, "[rdx + rcx*4 + 0x10]"),
    ("0f b6 02", 64, AccessKind.READ_ZX, 1, "eax", "[rdx]"),
    ("48 63 02", 64, AccessKind.READ_SX, 4, "rax", "[rdx]"),
    ("67 8b 40 10", 32, AccessKind.READ, 4, "eax", "[bx + si*1 + 0x10]"),
    ("64 48 8b 05 f0 ff ff ff", 64, AccessKind.READ, 8, "rax", "fs:[rip - 0x10]"),
    ("f0 48 0f c1 0a", 64, AccessKind.RMW, 8, "rcx", "[rdx]"),
    ("f7 02 05 00 00 00", 64, AccessKind.TEST, 4, None, "[rdx]"),
    ("38 02", 64, AccessKind.CMP, 1, "al", "[rdx]"),
    ("0f a3 02", 64, AccessKind.BIT_TEST, 4, "eax", "[rdx]"),
    ("f3 48 a5", 64, AccessKind.STRING, 8, None, "[rdi]"),
    ("66 0f 7f 0a", 64, AccessKind.WRITE, 16, "xmm1", "[rdx]"),
])
def test_decode_fields(hexbytes: str, mode: int, kind: AccessKind, size: int, reg: str | None,
                       formula: str) -> None:
    a = decode(bytes.fromhex(hexbytes), mode, 0x1000)
    assert (a.kind, a.size, a.reg, a.mem.formula()) == (kind, size, reg, formula)


@pytest.mark.parametrize("hexbytes,mode,regs,expect", [
    ("67 8b 02", 64, {"rdx": 0xFFFF_FFFF_FEB0_0000}, 0xFEB00000),           # 0x67 truncates
    ("8b 44 8a 10", 32, {"rdx": 0xFFFFFFF0, "rcx": 0}, 0x0),               # 32-bit wrap
    ("67 8b 40 10", 32, {"rbx": 0xFFF0, "rsi": 0x0}, 0x0),                 # 16-bit wrap
    ("8b 05 00 10 00 00", 64, {}, 0x1000 + 6 + 0x1000),                    # RIP-relative: next RIP
    ("65 8b 02", 64, {"rdx": 8, "gs_base": 0xFEB00000}, 0xFEB00008),
])
def test_effective_address(hexbytes: str, mode: int, regs: dict[str, int], expect: int) -> None:
    a = decode(bytes.fromhex(hexbytes), mode, 0x1000)
    assert effective_address(a.mem, lambda n: regs.get(n, 0), 0x1000 + a.length, mode) == expect


@pytest.mark.parametrize("hexbytes,match", [
    ("0f 0b", "unsupported instruction 'ud2'"),
    ("90", "unsupported"),
    ("89 c0", "no memory operand"),
    ("f0 89 02", "invalid or truncated"),
    ("f0 38 02", "LOCK prefix not allowed|invalid"),
    ("f0 48 8b 02", "LOCK prefix not allowed|invalid"),
    ("0f fc 02", "unsupported"),  # paddb mm (MMX MOVD/MOVQ are supported now)
    ("c5 f9 f7 c1", "byte-masked store"),  # vmaskmovdqu: refused on purpose (vmovdqu is supported now)
    ("66 0f f7 c1", "byte-masked store"),  # maskmovdqu
    ("8b", "truncated"),
    ("", "truncated"),
])
def test_refusals_name_rip_and_bytes(hexbytes: str, match: str) -> None:
    with pytest.raises(EmulationError, match=match) as err:
        decode(bytes.fromhex(hexbytes), 64, 0x2000)
    assert err.value.rip == 0x2000 and "rip=0x2000" in str(err.value)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=15))
def test_random_bytes_decode_or_refuse(code: bytes) -> None:
    """Any bytes either decode to an access whose length iced agrees with, or are refused."""
    try:
        a = decode(code, 64, 0x1000)
    except EmulationError:
        return
    assert a.length == iced(code, 64)[0]


def test_cli_decode_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["decode", "668902", "--json", "--regs", f"rdx={0xFEB00000:#x}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "write" and out["size"] == 2 and out["address"] == 0xFEB00000 and out["length"] == 3


def test_cli_decode_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["decode", "0f 0b"]) == 1
    assert "bytes=0f 0b" in capsys.readouterr().err
    assert M64 > 0
