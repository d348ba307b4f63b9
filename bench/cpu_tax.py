"""Per-exit cost of the C live rows in thread CPU time, for a machine too loaded for wall clocks.

`exitlab bench` times each run with a monotonic clock, so on a shared machine every preemption lands
in some row (a 3 ms run descheduled once gains ~300 ns per exit). Unicorn and the C hooks run in the
calling thread, so its CPU time (CLOCK_THREAD_CPUTIME_ID) leaves other processes out; the slope
between a run of N1 and one of N2 exits leaves the run's setup out. Prints, per trap mode, the
median over R rounds of path, trap baseline, tax and ratio to the PIO row trapped the same way.

    python bench/cpu_tax.py [--rounds R] [--trap mixed,exit,hook] [--mechanism NAME ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

from emu.exits import ExitKind
from emu.machine import Machine, MmioStyle
from exitlab.tools import costs
from fastpath import cengine

N1, N2 = 20_000, 120_000


def cpu_ns(mech: costs.Mechanism, kicks: int, trap: bool, trap_mode: str) -> int:
    """Thread CPU ns of one C live run (as costs.c_live, timed from Python around the C call)."""
    style, pio_hc = costs.C_TRAPS[trap_mode]
    image = costs.workload_image(mech, kicks, trap)
    m = Machine(image, board=costs.bench_board(), mmio_style=MmioStyle(style))
    m.init_regs()
    ctx = costs._c_ctx(mech)
    path = "trap" if trap and mech.kind is ExitKind.MMIO_WRITE else (mech.c_path or "")
    t0 = time.thread_time_ns()
    res = cengine.run_live(
        m, path=path, style=style, timeout=600, ctx=ctx, start_rip=m.image.entry, trap=pio_hc
    )
    t1 = time.thread_time_ns()
    if res.stop != "hlt":
        raise SystemExit(f"{mech.name} ({trap_mode}): stopped {res.stop} at {res.rip:#x}")
    return t1 - t0


def per_exit(mech: costs.Mechanism, trap: bool, trap_mode: str) -> float:
    return (cpu_ns(mech, N2, trap, trap_mode) - cpu_ns(mech, N1, trap, trap_mode)) / (N2 - N1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--trap", default="mixed", help="comma-separated trap modes (mixed, exit, hook)")
    ap.add_argument("--mechanism", action="append", help="default: every mechanism with a C path")
    args = ap.parse_args()
    traps = args.trap.split(",")
    names = args.mechanism or [m.name for m in costs.MECHANISMS if m.c_path is not None]
    mechs = [m for m in costs.MECHANISMS if m.name in set(names) | {"pio"}]
    got: dict[tuple[str, str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for tm in traps:
            for mech in mechs:
                for trap in (False, True):
                    got.setdefault((mech.name, tm, trap), []).append(per_exit(mech, trap, tm))
    print(f"thread CPU ns per exit, median of {args.rounds} rounds (slope {N1}..{N2} exits)")
    print(f"{'mechanism':<14}" + "".join(f" | {tm:^29}" for tm in traps) + " | seed xPIO")
    print(f"{'':<14}" + " | ns/exit   trap    tax   xPIO" * len(traps))
    for mech in mechs:
        cells = []
        for tm in traps:
            tot, base = got[(mech.name, tm, False)], got[(mech.name, tm, True)]
            p, t = statistics.median(tot), statistics.median(base)
            tax = statistics.median(a - b for a, b in zip(tot, base, strict=True))
            pio = statistics.median(got[("pio", tm, False)])
            cells.append(f"{p:7.0f} {t:6.0f} {tax:6.1f} {p / pio:6.2f}")
        seed = costs.seed_ratio(mech)
        ref = "-" if seed is None else f"{seed:.2f}"
        print(f"{mech.name:<14}" + "".join(f" | {c}" for c in cells) + f" | {ref:>9}")


if __name__ == "__main__":
    main()
