"""`exitlab ioplan`: the I/O-space arithmetic behind the seed's "at most 15" and "~2000"."""

from __future__ import annotations

import argparse
import json

from emu.ioplan import format_text, plan

NAME = "ioplan"
HELP = "show how many hot-pluggable devices get I/O BARs, assigned 2-byte ports and MMIO notify windows"
DESCRIPTION = (
    "Model a PCIe topology where each hot-pluggable device sits behind its own root or downstream "
    "port (a PCI-to-PCI bridge with a 4 KiB-aligned I/O window and a 1 MiB-granular memory window), "
    "with ports 0-0xFFF reserved for legacy devices, and report for N devices how many get an I/O "
    "BAR, how many get an assigned 2-byte port from a reserved 4 KiB range, and how many MMIO notify "
    "windows fit. Every limit is printed with its formula."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=64, metavar="N", help="hot-pluggable devices (default 64)")
    p.add_argument("--queues", type=int, default=4, metavar="Q", help="queues per device (default 4)")
    p.add_argument(
        "--multiplier",
        type=int,
        default=4,
        metavar="M",
        help="virtio notify_off_multiplier in bytes (default 4)",
    )
    p.add_argument("--json", action="store_true", help="print the same numbers as one JSON object")


def run(args: argparse.Namespace) -> int:
    result = plan(args.devices, queues=args.queues, notify_off_multiplier=args.multiplier)
    print(json.dumps(result.to_json(), sort_keys=True) if args.json else format_text(result))
    return 0
