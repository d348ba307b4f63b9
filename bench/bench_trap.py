"""Trap parity benchmarks (`exitlab bench --trap`): the C live rows of the exit-cost table with every
kind of exit trapped the same way -- "mixed" (today: PIO in its hook, MMIO and vmcall stop the
engine), "exit" (every kind stops the engine and restarts), "hook" (every kind handled inside a hook
at the exact RIP, MMIO in place).  Each benchmark is one live run of 20 000 exits through the path,
and its count-only trap baseline; ns/exit, trap ns and tax go to `benchmark.extra_info`.

Run: pytest bench/bench_trap.py --benchmark-enable --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import pytest

from exitlab.tools import costs

EXITS = 20_000
MECHS = ["pio", "mmio-generic", "mmio-subset", "pv-fast", "hypercall"]


def _mech(name: str) -> costs.Mechanism:
    return next(m for m in costs.MECHANISMS if m.name == name)


@pytest.mark.parametrize("trap_mode", costs.TRAP_MODES)
@pytest.mark.parametrize("name", MECHS)
def test_trap_mode(benchmark, name: str, trap_mode: str) -> None:
    benchmark.group = f"trap:{trap_mode}"
    mech = _mech(name)
    base = costs.c_live(mech, EXITS, trap=True, trap_mode=trap_mode)
    sample = benchmark.pedantic(
        lambda: costs.c_live(mech, EXITS, trap_mode=trap_mode), rounds=5, iterations=1
    )
    total, trap = sample.ns / sample.exits, base.ns / base.exits
    benchmark.extra_info.update(
        {"exits": sample.exits, "ns_per_exit": total, "trap_ns": trap, "tax_ns": total - trap,
         "trap": trap_mode}
    )
