"""`exitlab run`: run a guest on the default platform and report its exits."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from emu import guests
from emu.assemble import GuestImage, assemble, load_guest, source_mode
from emu.board import Board, default_board
from emu.errors import ExitlabError
from emu.inputs import decode_text, read_stdin
from emu.kvm import run_machine_kvm
from emu.limits import STDIN_SOURCE_MAX, max_insns_arg, timeout_arg
from emu.machine import Machine, MmioStyle, RunResult
from emu.outfile import OutputFile
from emu.pciboard import pci_board
from emu.trace import TraceWriter
from exitlab.hostio import echo_console
from exitlab.runexit import exit_status, finish_trace, interrupted_result
from fastpath.hostpaths import make_path

NAME = "run"
HELP = "run a guest snippet (.S, raw binary, ELF or built-in name) and show every VM exit it causes"
DESCRIPTION = (
    "Run GUEST on the default platform until hlt, the instruction budget, the timeout or a fault. "
    "GUEST is an Intel-syntax .S/.s file (assembled with GNU as), an ELF file, a raw binary, '-' "
    "for assembly on stdin, or the name of a built-in example (" + ", ".join(guests.names()) + "). "
    "Prints console output, the stop reason, exits by kind and device state; exit status 0 only "
    "when the guest stopped on hlt."
)

# Path names: the first three mean the same on both engines; the C path names select one C path
# directly (pv-fast and capstone are the C names of fast and generic; subset exists only in C).
PATHS = ("inplace", "generic", "fast", "wildcard", "pv-fast", "subset", "capstone")
def add_guest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("guest", metavar="GUEST", help="guest file, '-' for stdin, or a built-in example name")
    p.add_argument(
        "--mode",
        type=int,
        choices=(16, 32, 64),
        default=None,
        help="CPU mode (default: the snippet's `# exitlab: mode=N` line, ELF class, else 64)",
    )
    p.add_argument("--max-insns", type=max_insns_arg, default=None, metavar="N",
                   help="instruction budget, 1 .. 2**63-1")
    p.add_argument("--timeout", type=timeout_arg, default=10.0, metavar="S",
                   help="wall-clock limit, 0 < S <= 10**6 (default 10 s)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_guest_arguments(p)
    p.add_argument(
        "--path",
        choices=PATHS,
        default="inplace",
        help="how MMIO exits are handled: inplace (Unicorn completes the access), generic "
        "(exit style, Capstone decode), fast (exit style, pv fast path, generic fallback), wildcard "
        "(exit style, address-only notify: length decode only); with --engine c also subset (the C "
        "subset decoder, Capstone fallback), pv-fast (= fast) and capstone (= generic: the C generic "
        "path's own name, kept as an alias)",
    )
    p.add_argument(
        "--engine",
        choices=("python", "c", "kvm"),
        default="python",
        help="python hooks, the C extension's hooks (see `--path` for C path names), or real KVM "
        "(/dev/kvm; the kernel decodes MMIO itself, so --path does not apply; see docs/kvm.md)",
    )
    p.add_argument("--trace", metavar="FILE", help="write every exit as JSON Lines (schema exitlab-trace v1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="add a PCI bus with N virtio-style devices, each behind its own root port "
                        "(config space at 0xCF8/0xCFC; see docs/pci.md); default: no PCI bus")
    p.add_argument("--pci-offers", default="rotate", metavar="POLICY",
                   help="what the PCI devices offer: rotate (all five mechanisms across devices), all, "
                        "ports, iobar, mmio (default rotate; needs --devices)")


def resolve_guest(arg: str, mode: int | None) -> GuestImage:
    if arg == "-":
        text = decode_text(read_stdin(STDIN_SOURCE_MAX, "assembly source"), "<stdin>")
        return assemble(text, mode=mode or source_mode(text) or 64, name="stdin.S")
    if not arg:
        raise ExitlabError("GUEST: empty name (a file, '-' for stdin, or a built-in example)")
    p = Path(arg)
    if not p.exists():
        found = guests.builtin(arg)
        if found is None:
            raise ExitlabError(
                f"{arg}: no such file, and no built-in guest of that name "
                f"(built-ins: {', '.join(guests.names())})"
            )
        p = found
    return load_guest(p, mode=mode)


def format_text(result: RunResult) -> str:
    s = result.stop
    lines = [f"stop: {s.reason.value} at rip={s.rip:#x}: {s.message}"]
    if s.insn and s.is_error:
        lines.append(f"  bytes at rip: {s.insn.hex(' ')}")
    lines.append("exits: " + ", ".join(f"{k}={v}" for k, v in result.exits.items()))
    for name, state in result.devices.items():
        lines.append(f"device {name}: {json.dumps(state, sort_keys=True)}")
    regs = result.regs
    lines.append("regs: " + " ".join(f"{k}={v:#x}" for k, v in regs.items()))
    return "\n".join(lines)


def _echo(text: str) -> None:
    echo_console(text)  # bytes as the guest wrote them; a host stdout error is never a guest fault


def make_board(devices: int | None = None, pci_offers: str = "rotate",
               console_echo: Callable[[str], None] | None = None) -> Board:
    """The default board, or a PCI board with `devices` virtio-style devices."""
    if devices is None:
        return default_board(console_echo=console_echo)
    return pci_board(devices, offers=pci_offers, console_echo=console_echo)


def run_image(
    image: GuestImage,
    board: Board,
    engine: str = "python",
    path: str = "inplace",
    max_insns: int | None = None,
    timeout: float | None = 10.0,
    trace: TraceWriter | None = None,
    keep_records: bool = False,
) -> RunResult:
    """Run `image` on `board` with one engine and MMIO path; what `exitlab run` and `exitlab.run` share.

    `keep_records` keeps every ExitRecord in the result (Python engine only: the C loop records none
    and KVM reports its own)."""
    if engine not in ("python", "c", "kvm"):
        raise ExitlabError(f"unknown engine {engine!r} (python, c, kvm)")
    if path not in PATHS:
        raise ExitlabError(f"unknown path {path!r} ({', '.join(PATHS)})")
    if engine == "kvm" and path != "inplace":
        raise ExitlabError(
            f"--path {path} does not apply to --engine kvm: the kernel decodes every MMIO "
            "instruction itself before the exit reaches exitlab"
        )
    if engine == "kvm":
        return run_machine_kvm(image, board, max_insns, timeout, trace)
    if engine == "c":
        from fastpath.cengine import run_machine_c

        return run_machine_c(image, board, path=path, max_insns=max_insns, timeout=timeout, trace=trace)
    style = MmioStyle.INPLACE if path == "inplace" else MmioStyle.EXIT
    machine = Machine(image, board=board, mmio_style=style, path=make_path(path, board), trace=trace,
                      keep_records=keep_records)
    return machine.run(max_insns=max_insns, timeout=timeout)


def run(args: argparse.Namespace) -> int:
    # every output is checked before the guest is assembled or any engine starts (docs/robustness.md)
    trace_out = OutputFile(args.trace, "--trace", inputs=(args.guest,)) if args.trace is not None else None
    image = resolve_guest(args.guest, args.mode)
    echo = None if args.json else _echo
    if args.devices is None:
        board = default_board(console_echo=echo)
    else:
        board = pci_board(args.devices, offers=args.pci_offers, console_echo=echo)
    if args.engine == "kvm" and args.path != "inplace":
        raise ExitlabError(
            f"--path {args.path} does not apply to --engine kvm: the kernel decodes every MMIO "
            "instruction itself before the exit reaches exitlab"
        )
    trace_path = "kvm" if args.engine == "kvm" else args.path
    trace = None
    if trace_out is not None:
        trace = TraceWriter(trace_out, guest=image.name, mode=image.mode, path=trace_path)
    result: RunResult
    try:
        result = run_image(image, board, args.engine, args.path, args.max_insns, args.timeout, trace)
    except KeyboardInterrupt:
        result = interrupted_result(board)  # an engine without the `interrupted` stop (rule 10)
    except BaseException:
        if trace is not None:
            trace.abort()
        raise
    trace_error = finish_trace(trace)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        if result.console and not result.console.endswith("\n"):
            print()
        print(format_text(result))
    if trace_error is not None:
        raise trace_error
    return exit_status(result)
