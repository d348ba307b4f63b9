"""Every numeric limit exitlab accepts, checked in one place for every engine and command.

The Python, C and KVM engines all take the same `--timeout` and `--max-insns`; the batch,
replay and corpus readers all take the same MMIO window. A value out of range is refused here,
before any engine, file or measurement starts, with the range in the message (docs/robustness.md).
Engines may assert these ranges; they never have to clamp or reinterpret a value.

The `*_arg` functions are argparse `type=` callables (a bad value is a usage error, exit 2);
the `check_*` functions raise `UsageError` for values that arrive another way (library calls,
JSON cases).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from emu.errors import UsageError

# -- run limits -------------------------------------------------------------------------------------
TIMEOUT_MAX = 10**6  # seconds (11.5 days): representable by every engine's clock without overflow
MAX_INSNS_MAX = 2**63 - 1  # what a signed 64-bit counter holds; 0 is not "unlimited"

# -- sizes of inputs (bytes) ------------------------------------------------------------------------
GUEST_FILE_MAX = 16 * 2**20  # a guest file (raw, ELF or .S); RAM is 4 MiB, so this is generous
STDIN_SOURCE_MAX = 16 * 2**20  # assembly read from '-'
BATCH_LINE_MAX = 2**20  # one line of `emulate --batch`
CASE_FILE_MAX = 2**20  # one fuzz reproducer / corpus file
TRACE_LINE_MAX = 2**20  # one line of an exitlab-trace file
JSON_DEPTH_MAX = 32  # nesting of any JSON object exitlab reads (a case needs 3)

# -- guest-visible values -------------------------------------------------------------------------
ADDR_MAX = 2**64 - 1
WINDOW_SIZE_MAX = 2**24  # an MMIO window of a batch/fuzz case: at most 16 MiB (4096 pages)
INSN_MAX = 15  # architectural maximum instruction length


def check_timeout(value: float, option: str = "--timeout") -> float:
    """A finite number of seconds, 0 < T <= TIMEOUT_MAX (no 'inf', 'nan', 0 or negatives)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{option} must be a number of seconds (got {value!r})")
    if not math.isfinite(value) or not 0 < value <= TIMEOUT_MAX:
        raise UsageError(
            f"{option} must be a finite number of seconds, 0 < T <= {TIMEOUT_MAX} (got {value!r})"
        )
    return float(value)


def check_max_insns(value: int, option: str = "--max-insns") -> int:
    """An instruction budget, 1 <= N <= 2**63-1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{option} must be an integer (got {value!r})")
    if not 1 <= value <= MAX_INSNS_MAX:
        raise UsageError(f"{option} must be 1 .. 2**63-1 = {MAX_INSNS_MAX} (got {value})")
    return value


def check_count(value: int, option: str, maximum: int = 10**9) -> int:
    """A positive count (exits, repeats, cases, jobs): 1 <= N <= maximum."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise UsageError(f"{option} must be an integer 1 .. {maximum} (got {value!r})")
    return value


def check_window(base: int, size: int, what: str = "mmio") -> tuple[int, int]:
    """An MMIO window [base, base+size): 1 <= size <= WINDOW_SIZE_MAX, inside the 64-bit space."""
    for name, v in (("base", base), ("size", size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise UsageError(f"{what} {name} must be an integer (got {v!r})")
    if not 0 <= base <= ADDR_MAX:
        raise UsageError(f"{what} base {base:#x} is outside the 64-bit address space")
    if not 1 <= size <= WINDOW_SIZE_MAX:
        raise UsageError(f"{what} size must be 1 .. {WINDOW_SIZE_MAX:#x} bytes (got {size:#x})")
    if base + size - 1 > ADDR_MAX:
        raise UsageError(f"{what} window {base:#x}+{size:#x} runs past the end of the 64-bit address space")
    return base, size


def check_u64(value: int, what: str) -> int:
    """A 64-bit register or address value (0 .. 2**64-1)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ADDR_MAX:
        raise UsageError(f"{what} must be an integer 0 .. 2**64-1 (got {value!r})")
    return value


# -- argparse adapters ------------------------------------------------------------------------------


def _argtype(
    parse: Callable[[str], object], check: Callable[..., object], what: str
) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            value = parse(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        try:
            return check(value, "value")
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    convert.__name__ = what  # argparse names the type in its own messages
    return convert


def _int(text: str) -> int:
    return int(text, 0)


timeout_arg = _argtype(float, check_timeout, "a number of seconds")
u64_arg = _argtype(_int, check_u64, "an integer")
max_insns_arg = _argtype(_int, check_max_insns, "an integer")


def count_arg(maximum: int = 10**9) -> Callable[[str], object]:
    """argparse type for a positive count up to `maximum`."""
    return _argtype(_int, lambda v, opt: check_count(v, opt, maximum), "an integer")
