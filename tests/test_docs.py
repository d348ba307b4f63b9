"""The documentation stays true: every flag is in docs/cli.md, its generated tables are current,
and every `exitlab` command shown in README.md and docs/*.md runs.

Convention (also in docs/cli.md): every ```python block runs (with `import exitlab` in scope);
a fenced ```sh block that contains an `exitlab` command is run
as a shell script (`set -eu -o pipefail`), in a fresh temporary directory, with `exitlab` and
`python` on PATH meaning this checkout's, under a time limit. A command line ending in
`# exit N` must exit with status N (a guest that faults, a failing check). Blocks that need
/dev/kvm are skipped when it is not usable. Illustrative commands with placeholders belong in
```text blocks, prefixed by `$` when they show output; a bare `exitlab ...` line without a
placeholder (GUEST, FILE, [--flag]) anywhere else in a fenced block is an error, so nothing shown
to a reader as a command escapes the check.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from exitlab import clidoc

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
EXIT_MARK = re.compile(r"^(?P<cmd>.*\S)\s+#\s*exit\s+(?P<rc>\d+)\s*$")
BLOCK_TIMEOUT = 120
KVM_MARKERS = ("--engine kvm", "kvm-bench")


def _blocks() -> list[tuple[str, int, str, str]]:
    """(file, line, language, body) for every fenced block in the docs."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append((str(doc.relative_to(ROOT)), line, m.group(1), m.group(2)))
    return out


def _invokes_exitlab(body: str) -> bool:
    return re.search(r"(^\s*|[|;&(]\s*)(\.venv/bin/)?exitlab\s", body, re.M) is not None


SH_BLOCKS = [b for b in _blocks() if b[2] == "sh" and _invokes_exitlab(b[3])]


def _kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def _script(body: str) -> str:
    """The block as a script: `CMD  # exit N` lines become an explicit status check."""
    lines = ["set -eu -o pipefail"]
    for line in body.splitlines():
        m = EXIT_MARK.match(line)
        if m:
            cmd, rc = m.group("cmd"), m.group("rc")
            lines.append(
                f'{cmd} && __rc=0 || __rc=$?; [ "$__rc" = {rc} ] || '
                f'{{ echo "expected exit {rc}, got $__rc: {cmd.replace(chr(34), chr(39))}" >&2; exit 99; }}'
            )
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def shim_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH directory where `exitlab` and `python` are this interpreter and this checkout."""
    d = tmp_path_factory.mktemp("bin")
    for name, body in (
        ("exitlab", f'exec "{sys.executable}" -m exitlab "$@"\n'),
        ("python", f'exec "{sys.executable}" "$@"\n'),
    ):
        p = d / name
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return d


@pytest.mark.parametrize("doc,line,lang,body", SH_BLOCKS, ids=[f"{b[0]}:{b[1]}" for b in SH_BLOCKS])
def test_shown_commands_run(
    doc: str, line: int, lang: str, body: str, shim_bin: Path, tmp_path: Path
) -> None:
    if any(k in body for k in KVM_MARKERS) and not _kvm_usable():
        pytest.skip("/dev/kvm is not usable here")
    env = dict(os.environ)
    env["PATH"] = f"{shim_bin}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        ["bash", "-c", _script(body)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=BLOCK_TIMEOUT,
    )
    assert proc.returncode == 0, (
        f"{doc}:{line}: block failed with status {proc.returncode}\n--- block\n{body}"
        f"--- stdout (tail)\n{proc.stdout[-2000:]}\n--- stderr (tail)\n{proc.stderr[-2000:]}"
    )


PY_BLOCKS = [b for b in _blocks() if b[2] == "python"]


@pytest.mark.parametrize("doc,line,lang,body", PY_BLOCKS, ids=[f"{b[0]}:{b[1]}" for b in PY_BLOCKS])
def test_shown_python_runs(doc: str, line: int, lang: str, body: str, tmp_path: Path) -> None:
    """Every ```python block runs as shown (with `import exitlab` in scope) in a fresh directory."""
    proc = subprocess.run(
        [sys.executable, "-c", "import exitlab\n" + body], cwd=tmp_path, capture_output=True, text=True,
        timeout=BLOCK_TIMEOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, (
        f"{doc}:{line}: python block failed\n{body}\n--- stderr\n{proc.stderr[-3000:]}"
    )


SYNOPSIS = re.compile(r"\b[A-Z][A-Z_.]{2,}\b|\[")  # GUEST, FILE, [--json]: a placeholder, not a command


def test_every_exitlab_command_shown_is_checked() -> None:
    """No runnable-looking `exitlab ...` line hides in a block the runner does not execute (a
    synopsis with placeholders such as `exitlab validate GUEST [--json]` is fine anywhere)."""
    hidden = []
    for doc, line, lang, body in _blocks():
        if lang == "sh":
            continue
        for i, text in enumerate(body.splitlines(), 1):
            code = text.split("#", 1)[0]
            if re.match(r"\s*(\.venv/bin/)?exitlab\s", code) and not SYNOPSIS.search(code):
                hidden.append(f"{doc}:{line + i}: {text.strip()}")
    assert not hidden, (
        "exitlab commands outside ```sh blocks (make them runnable or prefix `$ `):\n" + "\n".join(hidden)
    )


def test_the_runner_checks_marked_exit_status(shim_bin: Path, tmp_path: Path) -> None:
    """The `# exit N` mark is enforced both ways (a test of the test)."""
    env = {**os.environ, "PATH": f"{shim_bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}

    def status(body: str) -> int:
        return subprocess.run(
            ["bash", "-c", _script(body)], cwd=tmp_path, env=env, capture_output=True
        ).returncode

    assert status("false    # exit 1\n") == 0
    assert status("true    # exit 1\n") == 99
    assert status("false\n") == 1


def test_cli_md_mentions_every_flag() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [
        f"{cmd} {flag}"
        for cmd, flags in clidoc.all_flags().items()
        for flag in sorted(flags)
        if flag not in ("-h", "--help") and f"`{flag}`" not in text
    ]
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)}"
    for cmd in clidoc.all_flags():
        if cmd != "exitlab":
            assert f"## `exitlab {cmd}`" in text, f"docs/cli.md has no section for {cmd}"


def test_cli_md_generated_tables_are_current() -> None:
    path = ROOT / "docs" / "cli.md"
    assert clidoc.render(path.read_text()) == path.read_text(), (
        "docs/cli.md is stale: run `python -m exitlab.clidoc docs/cli.md`"
    )


def test_docs_links_resolve() -> None:
    """Relative links in README and docs point at files that exist."""
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)
