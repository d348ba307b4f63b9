"""`exitlab bench`: the exit-cost table of DESIGN.md, measured here, side by side."""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys

from emu.errors import ExitlabError
from emu.limits import count_arg
from emu.outfile import OutputFile
from exitlab.extras import plot_format
from exitlab.tools import costs, report
from exitlab.tools import decoderbench as db

NAME = "bench"
HELP = "measure what each way of notifying a device costs the host (table, JSON, plot)"
DESCRIPTION = (
    "Run the built-in notify workloads through every mechanism (PIO, MMIO with the generic Capstone "
    "decode, the C subset decoder, the pv fast path, wildcard MMIO, the hypercall MMIO write, an "
    "assigned I/O port), with the Python and the C engine, live under Unicorn and replayed from "
    "recorded exits. Rows run interleaved, R repeats; the table shows ns/exit (median, min-max), "
    "TSC ticks/exit, the trap/tax split, the ratio to PIO and, beside it, the seed's KVM cycles."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="few exits and repeats (what `make demo` runs)")
    p.add_argument(
        "--exits", type=count_arg(10**8), default=None, metavar="N",
        help="exits per run, 1 .. 10**8 (default 20000; quick 5000)"
    )
    p.add_argument(
        "--repeat", type=count_arg(1000), default=None, metavar="R",
        help="interleaved repeats, 1 .. 1000 (default 5; quick 3)"
    )
    p.add_argument("--engine", choices=("python", "c", "both"), default="both", help="which engine's rows")
    p.add_argument("--mode", choices=("live", "replay", "both"), default="both", help="live, replay, or both")
    p.add_argument("--mechanism", action="append", metavar="NAME", help="only these mechanisms (repeatable)")
    p.add_argument("--json", metavar="FILE", help="write every figure and the environment as JSON")
    p.add_argument(
        "--plot", metavar="FILE.png", help="write a bar chart (trap and tax stacked, seed ratios marked)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--trap",
        choices=(*costs.TRAP_MODES, "all"),
        default="mixed",
        help="how exits are trapped: mixed (default: PIO in a hook, MMIO and vmcall stop the engine), exit "
        "(every kind stops the engine), hook (every kind handled in a hook at the exact RIP), all (the "
        "three side by side); exit and hook add C live rows and a trap-parity table",
    )
    p.add_argument(
        "--decoders",
        action="store_true",
        help="instead: the instruction-decoder benchmark (exitlab length and subset, Capstone, iced-x86) "
        "on real .text",
    )
    p.add_argument(
        "--binary",
        action="append",
        metavar="PATH",
        help="with --decoders: an x86 ELF whose .text to decode (repeatable; default: this machine's libc "
        "and libpython)",
    )


def run(args: argparse.Namespace) -> int:
    if args.decoders:
        return run_decoders(args)
    if args.binary:
        raise ExitlabError("--binary goes with --decoders")
    # outputs and the plotting extra are checked before measuring, not after (docs/robustness.md)
    json_out = OutputFile(args.json, "--json") if args.json is not None else None
    plot_out = OutputFile(args.plot, "--plot", inputs=(args.json or "",)) if args.plot is not None else None
    plot_fmt = plot_format(args.plot) if args.plot is not None else None
    exits = args.exits if args.exits is not None else (5000 if args.quick else 20000)
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    if exits < 1 or repeat < 1:
        raise ExitlabError("--exits and --repeat must be positive")
    mechs = list(costs.MECHANISMS)
    if args.mechanism:
        unknown = sorted(set(args.mechanism) - set(costs.MECHANISM_NAMES))
        if unknown:
            known = ", ".join(costs.MECHANISM_NAMES)
            raise ExitlabError(f"unknown mechanism(s) {', '.join(unknown)}; one of {known}")
        mechs = [m for m in mechs if m.name in args.mechanism]
    engines = ("python", "c") if args.engine == "both" else (args.engine,)
    modes = ("live", "replay") if args.mode == "both" else (args.mode,)
    traps = costs.TRAP_MODES if args.trap == "all" else (args.trap,)
    if args.trap != "mixed" and ("c" not in engines or "live" not in modes):
        raise ExitlabError(
            f"--trap {args.trap} measures C engine live rows: drop --engine python / --mode replay"
        )
    total = repeat * len(costs.plan_rows(mechs, engines, modes, traps))
    bar = None
    if not args.no_progress and sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None:
        from tqdm import tqdm  # the `bench` extra; without it, no progress bar (never a crash)

        bar = tqdm(total=total, desc="bench", unit="row", file=sys.stderr, leave=False)

    def tick(key: str) -> None:
        if bar is not None:
            bar.set_postfix_str(key)
            bar.update(1)

    try:
        sweep = costs.run_sweep(exits, repeat, mechs, engines, modes, progress=tick, traps=traps)
    finally:
        if bar is not None:
            bar.close()
    print(report.table(sweep))
    if json_out is not None:
        with json_out.writing_path() as tmp:
            report.write_json(sweep, tmp)
        print(f"wrote {args.json}")
    if plot_out is not None:
        # rendered in memory and written by exitlab: PIL does not report a failed write (/dev/full)
        image = io.BytesIO()
        report.plot(sweep, image, format=plot_fmt)
        plot_out.write_bytes(image.getvalue())
        print(f"wrote {args.plot}")
    return 0


def run_decoders(args: argparse.Namespace) -> int:
    """`--decoders`: exitlab.tools.decoderbench over the given (or default) binaries' .text."""
    if args.exits is not None or args.mechanism:
        raise ExitlabError("--exits and --mechanism belong to the exit-cost table, not to --decoders")
    if args.trap != "mixed":
        raise ExitlabError("--trap belongs to the exit-cost table, not to --decoders")
    notes: list[str] = []
    if args.binary:
        paths = list(args.binary)
    else:
        found, notes = db.default_binaries()
        paths = [str(p) for p in found]
        if not paths:
            raise ExitlabError("no default binary found (libc, libpython); give --binary PATH")
    sections = [db.elf_text(p) for p in paths]
    repeat = args.repeat or (1 if args.quick else 3)
    if repeat < 1:
        raise ExitlabError("--repeat must be positive")

    def note(msg: str) -> None:
        if not args.no_progress and sys.stderr.isatty():
            print(f"  {msg}", file=sys.stderr)

    results = db.run(sections, repeat=repeat, progress=note)
    print(db.table(results, sections, notes))
    if args.json:
        db.write_json(results, sections, notes, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        db.plot(results, args.plot)
        print(f"wrote {args.plot}")
    return 0
