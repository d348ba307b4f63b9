"""Hostile inputs (issue 13): endless files, binary text, malformed JSON, absurd windows, corrupt
reproducers and traces. Each class gives one line naming the input, never a hang or a traceback."""

from __future__ import annotations

import io
import json
import sys
import time
import types
from pathlib import Path

import pytest

from emu import limits
from emu.assemble import load_raw
from emu.errors import ExitlabError
from emu.exits import REG_NAMES
from emu.trace import TraceError, read_trace, write_trace
from exitlab import cli
from exitlab.tools.validate import scan_static
from tests.hostile import ROOT, assert_one_line_error, main

Cap = pytest.CaptureFixture[str]
MMIO = [0xFEB00000, 0x1000]
GOOD = {"bytes": "66 89 02", "mmio": MMIO, "regs": {"rdx": MMIO[0], "rax": 7}}


# -- H7: every input has a size limit, stated in the error -----------------------------------------


@pytest.mark.parametrize("argv", [
    ["run", "/dev/zero"], ["validate", "/dev/zero"], ["emulate", "--batch", "/dev/zero"],
    ["fuzz", "--replay", "/dev/zero"],
])
def test_endless_input_is_refused_with_its_limit(capsys: Cap, argv: list[str]) -> None:
    rc, _, err = main(capsys, *argv)
    assert rc == 1
    assert_one_line_error(err, "/dev/zero", "limit", "MiB")


