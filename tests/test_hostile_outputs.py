"""Files exitlab writes (issue 13: L1-L5, T1, T9): checked before anything runs, written beside
their final name and renamed on success, never over an input, nothing half-written on failure."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emu.errors import OutputError
from emu.outfile import OutputFile
from emu.trace import read_trace
from tests.hostile import ROOT, assert_one_line_error, main

Cap = pytest.CaptureFixture[str]
OLD = "precious contents\n"


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# -- L1, T1: options are checked before any file is opened -------------------------------------------


@pytest.mark.parametrize("extra", [
    ["--engine", "c", "--max-insns", "0"], ["--max-insns", "-1"], ["--timeout", "inf"], ["--path", "subset"],
    ["--engine", "kvm", "--path", "generic"],
])
def test_failed_run_leaves_existing_trace_untouched(capsys: Cap, tmp_path: Path, extra: list[str]) -> None:
    trace = tmp_path / "p.txt"
    trace.write_text(OLD)
    rc, _, err = main(capsys, "run", "kick_mmio", "--trace", str(trace), *extra)
    assert rc in (1, 2)
    assert_one_line_error(err)
    assert trace.read_text() == OLD and _leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["", "/nonexistent/d/t.jsonl", "{tmp}", "{tmp}/file/t.jsonl"])
def test_unwritable_trace_path_is_one_line_error(capsys: Cap, tmp_path: Path, target: str) -> None:
    (tmp_path / "file").write_text("x")
    rc, _, err = main(capsys, "run", "kick_mmio", "--trace", target.format(tmp=tmp_path))
    assert rc == 1
    assert_one_line_error(err, "--trace")


# -- L2: never over an input ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "relative", "hardlink", "symlink"])
def test_trace_over_the_guest_is_refused(capsys: Cap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         how: str) -> None:
    guest = tmp_path / "k.S"
    guest.write_text("hlt\n")
    target = {"same": guest, "relative": Path("k.S"), "hardlink": tmp_path / "h.S",
              "symlink": tmp_path / "s.S"}[how]
    if how == "hardlink":
        os.link(guest, target)
    if how == "symlink":
        target.symlink_to(guest)
    monkeypatch.chdir(tmp_path)
    rc, _, err = main(capsys, "run", str(guest), "--trace", str(target))
    assert rc == 1
    assert_one_line_error(err, "input")
    assert guest.read_text() == "hlt\n"


# -- L3: concurrent writers never interleave --------------------------------------------------------


def test_concurrent_traces_to_one_file_give_one_whole_trace(tmp_path: Path) -> None:
    trace = tmp_path / "same.jsonl"
    cmd = [sys.executable, "-m", "exitlab", "run", "kick_mmio", "--trace", str(trace)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert len(read_trace(trace)) == 256  # one whole trace, whichever rename came last
    assert _leftovers(tmp_path) == []


# -- L4: a write failure mid-run is a host error ------------------------------------------------------


class _FailingFile:
    """A file that takes `budget` bytes, then fails like a full disk."""

    def __init__(self, inner: Any, budget: int) -> None:
        self.inner, self.budget = inner, budget

    def write(self, data: str) -> int:
        self.budget -= len(data)
        if self.budget < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(self.inner.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("engine", ["python", "kvm"])
def test_trace_disk_full_mid_run(capsys: Cap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 engine: str) -> None:
    if engine == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no usable /dev/kvm")
    real_open = OutputFile.open
    monkeypatch.setattr(OutputFile, "open", lambda self, mode="w": _FailingFile(real_open(self, mode), 5000))
    trace = tmp_path / "t.jsonl"
    trace.write_text(OLD)
    rc, out, err = main(capsys, "run", "kick_mmio", "--engine", engine, "--trace", str(trace))
    assert rc == 1
    assert "stop: hlt" in out and "device_error" not in out  # the guest's run is reported as it was
    assert_one_line_error(err, str(trace), "No space left")
    assert trace.read_text() == OLD and _leftovers(tmp_path) == []


def test_trace_to_dev_full(capsys: Cap) -> None:
    rc, out, err = main(capsys, "run", "kick_mmio", "--trace", "/dev/full")
    assert rc == 1 and "stop: hlt" in out
    assert_one_line_error(err, "/dev/full", "No space left")


def test_interrupted_run_keeps_its_trace(capsys: Cap, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C closes the trace cleanly: what was recorded is kept, whole."""
    from emu.dispatch import Dispatcher

    real = Dispatcher.emit

    def record_then_interrupt(self: Dispatcher, *a: Any) -> Any:
        real(self, *a)
        if sum(self.exit_counts.values()) == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(Dispatcher, "emit", record_then_interrupt)
    trace = tmp_path / "t.jsonl"
    rc, out, _ = main(capsys, "run", "kick_mmio", "--path", "generic", "--trace", str(trace))
    assert rc == 130 and "stop: interrupted" in out
    assert 1 <= len(read_trace(trace)) <= 10


