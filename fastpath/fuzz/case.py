"""`Case`: one fuzz input — instruction bytes, mode, register file, MMIO window and device answer.

A case is plain data so it can be generated in one process, checked in another, minimized,
written to a reproducer file and read back bit-for-bit. Registers that are zero are not stored,
which is also what "fewest nonzero registers" minimizes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emu.exits import REG_NAMES

DEFAULT_RIP = 0x1000
SCHEMA = "exitlab-fuzz-case"
_M64 = (1 << 64) - 1
_RFLAGS_FIXED = 0x2


def _canon_regs(regs: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Registers in REG_NAMES order, zero ones dropped (rflags keeps its fixed bit 1)."""
    out = []
    for name in REG_NAMES:
        if name == "rip":
            continue
        value = int(regs.get(name, 0)) & _M64
        if name == "rflags":
            value |= _RFLAGS_FIXED
            if value != _RFLAGS_FIXED:
                out.append((name, value))
        elif value:
            out.append((name, value))
    unknown = set(regs) - set(REG_NAMES)
    if unknown:
        raise ValueError(f"unknown registers {sorted(unknown)} (known: {', '.join(REG_NAMES)})")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Case:
    """One input. `regs` holds only non-default registers; `rflags` defaults to 0x2."""

    code: bytes
    mode: int
    regs: tuple[tuple[str, int], ...]
    mmio: tuple[int, int]
    read_value: int
    xmm: tuple[tuple[int, int], ...] = ()
    rip: int = DEFAULT_RIP
    gen: str = ""
    index: int = -1
    meta: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def make(
        cls,
        code: bytes,
        mode: int,
        regs: Mapping[str, int],
        mmio: tuple[int, int],
        read_value: int,
        xmm: Mapping[int, int] | None = None,
        rip: int = DEFAULT_RIP,
        gen: str = "",
        index: int = -1,
    ) -> Case:
        wmask = (1 << mode) - 1
        clean = {k: (v & wmask if k in REG_NAMES[:16] else v) for k, v in regs.items()}
        xm = tuple(sorted((int(i), int(v) & ((1 << 128) - 1)) for i, v in (xmm or {}).items() if v))
        return cls(
            bytes(code),
            mode,
            _canon_regs(clean),
            (int(mmio[0]), int(mmio[1])),
            read_value & _M64,
            xm,
            rip,
            gen,
            index,
        )

    def reg_dict(self) -> dict[str, int]:
        """All registers the oracle and the paths start from (rflags always present)."""
        d = {"rflags": _RFLAGS_FIXED}
        d.update(self.regs)
        return d

    def xmm_dict(self) -> dict[int, int]:
        return dict(self.xmm)

    def with_regs(self, regs: Mapping[str, int]) -> Case:
        return replace(self, regs=_canon_regs(regs))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": 1,
            "bytes": self.code.hex(" "),
            "mode": self.mode,
            "rip": self.rip,
            "regs": {k: hex(v) for k, v in self.regs},
            "mmio": [hex(self.mmio[0]), hex(self.mmio[1])],
            "read_value": hex(self.read_value),
            "xmm": {str(i): hex(v) for i, v in self.xmm},
            "generator": self.gen,
            "index": self.index,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Case:
        """Read a case (or a reproducer, which embeds one under "case") written by `to_json`."""
        if "case" in obj and isinstance(obj["case"], Mapping):
            obj = obj["case"]

        def num(v: Any) -> int:
            return int(v, 0) if isinstance(v, str) else int(v)

        code = bytes.fromhex(str(obj["bytes"]).replace(" ", ""))
        regs = {str(k): num(v) for k, v in dict(obj.get("regs", {})).items()}
        mmio = obj.get("mmio", [0xFEB01000, 0x1000])
        xmm = {int(k): num(v) for k, v in dict(obj.get("xmm", {})).items()}
        return cls.make(
            code,
            int(obj.get("mode", 64)),
            regs,
            (num(mmio[0]), num(mmio[1])),
            num(obj.get("read_value", 0)),
            xmm,
            num(obj.get("rip", DEFAULT_RIP)),
            str(obj.get("generator", "")),
            int(obj.get("index", -1)),
        )

    @classmethod
    def load(cls, path: str | Path) -> Case:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

    def describe(self) -> str:
        regs = " ".join(f"{k}={v:#x}" for k, v in self.regs)
        return (
            f"bytes={self.code.hex(' ')} mode={self.mode} mmio={self.mmio[0]:#x}+{self.mmio[1]:#x} "
            f"read_value={self.read_value:#x} {regs}"
        ).rstrip()
