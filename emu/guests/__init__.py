"""Built-in example guests; `exitlab run NAME` finds them by file stem (e.g. `kick_mmio`)."""

from __future__ import annotations

from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in GUEST_DIR.glob("*.S"))


def builtin(name: str) -> Path | None:
    p = GUEST_DIR / f"{name}.S"
    return p if p.is_file() else None
