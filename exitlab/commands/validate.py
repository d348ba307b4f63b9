"""`exitlab validate`: check a guest against the pv contract (docs/contract.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emu.elf import read_binary
from emu.errors import GuestFormatError
from exitlab.boundary import EXIT_INTERRUPTED
from exitlab.commands.run import add_guest_arguments, resolve_guest
from exitlab.tools.validate import format_text, validate, validate_static

NAME = "validate"
HELP = "check a guest against the pv notify contract (dynamic run + static disassembly)"
DESCRIPTION = (
    "Run GUEST exit-style through the pv fast path and classify every exit inside a pv window as "
    "conforming (exactly `66 89 02`, a 2-byte write of AX through RDX/EDX in 32- or 64-bit code) "
    "or a violation with its RIP, bytes, disassembly and reason (wrong opcode, wrong register, "
    "wrong addressing form, wrong width, extra prefix, read of a write-only window, wrong mode). "
    "Violations are still handled by the generic path, so the run continues. Then disassemble the "
    "guest's code by linear sweep and list every contract site and near miss (a 16-bit store "
    "from AX, any store through RDX); these are heuristic. Exit status 0 only when no exit "
    "violated the contract and the guest stopped on hlt; with --strict, static near misses fail too. "
    "With --static, nothing runs: GUEST may then also be a relocatable object (.o) or kernel module "
    "(.ko), and an ELF is swept function by function with findings named func+0xoff (file:line "
    "with DWARF line info)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_guest_arguments(p)
    p.add_argument("--json", action="store_true",
                   help='print {"conforming": n, "violations": [...], "static": [...]} instead of text')
    p.add_argument("--strict", action="store_true",
                   help="also fail on static near misses (heuristic: may flag data or unrelated stores)")
    p.add_argument("--static", action="store_true",
                   help="static sweep only, no run: `exitlab validate --static FILE` checks a driver's ELF "
                        "executable, object (.o) or kernel module (.ko), 32- or 64-bit")


def run(args: argparse.Namespace) -> int:
    if args.static:
        report = _static_report(args)
    else:
        image = resolve_guest(args.guest, args.mode)
        report = validate(image, max_insns=args.max_insns, timeout=args.timeout)
    if args.json:
        print(json.dumps(report.to_json()))
        if not report.run_completed and report.stop is not None:
            print(f"exitlab validate: the run did not reach hlt: {report.stop.message}", file=sys.stderr)
    else:
        print(format_text(report, strict=args.strict))
    if report.stop is not None and report.stop.reason.value == "interrupted":
        return EXIT_INTERRUPTED  # Ctrl-C: the report above covers the run so far (docs/robustness.md)
    return 0 if report.passed(strict=args.strict) else 1


def _static_report(args: argparse.Namespace) -> Any:
    """--static: an ELF file is read as a binary (any ELF type, no RAM check: it is not loaded);
    anything else (snippet, raw binary, built-in) is resolved as for a run and swept."""
    p = Path(args.guest)
    if args.guest != "-" and p.is_file():
        try:
            with p.open("rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise GuestFormatError(f"{p}: cannot read ({exc.strerror})") from None
        if magic == b"\x7fELF":
            binary = read_binary(str(p))
            if args.mode is not None and args.mode != binary.mode:
                binary.mode = args.mode
            return validate_static(binary=binary)
    return validate_static(image=resolve_guest(args.guest, args.mode))
