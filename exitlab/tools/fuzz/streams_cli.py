"""`exitlab fuzz --streams`: the command-line face of the stream-fuzzing campaign (issue 11)."""

from __future__ import annotations

import argparse
import json
import sys

from exitlab.tools.fuzz.streams_campaign import (
    StreamsConfig,
    replay,
    replay_text,
    run_campaign,
    summary_json,
    summary_text,
    write_reproducers,
)

INTERRUPTED = 130


def run_streams(args: argparse.Namespace) -> int:
    """Exit status: 0 clean, 1 disagreements (or programs that did not assemble), 130 on Ctrl-C."""
    if args.replay:
        return _replay(args)
    config = StreamsConfig(cases=args.cases, seed=args.seed, jobs=args.jobs)
    result = run_campaign(config, progress=not args.json or sys.stderr.isatty())
    paths = write_reproducers(result, args.out) if result.reported else []
    if args.json:
        print(json.dumps(summary_json(result, paths)))
    else:
        print(summary_text(result, paths))
    if result.interrupted:
        print(
            "exitlab fuzz --streams: interrupted; the summary covers the programs run so far", file=sys.stderr
        )
        return INTERRUPTED
    return 0 if result.clean else 1


def _replay(args: argparse.Namespace) -> int:
    result = replay(args.replay)
    bad = bool(result.error) or any(v.kind == "disagree" for v in result.verdicts.values())
    if args.json:
        print(
            json.dumps(
                {
                    "source": result.program.source(),
                    "reference": result.reference.to_json(),
                    "verdicts": {
                        n: {
                            "kind": v.kind,
                            "class": v.cls,
                            "tier": v.tier,
                            "diff": [[k, repr(a), repr(b)] for k, a, b in v.diff],
                        }
                        for n, v in result.verdicts.items()
                    },
                    "error": result.error,
                    "clean": not bad,
                }
            )
        )
    else:
        print(replay_text(result))
    return 1 if bad else 0
