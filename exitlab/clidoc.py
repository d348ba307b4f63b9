"""Generate the option reference of docs/cli.md from the argparse parsers.

    python -m exitlab.clidoc docs/cli.md          # rewrite the generated blocks in place
    python -m exitlab.clidoc --check docs/cli.md  # exit 1 if they are stale

The file is prose written by hand plus one generated block per command, between
`<!-- generated: NAME -->` and `<!-- /generated: NAME -->` (NAME `exitlab` for the global
options). Only the blocks are rewritten; a command with no block yet is appended at the end.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from exitlab.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(f"`{s}`" for s in action.option_strings)
    if action.nargs == 0:
        return names
    if action.choices is not None:
        return names + " `{" + ",".join(str(c) for c in action.choices) + "}`"
    metavar = action.metavar or action.dest.upper()
    return f"{names} `{metavar}`"


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.default == "":
        return ""
    if isinstance(action.default, tuple | list):
        return "`" + ",".join(str(x) for x in action.default) + "`"
    return f"`{action.default}`"


def options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        helptext = action.help if action.help not in (None, argparse.SUPPRESS) else ""
        if "%(default)" in str(helptext):
            helptext = str(helptext) % {"default": action.default}
        rows.append(f"| {_flag(action)} | {_default(action)} | {_cell(str(helptext))} |")
    return rows


def block(name: str, parser: argparse.ArgumentParser) -> str:
    usage = " ".join(parser.format_usage().split())  # "usage: exitlab ..." on one line
    lines = [f"<!-- generated: {name} -->", "```text", usage, "```", ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    lines += options_table(parser)
    lines.append(f"<!-- /generated: {name} -->")
    return "\n".join(lines)


def blocks() -> dict[str, str]:
    """Generated text per command name (`exitlab` = the global options)."""
    top = build_parser()
    out = {"exitlab": block("exitlab", top)}
    for name, sub in sorted(_subparsers(top).items()):
        out[name] = block(name, sub)
    return out


def render(text: str) -> str:
    """`text` with every generated block replaced; missing commands appended as new sections."""
    for name, body in blocks().items():
        pattern = re.compile(
            rf"<!-- generated: {re.escape(name)} -->.*?<!-- /generated: {re.escape(name)} -->", re.S
        )
        if pattern.search(text):
            text = pattern.sub(lambda _m: body, text)  # noqa: B023 - used at once, in this iteration
        else:
            text = text.rstrip("\n") + f"\n\n## `exitlab {name}`\n\n{body}\n"
    return text if text.endswith("\n") else text + "\n"


def all_flags() -> dict[str, set[str]]:
    """Every option string of every command (for the test that cli.md mentions them all)."""
    top = build_parser()
    flags = {"exitlab": {s for a in top._actions for s in a.option_strings}}
    for name, sub in _subparsers(top).items():
        flags[name] = {s for a in sub._actions for s in a.option_strings}
    return flags


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exitlab.clidoc", description=__doc__)
    p.add_argument("file", type=Path)
    p.add_argument("--check", action="store_true", help="exit 1 if the generated blocks are stale")
    args = p.parse_args(argv)
    old = args.file.read_text() if args.file.exists() else "# exitlab command reference\n"
    new = render(old)
    if args.check:
        if new != old:
            print(f"{args.file} is stale: run `python -m exitlab.clidoc {args.file}`", file=sys.stderr)
            return 1
        return 0
    args.file.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
