"""`exitlab emulate --batch CASES.jsonl`: run the generic path over recorded cases, without Unicorn.

Each input line is one case: {"bytes": "66 89 02", "mode": 64, "rip": 4096, "regs": {...},
"mmio": [base, size], "read_value": 0} (registers not named are 0; the bytes sit in RAM at rip).
Each output line is {"accesses": [...], "regs": {...}} or {"error": "..."}, one per input line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, Any, TextIO

from emu.batchcase import CaseError, check_case
from emu.batchcpu import BatchCpu, default_ram_regions
from emu.errors import ExitlabError, InputError
from emu.exits import GPR_NAMES
from emu.generic import emulate_at
from emu.inputs import binary_stdin, iter_lines, loads_strict, parse_hex
from emu.limits import BATCH_LINE_MAX

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
    regs = {k: int(v) for k, v in dict(case.get("regs", {})).items()}
    regs["rip"] = rip
    regs.setdefault("rflags", 0x2)
    cpu = BatchCpu(mode, regs, (mmio_base, mmio_size), int(case.get("read_value", 0)),
                   default_ram_regions(rip, (mmio_base, mmio_size)))
    if len(cpu.read_mem(rip, len(code))) != len(code):
        raise ExitlabError(f"rip {rip:#x} is not in RAM")
    cpu.write_mem(rip, code)
    out = emulate_at(cpu, rip, mode)
    cpu.set("rip", out.next_rip)
    return {
        "accesses": [{"gpa": a.gpa, "size": a.size, "write": a.write, "value": a.value}
                     for a in out.accesses],
        "regs": {name: cpu.get(name) for name in (*GPR_NAMES, "rip", "rflags")},
    }


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
