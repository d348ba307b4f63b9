"""`exitlab emulate --batch` with vector registers, and `exitlab decode` on the new forms."""

from __future__ import annotations

import io
import json

from emu.decode import decode
from emu.platform import REGS_MMIO
from exitlab.commands.decode import parse_hex
from exitlab.commands.emulate import run_stream

MMIO = [REGS_MMIO, 0x1000]


def run(*cases: dict[str, object]) -> list[dict[str, object]]:
    out = io.StringIO()
    run_stream(io.StringIO("\n".join(json.dumps(c) for c in cases)), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_xmm_in_and_changed_xmm_out() -> None:
    [res] = run({"bytes": "66 0f 6f 02", "regs": {"rdx": REGS_MMIO, "xmm0": "0xffff", "xmm3": "0x7"},
                 "mmio": MMIO, "read_value": 5})
    regs = res["regs"]
    assert isinstance(regs, dict)
    assert regs["xmm0"] == hex(5 << 64 | 5) and "xmm3" not in regs


def test_ymm_store_and_load() -> None:
    store, load = run(
        {"bytes": "c5 fe 7f 0a", "regs": {"rdx": REGS_MMIO, "ymm1": hex(3 << 192 | 1)}, "mmio": MMIO},
        {"bytes": "c5 fe 6f 0a", "regs": {"rdx": REGS_MMIO}, "mmio": MMIO, "read_value": 2})
    assert [a["value"] for a in store["accesses"]] == [1, 0, 0, 3]  # type: ignore[index]
    assert load["regs"]["ymm1"] == hex(sum(2 << (64 * i) for i in range(4)))  # type: ignore[index]


def test_legacy_load_over_a_ymm_reports_xmm() -> None:
    [res] = run({"bytes": "f3 0f 6f 02", "regs": {"rdx": REGS_MMIO, "ymm0": hex((1 << 256) - 1)},
                 "mmio": MMIO, "read_value": 5})
    assert res["regs"]["xmm0"] == hex(5 << 64 | 5) and "ymm0" not in res["regs"]  # type: ignore[index]


def test_mmx_in_and_out() -> None:
    [res] = run({"bytes": "0f 6e 0a", "regs": {"rdx": REGS_MMIO, "mm1": "0xffffffffffffffff"}, "mmio": MMIO,
                 "read_value": 0x1234})
    assert res["regs"]["mm1"] == "0x1234"  # type: ignore[index]
    [res] = run({"bytes": "0f 7f 0a", "regs": {"rdx": REGS_MMIO, "mm1": "0x55"}, "mmio": MMIO})
    assert res["accesses"] == [{"gpa": REGS_MMIO, "size": 8, "write": True, "value": 0x55}]


def test_bad_vector_values_are_line_errors() -> None:
    bad = run({"bytes": "89 02", "regs": {"xmm1": 5}, "mmio": MMIO},
              {"bytes": "89 02", "regs": {"xmm1": "0x" + "f" * 33}, "mmio": MMIO},
              {"bytes": "89 02", "regs": {"xmm1": "zz"}, "mmio": MMIO})
    for b in bad:
        assert "line" in str(b["error"]) and "xmm1" in str(b["error"])


def test_unmapped_is_a_line_error_naming_the_address() -> None:
    [res] = run({"bytes": "41 89 86 fe 0f 00 00", "regs": {"r14": REGS_MMIO}, "mmio": MMIO})
    assert "unmapped memory at 0xfeb02000" in str(res["error"])


def test_decode_describes_new_forms() -> None:
    assert decode(parse_hex("f2 ae"), 64, 0x1000).describe()["repne"] is True
    assert decode(parse_hex("0f 44 0a"), 64, 0x1000).describe()["cond"] == 4
    assert decode(parse_hex("c5 fd 7f 0a"), 64, 0x1000).describe()["align"] == 32
