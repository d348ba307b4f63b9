"""The generic path end to end: GenericPath.handle on exits, `exitlab emulate --batch`, and
compiler-generated MMIO accessors (gcc -O2, -m64 and -m32) checked against Unicorn."""

from __future__ import annotations

import io
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from emu.batchcpu import BatchCpu, default_ram_regions
from emu.errors import EmulationError
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.generic import GenericPath
from emu.inputs import parse_hex
from emu.oracle import run_one
from exitlab import cli

DATA = pathlib.Path(__file__).parent / "data"
CASES = DATA / "gcc_mmio_cases.jsonl"
MMIO = (0xFEB00000, 0x1000)


def _exit(cpu: BatchCpu, addr: int, kind: ExitKind = ExitKind.MMIO_WRITE) -> ExitRecord:
    return ExitRecord(kind, cpu.get("rip"), cpu.mode, addr, b"", tuple(cpu.get(n) for n in REG_NAMES))


def _cpu(code: bytes, regs: dict[str, int]) -> BatchCpu:
    cpu = BatchCpu(64, {**regs, "rip": 0x1000}, MMIO, 0, default_ram_regions(0x1000, MMIO))
    cpu.write_mem(0x1000, code)
    return cpu


def test_handle_pv_write() -> None:
    cpu = _cpu(b"\x66\x89\x02", {"rdx": MMIO[0] + 4, "rax": 0xABCD1234})
    out = GenericPath().handle(_exit(cpu, MMIO[0] + 4), cpu)
    assert out.next_rip == 0x1003
    assert [(a.gpa, a.size, a.write, a.value) for a in out.accesses] == [(MMIO[0] + 4, 2, True, 0x1234)]


def test_handle_refuses_address_mismatch_before_touching_device() -> None:
    cpu = _cpu(b"\x66\x89\x02", {"rdx": MMIO[0] + 4})
    with pytest.raises(EmulationError, match="does not match") as err:
        GenericPath().handle(_exit(cpu, MMIO[0] + 0x40), cpu)
    assert err.value.rip == 0x1000 and err.value.insn == b"\x66\x89\x02"
    assert cpu.accesses == []


def test_handle_unsupported_names_rip_and_bytes() -> None:
    cpu = _cpu(b"\x0f\xae\x3a", {"rdx": MMIO[0]})  # clflush [rdx]
    with pytest.raises(EmulationError, match=r"rip=0x1000 bytes=0f ae 3a"):
        GenericPath().handle(_exit(cpu, MMIO[0]), cpu)


def _batch(lines: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> list[dict]:  # noqa: E501
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert cli.main(["emulate", "--batch", "-"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_batch_bad_line_is_an_error_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: E501
    good = json.dumps({"bytes": "66 89 02", "mode": 64, "rip": 4096, "regs": {"rdx": MMIO[0], "rax": 7},
                       "mmio": list(MMIO), "read_value": 0})
    out = _batch([good, "{not json", json.dumps({"bytes": "0f 0b", "mmio": list(MMIO)})], capsys, monkeypatch)
    assert out[0]["accesses"] == [{"gpa": MMIO[0], "size": 2, "write": True, "value": 7}]
    assert out[0]["regs"]["rip"] == 4099 and set(out[0]["regs"]) == {*REG_NAMES[:16], "rip", "rflags"}
    assert out[1]["error"].startswith("line 2:") and "ud2" in out[2]["error"]


def test_gcc_accessors_match_unicorn(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: E501
    lines = CASES.read_text().splitlines()
    assert len(lines) > 50
    results = _batch(lines, capsys, monkeypatch)
    assert len(results) == len(lines)
    for line, got in zip(lines, results, strict=False):
        case = json.loads(line)
        rip, mode = case["rip"], case["mode"]
        mmio = tuple(case["mmio"])
        regs = {**case["regs"], "rflags": 2}
        truth = run_one(parse_hex(case["bytes"]), mode, rip, regs, mmio, case["read_value"],
                        default_ram_regions(rip, mmio))
        assert truth.fault is None and "error" not in got, (case, got, truth.fault)
        assert [(a["gpa"], a["size"], a["write"], a["value"]) for a in got["accesses"]] == [
            (a.gpa, a.size, a.write, a.value) for a in truth.accesses], case["asm"]
        wmask = (1 << mode) - 1
        for name, value in truth.regs:
            mask = 0x8D5 if name == "rflags" else wmask
            assert got["regs"][name] & mask == value & mask, (case["asm"], name)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_gcc_cases_are_current(tmp_path: pathlib.Path) -> None:
    """The checked-in cases are what regen.py produces from accessors.c with this gcc.

    Regenerated into tmp_path (the source tree is never written); a difference fails: either the
    checked-in file is stale or this gcc generates other code, and both need a deliberate regen."""
    if shutil.which("gcc") is None or shutil.which("objdump") is None:
        pytest.skip("gcc and objdump are needed to regenerate the cases")
    fresh = tmp_path / "gcc_mmio_cases.jsonl"
    proc = subprocess.run([sys.executable, str(DATA / "gcc_mmio" / "regen.py"), str(fresh)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"regen.py failed: {proc.stderr[-400:]}"
    assert fresh.read_text() == CASES.read_text(), "gcc_mmio_cases.jsonl is not what regen.py makes"
