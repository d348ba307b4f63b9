"""`exitlab fuzz`: differential fuzzing of every exitlab path against Unicorn (issue 7)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emu.errors import UsageError
from emu.limits import count_arg
from emu.outfile import check_output_dir
from exitlab.boundary import EXIT_INTERRUPTED
from exitlab.tools.fuzz.corpuscheck import check_corpus
from exitlab.tools.fuzz.families import FAMILIES
from exitlab.tools.fuzz.gen import GENERATORS
from exitlab.tools.fuzz.report import replay, summary_json, summary_text, write_reproducers
from exitlab.tools.fuzz.runner import DEFAULT_CORPUS, FuzzConfig, run_campaign
from exitlab.tools.fuzz.streams_cli import run_streams

NAME = "fuzz"
HELP = "fuzz the generic, C and fast paths against Unicorn and iced-x86"
DESCRIPTION = (
    "Generate seeded cases (instruction bytes + CPU state aimed at an MMIO window), run each in "
    "Unicorn as ground truth and through the generic path, the C subset/Capstone/pv-fast paths, the "
    "C subset decoder, the Python fast path and the C length function (against iced-x86); classify, "
    "minimize and save every distinct disagreement. Exit status 0 when nothing unexplained was found, "
    "1 otherwise. --replay FILE re-runs one saved reproducer."
)


def _gens(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in GENERATORS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"generators are {', '.join(GENERATORS)} (got {text!r})")
    return names


def _positive(text: str) -> int:
    value = int(text, 0)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", type=_positive, default=10_000, help="number of cases (default 10000)")
    parser.add_argument("--seed", type=lambda s: int(s, 0), default=0, help="campaign seed (default 0)")
    parser.add_argument("--jobs", type=count_arg(256), default=1,
                        help="worker processes, 1 .. 256 (default 1)")
    parser.add_argument(
        "--gen",
        type=_gens,
        default=GENERATORS,
        metavar="LIST",
        help=f"comma-separated generators (default {','.join(GENERATORS)})",
    )
    parser.add_argument(
        "--corpus",
        default=None,
        metavar="DIR",
        help="cases for the corpus generator (default tests/data/fuzz_corpus when present)",
    )
    parser.add_argument(
        "--out",
        default="fuzz-out",
        metavar="DIR",
        help="where reproducers are written (default fuzz-out; created only when needed)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the text summary"
    )
    parser.add_argument("--replay", metavar="FILE", help="re-run one reproducer file and exit")
    # issue 15: the fast runner (exitlab/tools/fuzz/fastrun.py) is the default when the C extension is there
    parser.add_argument("--python-every", type=lambda s: int(s, 0), default=100, metavar="N",
                        help="fast runner: also run the Python generic and fast paths on every Nth case "
                        "(0: never; default 100)")
    parser.add_argument("--full", action="store_true",
                        help="check every case through every oracle in Python (the reference runner, "
                        "~30x slower); the default is the fast runner when the C extension is built")
    parser.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        default=None,
        help="fast runner: restrict the structured generator to one instruction family "
        "(exitlab/tools/fuzz/families.py; implies --gen structured unless --gen is given)",
    )
    parser.add_argument(
        "--streams",
        action="store_true",
        help="fuzz whole guest programs through every engine x path (and KVM when usable) against an "
        "independent reference instead of single instructions (docs/fuzzing-streams.md)",
    )


def _fast_available() -> bool:
    try:
        from exitlab.tools.fuzz import fastrun
    except Exception:  # noqa: BLE001 - no C extension: the full runner (which says why in c_extension)
        return False
    return fastrun.available()


def _replay(args: argparse.Namespace) -> int:
    case, findings, outcomes = replay(args.replay)
    unexplained = [f for f in findings if f.explained is None]
    if args.json:
        print(
            json.dumps(
                {
                    "case": case.to_json(),
                    "outcomes": [list(o) for o in outcomes],
                    "findings": [
                        {
                            "oracle": f.oracle,
                            "class": f.cls,
                            "detail": f.detail,
                            "explained": f.explained,
                            "expected": dict(f.expected),
                            "got": dict(f.got),
                        }
                        for f in findings
                    ],
                    "clean": not unexplained,
                }
            )
        )
    else:
        print(case.describe())
        for oracle, outcome in outcomes:
            print(f"  {oracle:17} {outcome}")
        for f in findings:
            tag = f"explained ({f.explained})" if f.explained else "UNEXPLAINED"
            print(f"[{tag}] {f.oracle} {f.cls}: {f.detail}")
            print(f"    expected: {json.dumps(dict(f.expected))}")
            print(f"    got:      {json.dumps(dict(f.got))}")
        print("still disagrees" if unexplained else "no unexplained disagreement")
    return 1 if unexplained else 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "streams", False):
        return run_streams(args)
    if args.replay is not None:  # `--replay ""` is a bad file name, not "no replay"
        return _replay(args)
    corpus = args.corpus
    if corpus is None and "corpus" in args.gen and Path(DEFAULT_CORPUS).is_dir():
        corpus = DEFAULT_CORPUS
    check_output_dir(args.out, "--out")
    if corpus is not None:
        check_corpus(corpus, "corpus" in args.gen)  # before the campaign: missing dir, corrupt files
    if args.python_every < 0:
        raise UsageError(f"--python-every must be 0 or more (got {args.python_every})")
    fast = not args.full and _fast_available()
    generators = args.gen
    if args.family is not None:
        if not fast:
            raise UsageError("--family needs the fast runner (the C extension, and no --full)")
        if generators == GENERATORS:
            generators = ("structured",)
        if "structured" not in generators:
            raise UsageError("--family restricts the structured generator: include it in --gen")
    config = FuzzConfig(cases=args.cases, seed=args.seed, jobs=args.jobs, generators=generators,
                        corpus=corpus, fast=fast, python_every=args.python_every, family=args.family)
    result = run_campaign(config)
    paths = write_reproducers(result, args.out) if result.reported else []
    if args.json:
        print(json.dumps(summary_json(result, paths)))
    else:
        print(summary_text(result, paths))
    if result.interrupted:
        print(f"exitlab fuzz: interrupted after {result.tally.cases} of {args.cases} cases; "
              "the summary covers only those", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if result.unexplained else 0
