"""Fuzzer throughput (issue 15): cases/s of the fast runner with the C oracles only, with the Python
paths on every Nth case, per generator, and the full Python runner for comparison.  cases/s goes
to `benchmark.extra_info` (one process; the machine's other load counts too).

Run: pytest bench/bench_fuzz.py --benchmark-enable --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import pytest

from exitlab.tools.fuzz.gen import GENERATORS
from exitlab.tools.fuzz.runner import FuzzConfig, run_campaign

CORPUS = "tests/data/fuzz_corpus"


def _campaign(benchmark, cases: int, **kw) -> None:
    def run():
        return run_campaign(FuzzConfig(cases=cases, seed=1, jobs=1, corpus=CORPUS, **kw), progress=False)

    result = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(
        {"cases": result.tally.cases, "cases_per_s": round(result.cases_per_second, 1),
         "per_generator": {g: round(v, 1) for g, v in result.generator_rates().items()}}
    )


@pytest.mark.benchmark(group="fuzz")
def test_fast_c_oracles_only(benchmark) -> None:
    _campaign(benchmark, 20_000, fast=True, python_every=0)


@pytest.mark.benchmark(group="fuzz")
@pytest.mark.parametrize("every", [100, 20])
def test_fast_python_every(benchmark, every: int) -> None:
    _campaign(benchmark, 20_000, fast=True, python_every=every)


@pytest.mark.benchmark(group="fuzz-generator")
@pytest.mark.parametrize("gen", GENERATORS)
def test_fast_per_generator(benchmark, gen: str) -> None:
    _campaign(benchmark, 10_000, fast=True, python_every=0, generators=(gen,))


@pytest.mark.benchmark(group="fuzz")
def test_full_python_runner(benchmark) -> None:
    _campaign(benchmark, 1_000, fast=False)
