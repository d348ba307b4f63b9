"""Python path benchmarks: the readable reference paths, replayed over the same recorded exits
(so Unicorn's own cost is out of the picture), grouped per path. ns/exit goes to extra_info.

Run: make bench   (or pytest bench/bench_py_paths.py --benchmark-enable --benchmark-only)
"""

from __future__ import annotations

import pytest

from exitlab.tools import costs

EXITS = 2000
MECHS = {m.name: m for m in costs.MECHANISMS if m.py_path is not None}


@pytest.fixture(scope="module")
def records():
    return {name: costs.record_exits(mech, EXITS) for name, mech in MECHS.items()}


@pytest.mark.parametrize("trap", [False, True], ids=["path", "trap"])
@pytest.mark.parametrize("name", sorted(MECHS))
def test_replay_python(benchmark, records, name: str, trap: bool) -> None:
    benchmark.group = f"py:{name}"
    mech = MECHS[name]
    sample = benchmark.pedantic(costs.py_replay, args=(mech, records[name], trap), rounds=5, iterations=1)
    benchmark.extra_info.update({"exits": sample.exits, "ns_per_exit": sample.ns / sample.exits})


@pytest.mark.parametrize("name", ["pio", "pv-fast", "mmio-generic", "hypercall"])
def test_live_python(benchmark, name: str) -> None:
    benchmark.group = f"py-live:{name}"
    mech = MECHS[name]
    sample = benchmark.pedantic(costs.py_live, args=(mech, 500), rounds=3, iterations=1)
    benchmark.extra_info.update({"exits": sample.exits, "ns_per_exit": sample.ns / sample.exits})
