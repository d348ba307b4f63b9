"""`exitlab`: one console script; each subcommand is a module in `exitlab.commands`.

A command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`
(the process exit status). Modules are discovered, so adding a command touches no other file.
"""
# ruff: noqa: E402  (the SIGINT handler is set before the heavy imports)

from __future__ import annotations

import signal
import sys


def _interrupted_while_starting(_signum: int, _frame: object) -> None:
    raise SystemExit(130)  # Ctrl-C while the modules below load: no traceback (docs/robustness.md)


try:  # the console script imports this module first: Ctrl-C from here on is a clean exit 130
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
except ValueError:  # imported outside the main thread: signals are not ours to set there
    pass

import argparse
import importlib
import pkgutil
from types import ModuleType

from exitlab import commands
from exitlab.boundary import guard
from exitlab.commands._version import version_text


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"exitlab.commands.{info.name}"))
    return mods


class _VersionAction(argparse.Action):
    """Like argparse's "version" action, but the text is computed only when asked for."""

    def __init__(
        self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None
    ) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exitlab",
        description="Run x86 guest code under Unicorn, trap its VM exits (MMIO, port I/O, hypercalls) "
        "and measure and check every way a host can handle them.",
    )
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version, git commit, Unicorn/Capstone versions, C extension status")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse and run one subcommand inside the error boundary (exitlab/boundary.py: exit statuses)."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on: the error boundary
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
