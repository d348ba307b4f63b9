"""exitlab/tools/validate.py and `exitlab validate`: reasons per instruction, the dynamic ledger, the static
sweep, and the CLI's exit status, text and JSON."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from emu.assemble import assemble
from emu.batchcpu import BatchCpu, default_ram_regions
from emu.cpu import Outcome
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.platform import LOAD_ADDR, NOTIFY_MMIO, NOTIFY_MMIO_SIZE
from exitlab import cli
from exitlab.commands.run import resolve_guest
from exitlab.tools.validate import (
    ClassifyingPath,
    Disassembler,
    Reason,
    SiteKind,
    explain,
    scan_static,
    split_prefixes,
    validate,
    validate_dynamic,
)
from fastpath.fast import FastPath, fast_path

R = Reason


@pytest.mark.parametrize(
    "mode, code, write, reasons",
    [
        (64, "66 89 02", True, set()),
        (32, "66 89 02", True, set()),
        (64, "66 89 4a 04", True, {R.WRONG_REGISTER, R.WRONG_ADDRESSING}),
        (64, "64 66 89 02", True, {R.EXTRA_PREFIX}),
        (64, "3e 66 89 02", True, {R.EXTRA_PREFIX}),
        (64, "f3 66 89 02", True, {R.EXTRA_PREFIX}),    # Capstone prints it as a plain mov
        (64, "66 66 89 02", True, {R.EXTRA_PREFIX}),
        (64, "67 66 89 02", True, {R.EXTRA_PREFIX}),    # [edx]: same register, wrong prefix
        (32, "67 66 89 02", True, {R.EXTRA_PREFIX, R.WRONG_REGISTER}),  # [bp+si] in 32-bit code
        (64, "66 40 89 02", True, {R.EXTRA_PREFIX}),
        (64, "66 41 89 02", True, {R.EXTRA_PREFIX, R.WRONG_REGISTER}),  # [r10]
        (64, "66 89 42 00", True, {R.WRONG_ADDRESSING}),
        (64, "66 89 04 22", True, {R.WRONG_ADDRESSING}),
        (64, "66 89 0a", True, {R.WRONG_REGISTER}),       # data in CX
        (64, "66 89 03", True, {R.WRONG_REGISTER}),       # address in RBX
        (64, "89 02", True, {R.WRONG_WIDTH, R.WRONG_REGISTER}),
        (64, "88 02", True, {R.WRONG_OPCODE, R.WRONG_WIDTH, R.WRONG_REGISTER}),
        (64, "66 c7 02 01 00", True, {R.WRONG_OPCODE}),
        (64, "66 01 02", True, {R.WRONG_OPCODE}),         # add [rdx], ax
        (64, "0f b7 0a", False, {R.READ}),
        (64, "66 89 02", False, {R.READ}),
        (16, "66 89 02", True, {R.WRONG_MODE}),
        (16, "67 89 02", True, {R.WRONG_MODE}),
    ],
)
def test_explain_names_every_reason(mode: int, code: str, write: bool, reasons: set[Reason]) -> None:
    ex = explain(bytes.fromhex(code) + b"\x90" * 8, mode, write, rip=0x8000)
    assert set(f.reason for f in ex.findings) == reasons, ex.reason
    assert ex.conforming is (not reasons)
    assert ex.insn == bytes.fromhex(code)


def test_wrong_mode_says_what_the_bytes_mean_there() -> None:
    assert "mov dword ptr [bp + si], eax" in explain(bytes.fromhex("66 89 02"), 16).reason


def test_split_prefixes_counts_rex_only_in_64_bit_code() -> None:
    assert split_prefixes(bytes.fromhex("3e 66 48 89 02"), 64) == (bytes.fromhex("3e 66 48"), 3)
    assert split_prefixes(bytes.fromhex("66 48 89 02"), 32) == (b"\x66", 1)  # 48 is dec eax there


def test_validator_and_fast_path_agree_on_near_encodings() -> None:
    """`explain` (the validator's verdict) and `fast_path` (the host's) must never disagree."""
    from tests.test_fast_false_positives import accepts, near_encodings

    dis = Disassembler()
    for body in near_encodings():
        code = body + b"\x00" * 12
        for mode in (16, 32, 64):
            verdict = explain(code, mode, dis=dis).conforming
            assert verdict == accepts(mode, ExitKind.MMIO_WRITE, code), (mode, code.hex())


# -- dynamic ---------------------------------------------------------------------------------------


class StubFallback:
    name = "stub"

    def handle(self, exit: ExitRecord, cpu: Any) -> Outcome:
        return Outcome(exit.rip + 1, ())


def _synthetic(mode: int, code: bytes, addr: int,
               kind: ExitKind = ExitKind.MMIO_WRITE) -> tuple[ExitRecord, Any]:
    mmio = (NOTIFY_MMIO, NOTIFY_MMIO_SIZE)
    cpu = BatchCpu(mode, {"rax": 5}, mmio=mmio, ram=default_ram_regions(LOAD_ADDR, mmio))
    cpu.write_mem(LOAD_ADDR, code)
    return ExitRecord(kind, LOAD_ADDR, mode, addr, code, tuple(0 for _ in REG_NAMES)), cpu


@pytest.mark.parametrize(
    "mode, code, addr, reason",
    [
        (16, "66 89 02", NOTIFY_MMIO, R.WRONG_MODE),
        (64, "66 89 02", NOTIFY_MMIO + NOTIFY_MMIO_SIZE - 1, R.OUTSIDE_WINDOW),
        (64, "66 89 0a", NOTIFY_MMIO, R.WRONG_REGISTER),
    ],
)
def test_classifying_path_records_and_still_handles(mode: int, code: str, addr: int, reason: Reason) -> None:
    path = ClassifyingPath(fast=FastPath(fallback=StubFallback()))
    rec, cpu = _synthetic(mode, bytes.fromhex(code), addr)
    for _ in range(3):
        assert path.handle(rec, cpu) == Outcome(LOAD_ADDR + 1, ())  # handled by the fallback
    (v,) = path.violations
    assert reason in v.reasons and v.count == 3 and v.rip == LOAD_ADDR and path.conforming == 0
    assert cpu.accesses == []


def test_classifying_path_counts_conforming_exits_via_the_fast_path() -> None:
    path = ClassifyingPath(fast=FastPath(fallback=StubFallback()))
    rec, cpu = _synthetic(64, bytes.fromhex("66 89 02"), NOTIFY_MMIO + 4)
    ref_rec, ref_cpu = _synthetic(64, bytes.fromhex("66 89 02"), NOTIFY_MMIO + 4)
    assert path.handle(rec, cpu) == fast_path(ref_rec, ref_cpu)
    assert path.conforming == 1 and path.violations == () and path.fast.fast_hits == 1


def test_exits_outside_pv_windows_are_not_judged() -> None:
    dyn = validate_dynamic(resolve_guest("read_regs", None))
    assert (dyn.conforming, dyn.violations) == (0, ()) and not dyn.stop.is_error


def test_dynamic_pv_kick_conforms() -> None:
    dyn = validate_dynamic(resolve_guest("pv_kick", None))
    assert dyn.conforming == 128 and dyn.violations == () and not dyn.stop.is_error


@pytest.mark.parametrize(
    "guest, code, reason, detail",
    [
        ("pv_bad_reg", "66 89 4a 04", R.WRONG_REGISTER, "data register cx"),
        ("pv_bad_segment", "64 66 89 02", R.EXTRA_PREFIX, "FS segment override"),
    ],
)
def test_dynamic_flags_the_bad_kick(guest: str, code: str, reason: Reason, detail: str) -> None:
    dyn = validate_dynamic(resolve_guest(guest, None))
    (v,) = dyn.violations
    assert v.insn == bytes.fromhex(code) and reason in v.reasons and detail in v.reason
    assert v.count == 128 and dyn.conforming == 0 and not dyn.stop.is_error
    assert dyn.devices["notify"]["kicks"] == {"0": 32, "1": 32, "2": 32, "3": 32}  # still handled


def test_dynamic_names_each_violation_in_pv_bad_mixed() -> None:
    dyn = validate_dynamic(resolve_guest("pv_bad_mixed", None))
    assert dyn.conforming == 1 and not dyn.stop.is_error
    assert len(dyn.violations) == 11 and len({v.rip for v in dyn.violations}) == 11
    seen = {r for v in dyn.violations for r in v.reasons}
    assert seen == {R.WRONG_OPCODE, R.WRONG_REGISTER, R.WRONG_ADDRESSING, R.WRONG_WIDTH, R.EXTRA_PREFIX,
                    R.READ}


# -- static ----------------------------------------------------------------------------------------


def test_static_finds_the_contract_site_and_nothing_else_in_pv_kick() -> None:
    image = resolve_guest("pv_kick", None)
    (site,) = scan_static(image)
    assert site.kind is SiteKind.CONTRACT_SITE and site.insn == bytes.fromhex("66 89 02") and site.heuristic
    assert image.code[site.rip - image.load_addr :][:3] == site.insn


def test_static_near_misses() -> None:
    src = """
        mov word ptr [rdi], ax          # 16-bit store from AX, not through RDX
        mov qword ptr [rdx + 8], rbx    # store through RDX
        mov eax, dword ptr [rdx]        # a load: not a store candidate
        .byte 0x06                      # junk (push es is invalid in 64-bit code): skipped
        mov word ptr [rdx], ax
        hlt
    """
    sites = scan_static(assemble(src, mode=64))
    kinds = [(s.kind, s.disasm) for s in sites]
    assert kinds == [
        (SiteKind.NEAR_MISS, "mov word ptr [rdi], ax"),
        (SiteKind.NEAR_MISS, "mov qword ptr [rdx + 8], rbx"),
        (SiteKind.CONTRACT_SITE, "mov word ptr [rdx], ax"),
    ]
    assert "16-bit store from AX" in sites[0].reason and "store through RDX" in sites[1].reason
    assert all(s.heuristic for s in sites)


def test_static_agreed_bytes_in_16_bit_code_are_a_near_miss() -> None:
    (site,) = scan_static(assemble(".byte 0x66, 0x89, 0x02\nhlt", mode=16))
    assert site.kind is SiteKind.NEAR_MISS and "wrong mode" in site.reason


def test_report_json_shape() -> None:
    report = validate(resolve_guest("pv_bad_reg", None))
    data = report.to_json()
    assert set(data) == {"conforming", "violations", "static", "unswept"}
    (v,) = data["violations"]
    assert {"rip", "bytes", "reason", "disasm"} <= set(v) and v["bytes"] == "66 89 4a 04"
    symbol_fields = {"section", "symbol", "offset", "file", "line"}
    assert symbol_fields <= set(v) and all(v[k] is None for k in symbol_fields)  # a snippet has no symbols
    assert {"rip", "bytes", "disasm", "kind", "reason", "heuristic", "relocation"} | symbol_fields == set(
        data["static"][0]
    )
    assert not report.passed()


# -- CLI -------------------------------------------------------------------------------------------


def _cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli.main(list(argv))
    return rc, out.getvalue()


def test_cli_passes_the_conforming_guest() -> None:
    rc, out = _cli("validate", "pv_kick", "--json")
    data = json.loads(out)
    assert rc == 0 and data["conforming"] == 128 and data["violations"] == []
    assert [s["kind"] for s in data["static"]] == ["contract_site"]


@pytest.mark.parametrize("guest", ["pv_bad_reg", "pv_bad_segment", "pv_bad_mixed"])
def test_cli_fails_and_names_each_violation(guest: str) -> None:
    rc, out = _cli("validate", guest)
    assert rc == 1 and "verdict: FAIL" in out
    rc, out = _cli("validate", guest, "--json")
    for v in json.loads(out)["violations"]:
        assert f"{v['rip']:#x}  {v['bytes']}  {v['disasm']}  {v['reason']}" in _cli("validate", guest)[1]


def test_cli_strict_fails_on_near_misses_only(tmp_path: Path) -> None:
    guest = tmp_path / "ring_then_kick.S"
    guest.write_text("mov rdi, 0x20000\nmov word ptr [rdi], ax\n"
                     "mov rdx, NOTIFY_MMIO\nmov word ptr [rdx], ax\nhlt\n")
    assert _cli("validate", str(guest))[0] == 0
    rc, out = _cli("validate", str(guest), "--strict")
    assert rc == 1 and "near_miss" in out


def test_cli_fails_when_the_run_does_not_finish(tmp_path: Path) -> None:
    guest = tmp_path / "loop.S"
    guest.write_text("spin:\njmp spin\n")
    assert _cli("validate", str(guest), "--max-insns", "100")[0] == 1
