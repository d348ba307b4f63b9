"""`exitlab decode HEX`: show what the generic path decodes from instruction bytes."""

from __future__ import annotations

import argparse
import json

from emu.decode import decode, effective_address
from emu.errors import ExitlabError
from emu.exits import REG_NAMES
from emu.inputs import parse_hex
from emu.limits import u64_arg

NAME = "decode"
HELP = "decode one instruction into the access the generic path would emulate"
DESCRIPTION = (
    "Decode HEX (e.g. '66 89 02' or '668902') with Capstone and print the access: kind, size, "
    "operands, effective-address formula (and the address, when --regs are given), length, mnemonic."
)


def parse_regs(text: str) -> dict[str, int]:
    """'rax=0x10,rdx=4096' -> {'rax': 16, 'rdx': 4096}."""
    regs: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = item.partition("=")
        name = name.strip().lower()
        if name not in REG_NAMES or not value:
            raise ExitlabError(f"bad register assignment {item!r} (registers: {', '.join(REG_NAMES)})")
        try:
            regs[name] = int(value, 0) & ((1 << 64) - 1)
        except ValueError as exc:
            raise ExitlabError(f"bad register value in {item!r}") from exc
    return regs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hex", metavar="HEX", help="instruction bytes, e.g. '66 89 02'")
    parser.add_argument("--mode", type=int, choices=(64, 32), default=64)
    parser.add_argument("--rip", type=u64_arg, default=0x1000, help="address of the bytes (0 .. 2**64-1)")
    parser.add_argument("--regs", default="", help="register values, e.g. rax=0x1,rdx=0xfeb00000")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    code = parse_hex(args.hex)
    access = decode(code, args.mode, args.rip)
    info = access.describe()
    if args.regs:
        regs = parse_regs(args.regs)

        def get(name: str) -> int:
            return regs.get(name, 0)

        info["address"] = effective_address(access.mem, get, args.rip + access.length, args.mode)
        if access.src_mem is not None:
            info["src_address"] = effective_address(access.src_mem, get, args.rip + access.length, args.mode)
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            shown = f"{value:#x}" if key.endswith("address") and isinstance(value, int) else value
            print(f"{key:12} {shown}")
    return 0
