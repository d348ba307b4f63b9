"""Small shared helpers for tests: assemble-and-run in one call."""

from __future__ import annotations

from emu.assemble import assemble
from emu.board import Board, default_board
from emu.machine import Machine, RunResult


def run_asm(
    src: str,
    mode: int = 64,
    style: str = "inplace",
    path: object = None,
    max_insns: int | None = None,
    timeout: float | None = 5.0,
    board: Board | None = None,
    keep_records: bool = True,
) -> tuple[RunResult, Machine]:
    image = assemble(src, mode=mode)
    m = Machine(
        image,
        board=board or default_board(),
        mmio_style=style,
        path=path,  # type: ignore[arg-type]
        keep_records=keep_records,
    )
    return m.run(max_insns=max_insns, timeout=timeout), m
