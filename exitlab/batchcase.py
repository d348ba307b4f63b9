"""The schema of one `emulate --batch` case, checked before anything is emulated.

A case line may come from anywhere, so every field is checked here with the same limits as
the rest of exitlab (emu/limits.py): integers only (no floats, no booleans, no `Infinity`), a
bounded MMIO window, registers that exist, and instruction bytes that form one complete
instruction on their own — exactly what `exitlab decode` accepts. Bytes are never padded: `""`,
`"66"` or `"66 89"` are errors, not `add [rax], al`.
"""

from __future__ import annotations

from typing import Any

from emu.decode import decode
from emu.errors import EmulationError, ExitlabError, UsageError
from emu.exits import REG_NAMES
from emu.inputs import parse_hex
from emu.limits import INSN_MAX, check_u64, check_window


class CaseError(ExitlabError):
    """A batch case that does not follow the schema (the message names the field)."""


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise CaseError(f"{what} is not an integer: {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CaseError(f"{what} must be an integer (got {value!r})")
    if not lo <= value <= hi:
        raise CaseError(f"{what} = {value} is out of range {lo}..{hi:#x}")
    return value


def _vector_bytes(name: str) -> int:
    """The width in bytes of vector register `name` (xmm0-15: 16, ymm0-15: 32, mm0-7: 8), else 0."""
    for kind, count, width in (("xmm", 16, 16), ("ymm", 16, 32), ("mm", 8, 8)):
        digits = name[len(kind):]
        if name.startswith(kind) and digits.isdigit() and digits == str(int(digits)) and int(digits) < count:
            return width
    return 0


def _vector(name: str, value: Any, width: int) -> str:
    """A vector register value: a hex string of at most `width` bytes (kept as text for run_case)."""
    if not isinstance(value, str):
        raise CaseError(f"register {name} must be a hex string (got {value!r})")
    try:
        v = int(value, 16)
    except ValueError:
        raise CaseError(f"register {name}: not a hex string: {value!r}") from None
    if v < 0 or v >> (8 * width):
        raise CaseError(f"register {name}: {value!r} does not fit {8 * width} bits")
    return value


def check_case(case: Any) -> dict[str, Any]:
    """The case with every field checked and normalized (ints, a 2-item mmio list); CaseError if not.

    Other keys (e.g. "asm" annotations) are ignored."""
    if not isinstance(case, dict):
        raise CaseError("a case must be a JSON object")
    text = case.get("bytes")
    if not isinstance(text, str):
        raise CaseError(f"'bytes' must be a hex string (got {text!r})")
    code = parse_hex(text)
    if not code:
        raise CaseError("'bytes' is empty")
    if len(code) > INSN_MAX:
        raise CaseError(f"'bytes' has {len(code)} bytes; an instruction has at most {INSN_MAX}")
    mode = case.get("mode", 64)
    if isinstance(mode, bool) or mode not in (16, 32, 64):
        raise CaseError(f"'mode' must be 16, 32 or 64 (got {mode!r})")
    rip = _int(case.get("rip", 0x1000), "'rip'", 0, 2**64 - 1)
    mmio = case.get("mmio")
    if not isinstance(mmio, list) or len(mmio) != 2:
        raise CaseError(f"'mmio' must be [base, size] (got {mmio!r})")
    base = _int(mmio[0], "mmio base", 0, 2**64 - 1)
    size = _int(mmio[1], "mmio size", 0, 2**64 - 1)
    try:
        check_window(base, size)
        check_u64(rip + INSN_MAX - 1, "'rip' + 14")
    except UsageError as exc:
        raise CaseError(str(exc)) from None
    regs = case.get("regs", {})
    if not isinstance(regs, dict):
        raise CaseError(f"'regs' must be an object (got {regs!r})")
    vectors = {k: v for k, v in regs.items() if _vector_bytes(k)}
    bad = sorted(set(regs) - set(REG_NAMES) - set(vectors))
    if bad:
        raise CaseError(f"unknown register(s) {', '.join(bad)} (known: {', '.join(REG_NAMES)}, "
                        "xmm0-xmm15, ymm0-ymm15, mm0-mm7)")
    clean_regs: dict[str, Any] = {k: _int(v, f"register {k}", -(2**63), 2**64 - 1) & (2**64 - 1)
                                  for k, v in regs.items() if k not in vectors}
    for k, v in vectors.items():
        clean_regs[k] = _vector(k, v, _vector_bytes(k))
    read_value = _int(case.get("read_value", 0), "'read_value'", 0, 2**128 - 1)
    try:
        decode(code, mode, rip)  # the bytes alone must hold one whole instruction (as `exitlab decode`)
    except EmulationError as exc:
        if "truncated" in exc.reason or "invalid" in exc.reason:
            raise CaseError(f"'bytes' {code.hex(' ')}: {exc.reason}") from None
        # unsupported or no memory operand: emulate_at reports it in its own words
    out = {"bytes": code.hex(" "), "mode": mode, "rip": rip, "mmio": [base, size], "regs": clean_regs,
           "read_value": read_value}
    if "cr0" in case:
        out["cr0"] = _int(case["cr0"], "'cr0'", 0, 2**64 - 1)
    return out
