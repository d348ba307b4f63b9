"""The public API (`import exitlab`): each function, its dataclass and its JSON, plus the layering
rule that `exitlab` sits on top (emu and fastpath never import it). Only `exitlab` is imported
here on purpose: this is what a user script sees. No /dev/kvm needed."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import exitlab

ROOT = Path(__file__).resolve().parent.parent

KICK_ASM = """
    mov rdx, NOTIFY_MMIO
    mov ax, 3
    mov word ptr [rdx], ax
    hlt
"""


def test_version_info_names_libraries_and_extension() -> None:
    info = exitlab.version_info()
    assert info["exitlab"] == exitlab.__version__
    assert info["unicorn"].startswith("2.")
    assert info["capstone"].startswith("5.")
    assert info["c_extension"].startswith("ok")


def test_run_builtin_guest_returns_records_and_cli_json() -> None:
    result = exitlab.run("kick_mmio", path="generic")
    assert isinstance(result, exitlab.RunResult)
    assert result.stop.reason is exitlab.StopReason.HLT
    assert result.exits["mmio_write"] == len(result.records) > 0
    assert all(isinstance(r, exitlab.ExitRecord) for r in result.records)
    assert set(result.to_json()) == {"stop", "exits", "devices", "regs", "console"}
    json.dumps(result.to_json())


def test_run_assembly_text_and_trace(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = exitlab.run(KICK_ASM, path="fast", trace=trace)
    assert not result.stop.is_error
    assert result.devices["notify"]["kicks"] == {"3": 1}
    lines = trace.read_text().splitlines()
    assert json.loads(lines[0])["schema"] == "exitlab-trace" and len(lines) == 2


def test_run_faulting_guest_is_a_result_not_an_exception() -> None:
    result = exitlab.run("mov rax, 0\nmov rax, [rax]\nhlt\n")
    assert result.stop.is_error and result.stop.reason is exitlab.StopReason.UNMAPPED


def test_run_bad_arguments_raise_exitlab_error() -> None:
    with pytest.raises(exitlab.ExitlabError, match="no built-in guest"):
        exitlab.run("no_such_guest_anywhere")
    with pytest.raises(exitlab.ExitlabError, match="unknown engine"):
        exitlab.run("kick_mmio", engine="qemu")
    with pytest.raises(exitlab.ExitlabError, match="does not apply"):
        exitlab.run("kick_mmio", engine="kvm", path="generic")


def test_decode_bytes_and_hex_agree() -> None:
    a = exitlab.decode("66 89 02")
    assert isinstance(a, exitlab.Access)
    assert a.length == 3 and a.size == 2
    assert a.to_json() == exitlab.decode(b"\x66\x89\x02").to_json()
    assert a.to_json()["mem"] == "[rdx]"


def test_emulate_one_instruction() -> None:
    out = exitlab.emulate("66 89 02", {"rdx": 0xFEB00000, "rax": 0x1234_0005})
    assert isinstance(out, exitlab.EmulateResult)
    assert out.to_json()["accesses"] == [{"gpa": 0xFEB00000, "size": 2, "write": True, "value": 5}]
    assert out.next_rip == 0x1003 == out.regs["rip"]
    read = exitlab.emulate("8b 02", {"rdx": 0xFEB00010}, read_value=0xDEADBEEF)
    assert read.regs["rax"] == 0xDEADBEEF


def test_replay_a_trace_file_through_c_paths(tmp_path: Path) -> None:
    trace = tmp_path / "k.jsonl"
    live = exitlab.run("pv_kick", trace=trace)
    res = exitlab.replay(trace, "pv-fast")
    assert res.n == live.exits["mmio_write"] > 0
    assert res.errors == 0
    doc = res.to_json()
    assert doc["counts"]["pv-fast"] == res.n and doc["error"] is None
    generic = exitlab.replay(live.records, "capstone")
    assert generic.errors == 0 and generic.counts["capstone"] == res.n
    with pytest.raises(exitlab.ExitlabError, match="unknown C path"):
        exitlab.replay(live.records, "inplace")


def test_validate_good_and_bad_guests() -> None:
    good = exitlab.validate("pv_kick")
    assert isinstance(good, exitlab.Report) and good.passed() and good.to_json()["conforming"] > 0
    bad = exitlab.validate("pv_bad_mixed")
    assert not bad.passed() and bad.to_json()["violations"]


def test_bench_quick_sweep_has_cli_json_schema() -> None:
    res = exitlab.bench(["pio", "pv-fast"], exits=50)
    assert [r.mechanism.name for r in res.rows] == ["pio", "pv-fast"]
    doc = res.to_json()
    assert doc["schema"] == "exitlab-bench" and len(doc["rows"]) == 2
    assert "pv-fast" in res.table()
    with pytest.raises(exitlab.ExitlabError, match="unknown mechanism"):
        exitlab.bench(["warp-drive"])


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_exitlab_is_the_top_layer() -> None:
    """exitlab may import emu and fastpath; nothing below may import exitlab (no arrow back up)."""
    for pkg in ("emu", "fastpath"):
        for py in (ROOT / pkg).rglob("*.py"):
            assert "exitlab" not in _imports(py), f"{py.relative_to(ROOT)} imports the top layer"
    for py in (ROOT / "exitlab").rglob("*.py"):
        local = _imports(py) - {"exitlab", "emu", "fastpath", "__future__"}
        assert all(not m.startswith(("tests", "bench")) for m in local), py
