"""Optional dependencies (the `bench` extra: matplotlib, tqdm) checked before any work starts.

`bench --plot` used to measure for half a minute and then fail importing matplotlib; the check
is now the first thing the command does, with the install line in the error.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from emu.errors import ExitlabError


class MissingExtraError(ExitlabError):
    """An option needs an optional package that is not installed."""


def require(module: str, option: str, extra: str = "bench") -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{option} needs {module}, which is not installed (pip install 'exitlab[{extra}]')"
        )


def plot_format(path: str) -> str:
    """The image format `--plot PATH` asks for (its suffix; png when it has none), checked up front."""
    require("matplotlib", "--plot")
    from matplotlib.backend_bases import FigureCanvasBase

    known = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lstrip(".").lower()
    if not suffix:
        return "png"
    if suffix not in known:
        formats = ", ".join(sorted(known))
        raise ExitlabError(f"--plot {path}: unknown image format {suffix!r} (one of {formats})")
    return suffix