def test_oversized_guest_file(capsys: Cap, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("emu.assemble.GUEST_FILE_MAX", 4096)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x90" * 4097)
    rc, _, err = main(capsys, "run", str(big))
    assert rc == 1
    assert_one_line_error(err, "big.bin", "4096 bytes")


@pytest.mark.parametrize("command", ["run", "validate"])
def test_directory_as_guest(capsys: Cap, tmp_path: Path, command: str) -> None:
    rc, _, err = main(capsys, command, str(tmp_path))
    assert rc == 1
    assert_one_line_error(err, "directory")


# -- T4: binary stdin -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("data", [b"\xff\xfe\x00", b"hlt\n\x80\n", bytes(range(256))])
def test_binary_stdin_is_a_clear_error(capsys: Cap, monkeypatch: pytest.MonkeyPatch,
                                       command: str, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    rc, _, err = main(capsys, command, "-")
    assert rc == 1
    assert_one_line_error(err, "<stdin>", "not UTF-8")


# -- T5, W9, L5, H3: emulate --batch --------------------------------------------------------------


def _batch(monkeypatch: pytest.MonkeyPatch, capsys: Cap, data: bytes) -> tuple[int, list, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    rc, out, err = main(capsys, "emulate", "--batch", "-")
    return rc, [json.loads(line) for line in out.splitlines()], err


BAD_LINES = {
    b'{"bytes": "66 89 02", "mmio": [0, Infinity]}': "Infinity",
    b'{"bytes": "66 89 02", "mmio": [0, NaN]}': "NaN",
    b'{"bytes": "66 89 02", "mmio": [0, 1e400]}': "overflows",
    b'{"bytes": "66 89 02", "mmio": [0, 4096.5]}': "integer",
    b"[" * 100_000: "nested deeper",
    b'{"a":' * 50 + b"1" + b"}" * 50: "nested deeper",
    b'{"bytes": "\xff"}': "utf-8",
    b"\xc3\x28": "utf-8",
    b'{"bytes": ""' + b', "mmio": [4276092928, 4096]}': "empty",
    b'{"bytes": "66", "mmio": [4276092928, 4096]}': "truncated",
    b'{"bytes": "66 89", "mmio": [4276092928, 4096]}': "truncated",
    b'{"bytes": "66 89 02", "mmio": [0, 18446744073709551615]}': "mmio size",
    b'{"bytes": "66 89 02", "mmio": [18446744073709551615, 4096]}': "64-bit address space",
    b'{"bytes": "66 89 02", "mmio": [0]}': "[base, size]",
    b'{"bytes": "66 89 02", "mmio": [0, 4096], "mode": 300}': "mode",
    b'{"bytes": "66 89 02", "mmio": [0, 4096], "mode": true}': "mode",
    b'{"bytes": "66 89 02", "mmio": [0, 4096], "rip": -1}': "rip",
    b'{"bytes": "66 89 02", "mmio": [0, 4096], "regs": {"rzz": 1}}': "unknown register",
    b'{"bytes": "66 89 02", "mmio": [0, 4096], "regs": [1]}': "regs",
    b'{"bytes": "66 89 02", "mmio": [0, 4096], "read_value": null}': "read_value",
    b'{"bytes": 5, "mmio": [0, 4096]}': "hex string",
    b'{"bytes": "' + b"90 " * 16 + b'", "mmio": [0, 4096]}': "at most 15",
    b"[1]": "object",
    b"null": "object",
    b"{not json": "bad JSON",
}


def test_batch_every_bad_line_is_its_own_error_and_good_lines_survive(
    monkeypatch: pytest.MonkeyPatch, capsys: Cap
) -> None:
    good = json.dumps(GOOD).encode()
    lines = [good]
    for bad in BAD_LINES:
        lines += [bad, good]
    rc, out, err = _batch(monkeypatch, capsys, b"\n".join(lines) + b"\n")
    assert rc == 0 and not err
    assert len(out) == len(lines)
    for i, (bad, needle) in enumerate(BAD_LINES.items()):
        ok_before, error = out[2 * i], out[2 * i + 1]
        assert ok_before["accesses"] == [{"gpa": MMIO[0], "size": 2, "write": True, "value": 7}]
        assert "error" in error and f"line {2 * i + 2}:" in error["error"], (bad, error)
        assert needle.lower() in error["error"].lower(), (bad, error)
    assert "accesses" in out[-1]


def test_batch_overlong_line_ends_batch_after_good_output(
    monkeypatch: pytest.MonkeyPatch, capsys: Cap
) -> None:
    monkeypatch.setattr("exitlab.commands.emulate.BATCH_LINE_MAX", 200)
    good = json.dumps(GOOD).encode()
    rc, out, err = _batch(monkeypatch, capsys, good + b"\n" + b" " * 500 + b"\n" + good + b"\n")
    assert rc == 1 and len(out) == 1 and "accesses" in out[0]
    assert_one_line_error(err, "<stdin>:2", "200 bytes")


def test_batch_file_missing_or_directory(capsys: Cap, tmp_path: Path) -> None:
    for target, needle in ((tmp_path / "none.jsonl", "No such file"), (tmp_path, "directory")):
        rc, _, err = main(capsys, "emulate", "--batch", str(target))
        assert rc == 1
        assert_one_line_error(err, needle)


def test_batch_huge_window_is_rejected_without_building_it(
    monkeypatch: pytest.MonkeyPatch, capsys: Cap
) -> None:
    """H3: the page set of a 2**64-byte window used to eat 4 GB; the check happens before."""
    import emu.batchcpu

    def guard(rip: int, mmio: tuple[int, int]) -> object:
        assert mmio[1] <= limits.WINDOW_SIZE_MAX
        return real(rip, mmio)

    real = emu.batchcpu.default_ram_regions
    monkeypatch.setattr("exitlab.commands.emulate.default_ram_regions", guard)
    line = json.dumps({**GOOD, "mmio": [0, 2**64 - 1]}).encode()
    _, out, _ = _batch(monkeypatch, capsys, line + b"\n")
    assert "mmio size" in out[0]["error"]


# -- T6, T7, W11, H3: fuzz reproducers and corpus ---------------------------------------------------


def _reproducer() -> dict:
    path = next((ROOT / "tests/data/fuzz_regressions").glob("*.json"))
    return json.loads(path.read_text())


def _corrupt_variants() -> list[bytes]:
    base = _reproducer()
    out: list[bytes] = []

    def variant(key: str, value: object) -> bytes:
        d = json.loads(json.dumps(base))
        (d["case"] if "case" in d else d)[key] = value
        return json.dumps(d).encode()

    for key, values in {
        "bytes": ["", "zz", 5, None, "90" * 16],
        "mode": [300, "64", None, True],
        "mmio": [[0, 2**64 - 1], [0], "x", [0, -1], [2**64, 1], None, [2**64 - 1, 4096]],
        "regs": [[1], {"foo": 1}, {"rax": "zz"}, {"rax": 2**70}, {"rax": 1.5}],
        "rip": [-1, 2**64, "x", 1e300],
        "read_value": [None, -5, "q"],
        "xmm": [{"99": 1}, {"a": 1}, [1]],
        "index": ["x", None],
    }.items():
        out += [variant(key, v) for v in values]
    out += [json.dumps({**base, "plant": "nope"}).encode(), json.dumps({**base, "plant": 5}).encode()]
    out += [b"[1]", b"null", b'"x"', b"5", b'{"case": 3}', b"{", b"", b"\xff\xfe", b"[" * 100_000,
            b'{"bytes": Infinity}', b'{"bytes": "66 89 02", "mmio": [0, 1e400]}']
    return out


def test_corrupt_reproducers_are_one_line_errors(capsys: Cap, tmp_path: Path) -> None:
    for i, data in enumerate(_corrupt_variants()):
        path = tmp_path / f"r{i}.json"
        path.write_bytes(data)
        rc, _, err = main(capsys, "fuzz", "--replay", str(path))
        assert rc == 1, (data[:80], err)
        assert_one_line_error(err, f"r{i}.json")


@pytest.mark.parametrize("name", ["missing.json", "."])
def test_replay_missing_file_or_directory(capsys: Cap, tmp_path: Path, name: str) -> None:
    rc, _, err = main(capsys, "fuzz", "--replay", str(tmp_path / name))
    assert rc == 1
    assert_one_line_error(err, "reproducer")


def test_corrupt_corpus_file_is_skipped_with_a_warning(capsys: Cap, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.json").write_text(json.dumps(_reproducer()))
    (corpus / "huge.json").write_text(json.dumps({**_reproducer()["case"], "mmio": [0, 2**64 - 1]}))
    (corpus / "binary.json").write_bytes(b"\xff\xfe")
    rc, out, err = main(capsys, "fuzz", "--gen", "corpus", "--corpus", str(corpus), "--cases", "8",
                        "--out", str(tmp_path / "out"), "--json")
    assert rc in (0, 1), err
    assert json.loads(out)["cases"] == 8
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 2 and any("huge.json" in w and "mmio size" in w for w in warnings)
    assert any("binary.json" in w for w in warnings) and "Traceback" not in err


@pytest.mark.parametrize("kind", ["missing", "empty", "all-corrupt"])
def test_unusable_corpus_is_an_error(capsys: Cap, tmp_path: Path, kind: str) -> None:
    """W11: `--gen corpus --corpus /nonexistent` silently switched to the structured generator."""
    corpus = tmp_path / "corpus"
    if kind != "missing":
        corpus.mkdir()
    if kind == "all-corrupt":
        (corpus / "bad.json").write_text("{")
    rc, _, err = main(capsys, "fuzz", "--gen", "corpus", "--corpus", str(corpus), "--cases", "4",
                      "--out", str(tmp_path / "out"))
    assert rc == 1
    assert_one_line_error(err, "--corpus")


# -- T10: trace readers ---------------------------------------------------------------------------

HEADER = '{"schema": "exitlab-trace", "version": 1, "guest": "g", "mode": 64}'
RECORD = {"kind": "pio_out", "rip": 32768, "mode": 64, "addr": 1016, "insn": "ee",
          "regs": dict.fromkeys(REG_NAMES, 0), "truth": {"size": 1, "value": 65}}


def _rec(**changes: object) -> str:
    return json.dumps({**RECORD, **changes})


BAD_RECORDS = {
    "[1]": "JSON object",
    "null": "JSON object",
    '"x"': "JSON object",
    _rec(truth=None): "truth",
    _rec(regs=None): "regs",
    _rec(regs={"rax": -1}): "register",
    _rec(regs={"rax": 2**64}): "register",
    _rec(regs={"rzz": 1}): "unknown registers",
    _rec(rip=None): "rip",
    _rec(rip=True): "rip",
    _rec(rip=1.5): "rip",
    _rec(mode=300): "mode",
    _rec(mode=True): "mode",
    _rec(kind="bogus"): "kind",
    _rec(addr=70000): "addr",
    _rec(insn="zz"): "hex",
    _rec(insn=5): "insn",
    _rec(insn="90 " * 16): "15",
    _rec(truth={"size": 256, "value": 0}): "size",
    _rec(truth={"size": 3, "value": 0}): "size",
    _rec(truth={"size": 1, "value": -1}): "value",
    _rec(kind="mmio_write", truth={"size": 1000, "value": 0}): "size",
    '{"kind": "pio_out", "rip": Infinity}': "Infinity",
    '{"kind": "pio_out", "rip": NaN}': "NaN",
    "[" * 50_000: "nested",
}


def test_good_trace_reads(tmp_path: Path) -> None:
    assert len(read_trace(_trace_file(tmp_path, [_rec()]))) == 1


def _trace_file(tmp: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp / f"t{abs(hash((header, *lines)))}.jsonl"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


@pytest.mark.parametrize("line", list(BAD_RECORDS), ids=lambda s: s[:30])
def test_bad_record_is_a_trace_error_with_file_and_line(tmp_path: Path, line: str) -> None:
    path = _trace_file(tmp_path, [_rec(), line])
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert f"{path}:3:" in str(info.value)
    assert BAD_RECORDS[line].lower() in str(info.value).lower()


@pytest.mark.parametrize("header", [
    '{"schema": "exitlab-trace", "version": true}', '{"schema": "exitlab-trace", "version": 1.0}',
    '{"schema": "exitlab-trace", "version": 2}', '{"schema": "exitlab-trace", "version": 1, "mode": 300}',
    "[1]", "null", "", "\xff",
])
def test_bad_header_is_a_trace_error(tmp_path: Path, header: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(header.encode("utf-8", "surrogateescape") + b"\n")
    with pytest.raises(TraceError, match=r":1:"):
        read_trace(path)


def test_trace_reader_refuses_endless_lines_and_directories(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="limit"):
        read_trace("/dev/zero")
    with pytest.raises(TraceError, match="directory"):
        read_trace(tmp_path)


def test_c_packer_gets_only_checked_records(tmp_path: Path) -> None:
    """The C replay's file entry point reads through the same schema check (C2's Python side)."""
    from fastpath.cengine import PackedTrace

    bad = _trace_file(tmp_path, [_rec(truth={"size": 200, "value": 0})])
    with pytest.raises(TraceError, match=":2:"):
        PackedTrace.from_jsonl(bad)


def test_written_trace_round_trips_through_the_checker(tmp_path: Path) -> None:
    from tests.helpers import run_asm

    res, _ = run_asm("mov dx, 0x3f8\nmov al, 65\nout dx, al\nmov rdx, NOTIFY_MMIO\nmov [rdx], ax\nhlt\n")
    path = tmp_path / "t.jsonl"
    write_trace(path, res.records, guest="g", mode=64)
    assert read_trace(path) == res.records


# -- H5: validate's static sweep honours --timeout --------------------------------------------------


def test_static_sweep_stops_at_its_deadline() -> None:
    image = load_raw(b"\x90" * 100_000)
    assert len(scan_static(image)) == 0  # no deadline: the whole sweep
    with pytest.raises(ExitlabError, match="timeout"):
        scan_static(image, deadline=time.monotonic() - 1)


def test_validate_passes_the_timeout_to_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    import exitlab.tools.validate as v

    seen: list[float | None] = []
    real = v.scan_image
    monkeypatch.setattr(v, "scan_image", lambda image, contract, windows=(), deadline=None:
                        seen.append(deadline) or real(image, contract, windows, deadline))
    # a fixed clock in the validator: the deadline is checked as data, not against the wall clock
    monkeypatch.setattr(v, "time", types.SimpleNamespace(monotonic=lambda: 1000.0))
    v.validate(load_raw(b"\xf4"), timeout=5.0)
    assert seen == [1005.0]


def test_validate_cli_big_guest_with_short_timeout(capsys: Cap, tmp_path: Path) -> None:
    guest = tmp_path / "big.bin"
    guest.write_bytes(b"\xeb\xfe" + b"\x66\x89\x02" * 1_300_000)  # jmp $ then 3.9 MB to sweep
    rc, _, err = main(capsys, "validate", str(guest), "--timeout", "0.5")
    assert rc == 1
    assert_one_line_error(err, "static sweep", "--timeout")


def test_cli_is_importable_once() -> None:
    assert cli.main is not None


@pytest.mark.parametrize("argv", [["run", ""], ["validate", ""], ["fuzz", "--replay", ""]])
def test_empty_input_name_is_an_error_not_a_default(capsys: Cap, argv: list[str]) -> None:
    """`fuzz --replay ""` used to start a 10 000-case campaign; `run ""` read the current directory."""
    rc, _, err = main(capsys, *argv)
    assert rc == 1
    assert_one_line_error(err, "empty")
