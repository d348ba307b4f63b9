"""`exitlab emulate --batch CASES.jsonl`: run the generic path over recorded cases, without Unicorn.

Each input line is one case: {"bytes": "66 89 02", "mode": 64, "rip": 4096, "regs": {...},
"mmio": [base, size], "read_value": 0} (registers not named are 0; the bytes sit in RAM at rip).
`regs` may also hold vector registers as hex strings: "xmm0".."xmm15" (128 bits), "ymm0".."ymm15"
(256 bits; an xmmN given too replaces ymmN's low half) and the MMX "mm0".."mm7" (64 bits).
An optional "cr0" (integer) is the CR0 SMSW stores; without it SMSW is an error line.
Each output line is {"accesses": [...], "regs": {...}} or {"error": "..."}, one per input line;
"regs" lists the general registers, plus every vector register the instruction changed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, Any, TextIO

from emu.batchcpu import BatchCpu, default_ram_regions
from emu.errors import ExitlabError, InputError
from emu.exits import GPR_NAMES
from emu.generic import emulate_at
from emu.inputs import binary_stdin, iter_lines, loads_strict, parse_hex
from emu.limits import BATCH_LINE_MAX
from exitlab.batchcase import CaseError, check_case

NAME = "emulate"
HELP = "emulate MMIO instructions with the generic path from a JSONL batch of cases"
DESCRIPTION = __doc__.split("\n\n", 1)[1].strip() if __doc__ else HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", required=True, metavar="CASES.jsonl",
                        help="cases, one per line ('-' = stdin)")


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """One case in, one result out; never touches Unicorn."""
    code = parse_hex(str(case["bytes"]))
    mode = int(case.get("mode", 64))
    rip = int(case.get("rip", 0x1000))
    mmio_base, mmio_size = (int(v) for v in case["mmio"])
    regs: dict[str, int] = {}
    vectors: dict[str, dict[int, int]] = {"xmm": {}, "ymm": {}, "mm": {}}
    for k, v in dict(case.get("regs", {})).items():
        kind, index = _vector_name(k)
        if kind:
            vectors[kind][index] = _vector_value(k, v, {"xmm": 16, "ymm": 32, "mm": 8}[kind])
        else:
            regs[k] = int(v)
    regs["rip"] = rip
    regs.setdefault("rflags", 0x2)
    cpu = BatchCpu(mode, regs, (mmio_base, mmio_size), int(case.get("read_value", 0)),
                   default_ram_regions(rip, (mmio_base, mmio_size)), vectors["xmm"], vectors["ymm"],
                   cr0=int(case["cr0"]) if "cr0" in case else None)
    for i, v in vectors["mm"].items():
        cpu.set_mm(i, v)
    before = dict(cpu.ymm)
    before_mm = dict(cpu.mm)
    if len(cpu.read_mem(rip, len(code))) != len(code):
        raise ExitlabError(f"rip {rip:#x} is not in RAM")
    cpu.write_mem(rip, code)
    out = emulate_at(cpu, rip, mode)
    cpu.set("rip", out.next_rip)
    return {
        "accesses": [{"gpa": a.gpa, "size": a.size, "write": a.write, "value": a.value}
                     for a in out.accesses],
        "regs": {name: cpu.get(name) for name in (*GPR_NAMES, "rip", "rflags")}
        | _changed_vectors(before, cpu)
        | {f"mm{i}": hex(cpu.mm[i]) for i in range(8) if cpu.mm[i] != before_mm[i]},
    }


def _vector_name(name: str) -> tuple[str, int]:
    """('xmm'|'ymm'|'mm', index) for 'xmm0'..'ymm15', 'mm0'..'mm7'; ('', 0) for any other name."""
    for kind, count in (("xmm", 16), ("ymm", 16), ("mm", 8)):
        digits = name[len(kind):]
        if name.startswith(kind) and digits.isdigit() and digits == str(int(digits)) and int(digits) < count:
            return kind, int(digits)
    return "", 0


def _vector_value(name: str, value: Any, size: int) -> int:
    """A vector register value: a hex string ('0x...' or bare hex) of at most `size` bytes."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a hex string, got {value!r}")
    try:
        v = int(value, 16)
    except ValueError:
        raise ValueError(f"{name}: not a hex string: {value!r}") from None
    if v < 0 or v >> (8 * size):
        raise ValueError(f"{name}: {value!r} does not fit {8 * size} bits")
    return v


def _changed_vectors(before: dict[int, int], cpu: BatchCpu) -> dict[str, str]:
    """The vector registers the instruction wrote: ymmN when its upper half changed, else xmmN."""
    out: dict[str, str] = {}
    for i, old in before.items():
        new = cpu.get_ymm(i)
        if new == old:
            continue
        upper_changed = (new >> 128) != (old >> 128)
        out[f"ymm{i}" if upper_changed else f"xmm{i}"] = hex(new if upper_changed else new & ((1 << 128) - 1))
    return out


def run_stream(lines: IO[bytes], out: TextIO, name: str = "<stdin>") -> int:
    """Process every line; returns the number of error lines. A bad line (not UTF-8, not JSON,
    `Infinity`, nested too deep, outside the schema) gets its own error line and the batch goes on;
    only a line longer than BATCH_LINE_MAX ends it (InputError, after the lines before it)."""
    errors = 0
    for number, raw in iter_lines(lines, BATCH_LINE_MAX, name):
        if not raw.strip():
            continue
        try:
            case = check_case(loads_strict(raw))
        except CaseError as exc:
            result: dict[str, Any] = {"error": f"line {number}: bad case: {exc}"}
        except ValueError as exc:
            result = {"error": f"line {number}: bad JSON: {exc}"}
        else:
            try:
                result = run_case(case)
            except ExitlabError as exc:
                result = {"error": f"line {number}: {exc}"}
        errors += "error" in result
        out.write(json.dumps(result) + "\n")
    return errors


def run(args: argparse.Namespace) -> int:
    if args.batch == "-":
        run_stream(binary_stdin(), sys.stdout)
        return 0
    if os.path.isdir(args.batch):
        raise InputError(f"{args.batch}: is a directory, not a batch file")
    try:
        fh = open(args.batch, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot read {args.batch}: {exc.strerror}") from exc
    with fh:
        run_stream(fh, sys.stdout, args.batch)
    return 0
