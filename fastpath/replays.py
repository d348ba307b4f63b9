"""Replaying a trace on either engine, under the C engine's path names (fastpath.cengine.PATHS).

`exitlab.replay(trace, path, engine=..., board=...)` comes here. The Python engine (`py_replay`,
also the bench's Python replay rows) is emu/replay.py over the route below; the C engine
(`c_replay`) is fastpath/csrc/replay.c, given the board as a device table (fastpath/devtab.py)
when it is not the default one, so both replay into the same device model. The routes say which
Python paths a C path name stands for, so both engines count alike:

| name                         | MMIO exits                  | port I/O | hypercalls |
|------------------------------|-----------------------------|----------|------------|
| pio, hypercall, capstone     | generic                     | pio      | hypercall  |
| pv-fast                      | [pv-fast, generic]          | pio      | hypercall  |
| wildcard                     | [wildcard, generic]         | pio      | hypercall  |
| trap                         | trap (count only)           | pio      | trap       |
| subset                       | refused: C only             |          |            |

("generic" is accepted for "capstone", as on the C engine.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from emu.board import Board, default_board
from emu.errors import ExitlabError
from emu.exits import ExitRecord
from emu.generic import GenericPath
from emu.iopaths import HypercallPath, PioPath
from emu.replay import PATH_NAMES, Replayer, ReplayResult, Route
from fastpath.hostpaths import TrapPath, make_path

NAMES: tuple[str, ...] = PATH_NAMES  # the C engine's names (tests/test_replay_differential.py)
ALIASES: dict[str, str] = {"generic": "capstone"}


def route(path: str, board: Board, check: bool = True) -> Route:
    """The route a C path name stands for on the Python engine (ExitlabError for an unknown name or
    the C-only subset decoder)."""
    name = ALIASES.get(path, path)
    if name == "subset":
        raise ExitlabError("the subset decoder exists only in C: replay it with engine='c'")
    if name not in NAMES:
        raise ExitlabError(f"unknown path {path!r} ({', '.join((*NAMES, *ALIASES))})")
    if name == "trap":
        trap = TrapPath()
        return Route(name, trap, PioPath(), trap, check=False)
    if name in ("pv-fast", "wildcard"):
        mmio = make_path(name, board)
    else:
        mmio = GenericPath()
    return Route(name, mmio, PioPath(), HypercallPath(), check)


def py_replay(
    trace: str | Path | Iterable[ExitRecord],
    path: str,
    board: Board | None = None,
    keep_results: bool = True,
    check: bool = True,
) -> ReplayResult:
    """Replay a trace file or records through the Python paths `path` names, into `board` (default:
    a fresh default board, as the C engine's context)."""
    board = board if board is not None else default_board()
    return Replayer(route(path, board, check), board).run(trace, keep_results)


def c_replay(records: Sequence[ExitRecord], path: str, board: Board | None = None) -> Any:
    """Replay records through one C path (fastpath.cengine.replay). With `board`, the C context's
    flat devices sit at the board's addresses and every other device is reached through the device
    table, as in a live `--engine c` run; afterwards the board holds the device state."""
    from fastpath import cengine  # the optional C extension (tests/test_layers.py LAZY)
    from fastpath.devtab import DeviceTable

    if board is None:
        return cengine.replay(records, path)
    ctx = cengine.CContext()
    table = DeviceTable(board, SimpleNamespace(windows=[]))  # no live windows: nothing is mapped
    table.install(ctx)
    try:
        result = cengine.replay(records, path, ctx=ctx)
    finally:
        table.uninstall(ctx)
    table.sync_back(ctx)
    return result
