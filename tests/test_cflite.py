"""The ClusterFuzzLite integration builds without Docker: .clusterfuzzlite/build.sh run through
.clusterfuzzlite/check_build.sh (shims for compile_python_fuzzer and pip3) produces one launcher,
one seed corpus zip and one dictionary per harness, and refuses to build when a harness is
missing. Running the fuzzers needs atheris (`make fuzz-build-check`); these tests do not.
Plus the length harness's own invariants and guard page."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from exitlab.tools.fuzz import atheris_length, cflite_seeds

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / ".clusterfuzzlite" / "check_build.sh"
HARNESSES = ("atheris_target", "atheris_length", "atheris_streams")
PLACEHOLDER = "def TestOneInput(data: bytes) -> None:\n    pass\n"


def _tree(tmp: Path, with_streams: bool) -> Path:
    """A copy of what build.sh reads; the stream harness (branch `streams`) is a placeholder here
    when this checkout does not have it yet, and removed when `with_streams` is False."""
    tree = tmp / "tree"
    shutil.copytree(ROOT / ".clusterfuzzlite", tree / ".clusterfuzzlite")
    shutil.copytree(ROOT / "exitlab" / "tools" / "fuzz", tree / "exitlab" / "tools" / "fuzz",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests" / "data", tree / "tests" / "data")
    shutil.copy(ROOT / "pyproject.toml", tree)
    streams = tree / "exitlab" / "tools" / "fuzz" / "atheris_streams.py"
    if not with_streams:
        streams.unlink(missing_ok=True)
    elif not streams.exists():
        streams.write_text(PLACEHOLDER)
    return tree


def _check(tree: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "SRC_TREE": str(tree), "OUT": str(out), "HOME": str(out.parent)}
    return subprocess.run(["bash", str(CHECK), sys.executable, "0"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_build_sh_produces_launchers_corpora_and_dicts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _check(_tree(tmp_path, with_streams=True), out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in HARNESSES:
        launcher = out / name
        assert launcher.is_file() and launcher.stat().st_mode & 0o111, name
        assert f"exitlab/tools/fuzz/{name}.py" in launcher.read_text()
        with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as z:
            names = z.namelist()
            assert len(names) > 20 and all(len(z.read(n)) > 0 for n in names), name
        assert (out / f"{name}.dict").read_text() == (ROOT / ".clusterfuzzlite" / "x86.dict").read_text()
    # the stream harness assembles at fuzz time: binutils ship next to the fuzzers (runner has none)
    assert (out / "binutils" / "as").is_file() and (out / "binutils" / "ld").is_file()


def test_build_sh_fails_loudly_without_a_harness(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _check(_tree(tmp_path, with_streams=False), out)
    assert proc.returncode != 0
    assert "atheris_streams.py is missing" in proc.stderr
    assert not any(out.glob("atheris_*")), "nothing may be built when a harness is missing"


def test_dictionary_is_valid_libfuzzer_syntax() -> None:
    entry = re.compile(r'^[A-Za-z0-9_]+="(\\x[0-9a-f]{2}|[^"\\])+"$')
    lines = [ln for ln in (ROOT / ".clusterfuzzlite" / "x86.dict").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    bad = [ln for ln in lines if not entry.match(ln)]
    assert not bad and len(lines) > 50, bad
    assert 'contract="\\x66\\x89\\x02"' in lines


def test_seed_corpora_decode_in_their_harness_layout(tmp_path: Path) -> None:
    from exitlab.tools.fuzz.atheris_target import case_from_input

    counts = cflite_seeds.write_all(tmp_path, ROOT / "tests" / "data")
    assert set(counts) == set(HARNESSES) and min(counts.values()) > 20
    with zipfile.ZipFile(tmp_path / "atheris_target_seed_corpus.zip") as z:
        codes = {case_from_input(z.read(n)).code for n in z.namelist()}
    assert b"\x66\x89\x02" in {c[:3] for c in codes}
    with zipfile.ZipFile(tmp_path / "atheris_length_seed_corpus.zip") as z:
        for n in z.namelist():
            atheris_length.check_input(z.read(n))  # every seed satisfies the invariants


@pytest.mark.parametrize("data", [
    b"", b"\x02", b"\x02\x66\x89\x02", b"\x01\x66\x89\x02\xff", b"\x00" + b"\x66" * 20,
    b"\x02\xc4\xe1\x79\x6f\x02", b"\x02\x62\xf1\x7d\x08\x6f\x02", b"\x02\x0f",
])
def test_length_harness_accepts_valid_behaviour(data: bytes) -> None:
    atheris_length.check_input(data)


def test_length_harness_catches_a_planted_inconsistency(monkeypatch: pytest.MonkeyPatch) -> None:
    """A length function that ignores truncation must be reported (the harness can fail)."""
    real = atheris_length._length
    monkeypatch.setattr(atheris_length, "_length", lambda d, m: real(d + b"\x00" * 15, m))
    with pytest.raises(atheris_length.FuzzFailure, match="first"):
        atheris_length.check_input(b"\x02\x66\x89\x02")


def test_guard_page_turns_an_overread_into_a_crash() -> None:
    code = (
        "import ctypes\n"
        "from exitlab.tools.fuzz import atheris_length as h\n"
        "a = h._buf().place(b'\\x90\\x90')\n"
        "assert ctypes.string_at(a, 2) == b'\\x90\\x90'\n"
        "print('in bounds ok', flush=True)\n"
        "ctypes.string_at(a, 3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "in bounds ok" in proc.stdout
    assert proc.returncode == -11, (proc.returncode, proc.stderr)


def test_a_libfuzzer_crash_file_replays_with_exitlab_fuzz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A raw atheris_target input (what ClusterFuzzLite attaches to a crash) is a valid --replay FILE."""
    import json

    from exitlab.cli import main
    from exitlab.tools.fuzz.atheris_target import case_from_input, input_from_case

    data = input_from_case(b"\x66\x89\x02", 64, seed=b"crash")
    crash = tmp_path / "crash-0123abcd"
    crash.write_bytes(data)
    assert main(["fuzz", "--replay", str(crash), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["case"] == case_from_input(data).to_json()
    assert shown["clean"] is True
