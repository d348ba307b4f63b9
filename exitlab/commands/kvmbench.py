"""`exitlab kvm-bench`: the seed's cycles-per-notification table, measured on real KVM."""

from __future__ import annotations

import argparse
import json

from emu.limits import count_arg
from emu.outfile import OutputFile
from exitlab.tools.kvmcosts import format_table, run_kvm_costs

NAME = "kvm-bench"
HELP = "measure guest cycles per PIO, MMIO, hypercall and ioeventfd notification on real KVM (/dev/kvm)"
DESCRIPTION = (
    "Run guest loops of N identical notifications under real KVM, timed by the guest with rdtsc, and "
    "print cycles per transaction beside the seed's reference numbers: PIO and MMIO handled in "
    "userspace (KVM_EXIT_IO, KVM_EXIT_MMIO after the kernel's decode), the vendor's native hypercall "
    "(answered in the kernel), and in-kernel ioeventfds (PIO, MMIO with datamatch, MMIO of any length). "
    "Needs a usable /dev/kvm. See docs/kvm.md."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exits", type=count_arg(10**8), default=5000, metavar="N",
                   help="transactions per run, 1 .. 10**8 (default 5000)")
    p.add_argument("--repeat", type=count_arg(1000), default=5, metavar="R",
                   help="runs per mechanism, 1 .. 1000, median reported")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this mechanism (repeatable)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    json_out = OutputFile(args.json, "--json") if args.json is not None else None  # checked before measuring
    report = run_kvm_costs(exits=args.exits, repeat=args.repeat, names=args.only)
    print(format_table(report))
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 0
