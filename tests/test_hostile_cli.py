"""Hostile CLI use (issue 13): the error boundary, argument limits shared by every engine, and the
host's stdout (full disk, ASCII-only) kept apart from the guest. docs/robustness.md is the spec."""

from __future__ import annotations

import errno
import io
import sys
from pathlib import Path

import pytest

from emu.errors import ExitlabError
from emu.limits import MAX_INSNS_MAX, TIMEOUT_MAX, check_max_insns, check_timeout, check_window
from emu.machine import Machine
from exitlab import boundary, cli
from exitlab.commands import ioplan as ioplan_cmd
from tests.hostile import LOOP, assert_one_line_error, exitlab, main

ENGINES = ("python", "c", "kvm")


# -- the boundary ---------------------------------------------------------------------------------


def test_expected_error_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = main(capsys, "run", "no-such-guest-anywhere")
    assert rc == 1
    assert_one_line_error(err, "exitlab run: error:", "no-such-guest-anywhere")


def test_multi_line_message_stays_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.S"
    bad.write_text("mov rax, \nbogus1 rax\nbogus2 rbx\nhlt\n")
    rc, _, err = main(capsys, "run", str(bad))
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert "bad.S:2" in err and "bad.S:3" in err


def test_bug_is_one_line_exit_70_with_traceback_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object) -> int:
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(ioplan_cmd, "run", boom)
    monkeypatch.setattr("exitlab.cli._command_modules", lambda: [ioplan_cmd])
    rc, _, err = main(capsys, "ioplan")
    assert rc == boundary.EXIT_BUG == 70
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "bug" in err and "ZeroDivisionError: planted" in err
    crash = Path(err.split("full traceback in ")[1].rstrip(")\n"))
    assert "Traceback" in crash.read_text() and "planted" in crash.read_text()
    crash.unlink()


def test_helper_thread_crash_is_reported_as_bug_not_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    def body() -> int:
        t = threading.Thread(target=lambda: 1 / 0)
        t.start()
        t.join()
        return 0

    assert boundary.guard("exitlab t", body) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "helper thread" in err and "ZeroDivisionError" in err
    Path(err.split("full traceback in ")[1].rstrip(")\n")).unlink()


def test_keyboard_interrupt_anywhere_is_130(capsys: pytest.CaptureFixture[str]) -> None:
    def body() -> int:
        print("partial")
        raise KeyboardInterrupt

    assert boundary.guard("exitlab x", body) == 130
    out, err = capsys.readouterr()
    assert out == "partial\n" and err == "exitlab x: interrupted\n"


# -- limits: one set of rules for every engine (H1, W3, W5, T2) -----------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e30", "18446744073", "1e7", "-1", "0", "0.0", "x"])
@pytest.mark.parametrize("engine", ENGINES)
def test_bad_timeout_is_a_usage_error_on_every_engine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine: str,
    value: str,
) -> None:
    monkeypatch.setattr(Machine, "run", lambda *a, **k: pytest.fail("an engine started"))
    rc, _, err = main(capsys, "run", "kick_mmio", "--engine", engine, "--timeout", value,
                      "--trace", str(tmp_path / "t.jsonl"))
    assert rc == 2
    assert_one_line_error(err, "--timeout")
    assert not (tmp_path / "t.jsonl").exists()


@pytest.mark.parametrize("value", ["0", "-1", str(2**63), str(2**64 - 1), str(2**64), "1.5"])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_budget_is_a_usage_error(capsys: pytest.CaptureFixture[str], command: str, value: str) -> None:
    rc, _, err = main(capsys, command, "kick_mmio", "--max-insns", value)
    assert rc == 2
    assert_one_line_error(err, "--max-insns")


def test_limit_edges_are_accepted() -> None:
    assert check_timeout(TIMEOUT_MAX) == TIMEOUT_MAX and check_timeout(1e-6) == 1e-6
    assert check_max_insns(1) == 1 and check_max_insns(MAX_INSNS_MAX) == MAX_INSNS_MAX
    assert check_window(2**64 - 0x1000, 0x1000) == (2**64 - 0x1000, 0x1000)
    for bad in ((0, 0), (0, 2**64 - 1), (2**64 - 1, 2), (-1, 1)):
        with pytest.raises(ExitlabError):
            check_window(*bad)


def test_max_timeout_runs(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, _ = main(capsys, "run", "kick_mmio", "--timeout", str(TIMEOUT_MAX),
                    "--max-insns", str(MAX_INSNS_MAX))
    assert rc == 0


@pytest.mark.parametrize("argv", [
    ["bench", "--exits", "0"], ["bench", "--repeat", "0"], ["bench", "--exits", "-3"],
    ["kvm-bench", "--exits", "0"], ["kvm-bench", "--repeat", "0"],
    ["fuzz", "--jobs", "100000"], ["decode", "668902", "--rip", "-1"],
])
def test_counts_are_bounded_before_any_work(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """W12: `bench --exits 0` used to run the full default sweep."""
    rc, _, err = main(capsys, *argv)
    assert rc == 2
    assert_one_line_error(err)


# -- the host's stdout (T8, T11) ------------------------------------------------------------------


class _FullStdout(io.TextIOBase):
    def write(self, s: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("argv", [
    ["run", "kick_mmio"], ["run", "kick_mmio", "--json"], ["decode", "66 89 02"], ["ioplan"],
    ["validate", "kick_mmio"],
])
def test_full_stdout_is_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert_one_line_error(err, "standard output", "No space left")


@pytest.mark.parametrize("argv", [
    ["run", "hello"], ["decode", "66 89 02"], ["ioplan"], ["validate", "kick_mmio"],
    ["fuzz", "--cases", "3", "--gen", "structured"],
])
def test_dev_full_subprocess(argv: list[str], tmp_path: Path) -> None:
    """T8 as a user sees it: `exitlab ... > /dev/full` is one line and status 1, for every command."""
    if "fuzz" in argv:
        argv = [*argv, "--out", str(tmp_path)]
    with open("/dev/full", "wb") as full:
        proc = exitlab(*argv, stdout=full.fileno())
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert_one_line_error(err, "standard output")


CONSOLE_HIGH = "mov dx, 0x3f8\nmov al, 0xe9\nout dx, al\nmov al, 0xff\nout dx, al\nhlt\n"


@pytest.mark.parametrize("engine", ["python", "c"])
def test_console_bytes_with_ascii_stdout(tmp_path: Path, engine: str) -> None:
    """T11: bytes >= 0x80 on an ASCII stdout are the host's business: written as bytes, hlt, status 0."""
    guest = tmp_path / "hi.S"
    guest.write_text(CONSOLE_HIGH)
    proc = exitlab("run", str(guest), "--engine", engine, env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b"\xe9\xff\n") and b"stop: hlt" in proc.stdout
    assert b"device_error" not in proc.stdout and not proc.stderr


def test_console_echo_to_a_stream_without_buffer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    guest = tmp_path / "hi.S"
    guest.write_text(CONSOLE_HIGH)
    class AsciiText(io.StringIO):
        encoding = "ascii"  # type: ignore[assignment]

    out = AsciiText()
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["run", str(guest)]) == 0
    assert out.getvalue().startswith("\\xe9\\xff")


def test_console_echo_failure_is_not_a_guest_fault(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    guest = tmp_path / "hi.S"
    guest.write_text(CONSOLE_HIGH)
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    rc = cli.main(["run", str(guest)])
    err = capsys.readouterr().err
    assert rc == 1 and "device_error" not in err
    assert_one_line_error(err, "standard output")


def test_loop_guest_constant_is_a_loop() -> None:
    assert LOOP.strip() == "l: jmp l"
