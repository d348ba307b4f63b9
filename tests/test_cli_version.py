"""`exitlab --version`: version, commit when known, library versions, C extension status."""

from __future__ import annotations

from importlib import metadata

import pytest

from exitlab.cli import main
from exitlab.commands import _version


def test_version_flag_prints_everything_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"exitlab {metadata.version('exitlab')}")
    assert f"unicorn {metadata.version('unicorn')}" in out
    assert f"capstone {metadata.version('capstone')}" in out
    assert "C extension: ok" in out


def test_version_reports_a_missing_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fastpath._exitlab_c", None)  # import now raises ImportError
    assert _version.c_extension_status().startswith("unavailable: ModuleNotFoundError")


def test_git_commit_is_none_outside_a_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    def no_git(*_a: object, **_k: object) -> object:
        raise FileNotFoundError("git")

    monkeypatch.setattr(_version.subprocess, "run", no_git)
    assert _version.git_commit() is None
    assert "git" not in _version.version_text().splitlines()[0]
