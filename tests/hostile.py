"""Shared helpers of the hostile-input suite (tests/test_hostile_*.py): run the CLI in process
and check the promises of docs/robustness.md (one line on stderr, no traceback, exit status)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exitlab import cli

ROOT = Path(__file__).resolve().parent.parent
LOOP = "l: jmp l\n"


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(status, stdout, stderr) of `exitlab ARGV` in this process; argparse usage errors give 2."""
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    """stderr holds exactly one `exitlab ...: error: ...` line (argparse may add its usage lines)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def exitlab(*argv: str, stdin: bytes | None = None, stdout: int | None = subprocess.PIPE,
            env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """`exitlab ARGV` as a separate process (for what only a process shows: fds, signals, exit)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "exitlab", *argv], input=stdin, stdout=stdout, stderr=subprocess.PIPE,
        env=full_env, timeout=timeout, cwd=ROOT, check=False,
    )
