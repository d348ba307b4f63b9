"""`exitlab --version`: what a bug report needs in one block.

The package version, the git commit of the checkout when the package runs from one, the Unicorn
and Capstone versions actually loaded (not only the pins), and whether the C extension imports
(with the reason when it does not: `--engine c` and the C bench rows depend on it).
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """HEAD of the checkout this package was imported from, or None (installed from a wheel, no git)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5, cwd=here
    ).stdout.strip()
    # Only a checkout that actually contains this package counts (not an unrelated enclosing repo).
    if not top or not (Path(top) / "exitlab" / "cli.py").exists():
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=5, cwd=here,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def c_extension_status() -> str:
    """'ok (<file>)' when fastpath._exitlab_c imports, else 'unavailable: <reason>'."""
    try:
        import fastpath._exitlab_c as ext
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
        return f"unavailable: {type(exc).__name__}: {exc}"
    return f"ok ({Path(str(ext.__file__)).name})"


def version_info() -> dict[str, Any]:
    """The facts `exitlab --version` prints, as data (also `exitlab.version_info()`)."""
    import capstone
    import unicorn

    cs_major, cs_minor, _ = capstone.cs_version()
    return {
        "exitlab": _dist_version("exitlab") or "unknown (not installed)",
        "commit": git_commit(),
        # The installed distributions (the capstone 5.0.9 wheel's module still says 5.0.7).
        "unicorn": _dist_version("unicorn") or unicorn.__version__,
        "capstone": _dist_version("capstone") or capstone.__version__,
        "capstone_core": f"{cs_major}.{cs_minor}",
        "c_extension": c_extension_status(),
    }


def version_text() -> str:
    info = version_info()
    return "\n".join(
        [
            f"exitlab {info['exitlab']}" + (f" (git {info['commit']})" if info["commit"] else ""),
            f"unicorn {info['unicorn']}",
            f"capstone {info['capstone']} (core {info['capstone_core']})",
            f"C extension: {info['c_extension']}",
        ]
    )
