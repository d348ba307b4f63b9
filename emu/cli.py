"""`exitlab`: one console script; each subcommand is a module in `emu.commands`.

A command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`
(the process exit status). Modules are discovered, so adding a command touches no other file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

from emu import commands
from emu.boundary import guard


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"emu.commands.{info.name}"))
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exitlab",
        description="Run x86 guest code under Unicorn, trap its VM exits (MMIO, port I/O, hypercalls) "
        "and measure and check every way a host can handle them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse and run one subcommand inside the error boundary (emu/boundary.py: exit statuses)."""
    holder: dict[str, argparse.Namespace] = {}

    def body() -> int:
        args = holder["args"] = build_parser().parse_args(argv)
        return int(args._run(args))

    def prog() -> str:
        args = holder.get("args")
        return f"exitlab {args.command}" if args is not None else "exitlab"

    return guard(prog, body)


if __name__ == "__main__":
    sys.exit(main())