# -- the writer itself ------------------------------------------------------------------------------


def test_output_file_commit_and_discard(tmp_path: Path) -> None:
    out = OutputFile(tmp_path / "a.json", "--json")
    with out.writing() as fh:
        fh.write("{}")
        assert not (tmp_path / "a.json").exists()  # nothing under the final name until commit
    assert (tmp_path / "a.json").read_text() == "{}"
    out = OutputFile(tmp_path / "a.json", "--json")
    with pytest.raises(RuntimeError), out.writing() as fh:
        fh.write("half")
        raise RuntimeError
    assert (tmp_path / "a.json").read_text() == "{}" and _leftovers(tmp_path) == []


def test_output_file_keeps_umask_permissions(tmp_path: Path) -> None:
    OutputFile(tmp_path / "p.txt").write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "p.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_output_file_refuses_bad_paths(tmp_path: Path) -> None:
    for bad in ("", str(tmp_path), str(tmp_path / "missing" / "x")):
        with pytest.raises(OutputError):
            OutputFile(bad, "--json")


# -- T9: bench / kvm-bench check outputs before measuring --------------------------------------------


def _no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exitlab.tools.costs.run_sweep",
                        lambda *a, **k: pytest.fail("measured before checking"))
    monkeypatch.setattr("exitlab.tools.kvmcosts.run_kvm_costs",
                        lambda *a, **k: pytest.fail("measured before checking"))


@pytest.mark.parametrize("argv", [
    ["bench", "--json", "/nonexistent/x.json"], ["bench", "--json", "{tmp}"],
    ["bench", "--plot", "/nonexistent/p.png"], ["bench", "--plot", "{tmp}/p.unknownformat"],
    ["bench", "--json", ""], ["kvm-bench", "--json", "/nonexistent/x"], ["kvm-bench", "--json", "{tmp}"],
])
def test_bench_outputs_checked_before_measuring(capsys: Cap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                argv: list[str]) -> None:
    _no_measuring(monkeypatch)
    rc, _, err = main(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert rc == 1
    assert_one_line_error(err)


def test_bench_plot_without_matplotlib_fails_before_measuring(capsys: Cap, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    _no_measuring(monkeypatch)
    rc, _, err = main(capsys, "bench", "--plot", str(tmp_path / "p.png"))
    assert rc == 1
    assert_one_line_error(err, "matplotlib", "exitlab[bench]")


TINY = ["bench", "--exits", "20", "--repeat", "1", "--mechanism", "pio", "--engine", "python",
        "--mode", "live", "--no-progress"]


def test_bench_plot_to_dev_full_fails(capsys: Cap) -> None:
    pytest.importorskip("matplotlib")
    rc, out, err = main(capsys, *TINY, "--plot", "/dev/full")
    assert rc == 1 and "wrote /dev/full" not in out
    assert_one_line_error(err, "/dev/full", "No space left")


def test_bench_writes_json_and_plot_atomically(capsys: Cap, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rc, _, _ = main(capsys, *TINY, "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.svg"))
    assert rc == 0
    assert isinstance(json.loads((tmp_path / "b.json").read_text()), dict)
    assert (tmp_path / "b.svg").read_text().lstrip().startswith("<?xml")
    assert _leftovers(tmp_path) == []


def test_fuzz_out_must_be_a_directory(capsys: Cap, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for out in ("/dev/full", str(tmp_path / "f")):
        rc, _, err = main(capsys, "fuzz", "--cases", "2", "--out", out)
        assert rc == 1
        assert_one_line_error(err, "--out")
