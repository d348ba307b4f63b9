"""`Case`: one fuzz input — instruction bytes, mode, register file, MMIO window and device answer.

A case is plain data so it can be generated in one process, checked in another, minimized,
written to a reproducer file and read back bit-for-bit. Registers that are zero are not stored,
which is also what "fewest nonzero registers" minimizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emu.errors import ExitlabError, UsageError
from emu.exits import MAX_INSN_LEN, REG_NAMES
from emu.inputs import loads_strict, read_file
from emu.limits import CASE_FILE_MAX, check_window
from emu.platform import REGS_MMIO, REGS_MMIO_SIZE

DEFAULT_RIP = 0x1000
SCHEMA = "exitlab-fuzz-case"
_M64 = (1 << 64) - 1
_RFLAGS_FIXED = 0x2


class CaseFormatError(ExitlabError, ValueError):
    """A case or reproducer file that does not follow the schema; names the file and field."""


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
    def from_json(cls, obj: Any) -> Case:
        """Read a case (or a reproducer, which embeds one under "case") written by `to_json`.

        Every field is checked (CaseFormatError names it): files are user input (`--replay`,
        `--corpus`), and a bad window size or mode must not reach a generator or an oracle."""
        if not isinstance(obj, Mapping):
            raise CaseFormatError("a case must be a JSON object")
        if "case" in obj and isinstance(obj["case"], Mapping):
            obj = obj["case"]

        def num(v: Any, what: str, lo: int = 0, hi: int = _M64) -> int:
            if isinstance(v, str):
                try:
                    v = int(v, 0)
                except ValueError:
                    raise CaseFormatError(f"{what} is not an integer: {v!r}") from None
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise CaseFormatError(f"{what} must be an integer {lo}..{hi:#x} (got {v!r})")
            return v

        text = obj.get("bytes")
        if not isinstance(text, str):
            raise CaseFormatError(f"'bytes' must be a hex string (got {text!r})")
        try:
            code = bytes.fromhex(text.replace(" ", ""))
        except ValueError:
            raise CaseFormatError(f"'bytes' is not hex: {text[:40]!r}") from None
        if not 1 <= len(code) <= MAX_INSN_LEN:
            raise CaseFormatError(f"'bytes' must hold 1..{MAX_INSN_LEN} bytes (got {len(code)})")
        mode = obj.get("mode", 64)
        if isinstance(mode, bool) or mode not in (16, 32, 64):
            raise CaseFormatError(f"'mode' must be 16, 32 or 64 (got {mode!r})")
        regs = obj.get("regs", {})
        xmm = obj.get("xmm", {})
        mmio = obj.get("mmio", [REGS_MMIO, REGS_MMIO_SIZE])
        if not isinstance(regs, Mapping) or not isinstance(xmm, Mapping):
            raise CaseFormatError("'regs' and 'xmm' must be objects")
        if not isinstance(mmio, list | tuple) or len(mmio) != 2:
            raise CaseFormatError(f"'mmio' must be [base, size] (got {mmio!r})")
        unknown = set(map(str, regs)) - set(REG_NAMES)
        if unknown:
            raise CaseFormatError(f"unknown registers {sorted(unknown)} (known: {', '.join(REG_NAMES)})")
        base, size = num(mmio[0], "mmio base"), num(mmio[1], "mmio size")
        try:
            check_window(base, size)
        except UsageError as exc:
            raise CaseFormatError(str(exc)) from None
        index = obj.get("index", -1)
        if isinstance(index, bool) or not isinstance(index, int):
            raise CaseFormatError(f"'index' must be an integer (got {index!r})")
        return cls.make(
            code,
            mode,
            {str(k): num(v, f"register {k}") for k, v in regs.items()},
            (base, size),
            num(obj.get("read_value", 0), "'read_value'"),
            {num(k, "xmm index", 0, 15): num(v, f"xmm{k}", 0, (1 << 128) - 1) for k, v in xmm.items()},
            num(obj.get("rip", DEFAULT_RIP), "'rip'", 0, _M64 - MAX_INSN_LEN),
            str(obj.get("generator", "")),
            index,
        )

    @classmethod
    def load(cls, path: str | Path) -> Case:
        """A case or reproducer file (at most CASE_FILE_MAX bytes of strict JSON)."""
        data = read_file(path, CASE_FILE_MAX, "case")
        try:
            return cls.from_json(loads_strict(data))
        except CaseFormatError as exc:
            raise CaseFormatError(f"{path}: {exc}") from None
        except ValueError as exc:
            raise CaseFormatError(f"{path}: not a JSON case ({exc})") from None

    def describe(self) -> str:
        regs = " ".join(f"{k}={v:#x}" for k, v in self.regs)
        return (
            f"bytes={self.code.hex(' ')} mode={self.mode} mmio={self.mmio[0]:#x}+{self.mmio[1]:#x} "
            f"read_value={self.read_value:#x} {regs}"
        ).rstrip()
