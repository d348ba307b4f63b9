"""Stream-fuzzing throughput: programs per second per core (one process), and where the time goes.

- `campaign`: generate + assemble + reference + every configuration + compare, per program;
- `reference`: the independent reference run alone; `assemble`: GNU as + ld per program;
- `config[NAME]`: one configuration's run alone.
programs/s goes to extra_info. Run: make bench (or pytest bench/bench_streams.py --benchmark-enable
--benchmark-only).
"""

from __future__ import annotations

import pytest

from exitlab.tools.fuzz.streams_campaign import StreamsConfig, image_of, run_campaign
from exitlab.tools.fuzz.streams_compare import applies
from exitlab.tools.fuzz.streams_gen import generate
from exitlab.tools.fuzz.streams_ref import reference
from exitlab.tools.fuzz.streams_run import ALL_CONFIGS, runners

PROGRAMS = 20
SEED = 1


@pytest.fixture(scope="module")
def images():
    programs = [generate(SEED, i) for i in range(PROGRAMS)]
    return [(p, image_of(p)) for p in programs]


def test_campaign(benchmark) -> None:
    benchmark.group = "streams"

    def run() -> None:
        run_campaign(StreamsConfig(cases=PROGRAMS, seed=SEED), progress=False, minimize_found=False)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["programs_per_second"] = PROGRAMS / benchmark.stats.stats.median


def test_assemble(benchmark) -> None:
    benchmark.group = "streams"
    programs = [generate(SEED, i) for i in range(PROGRAMS)]
    benchmark.pedantic(lambda: [image_of(p) for p in programs], rounds=3, iterations=1)
    benchmark.extra_info["programs_per_second"] = PROGRAMS / benchmark.stats.stats.median


def test_reference(benchmark, images) -> None:
    benchmark.group = "streams"
    benchmark.pedantic(lambda: [reference(img, p.max_insns) for p, img in images], rounds=3, iterations=1)
    benchmark.extra_info["programs_per_second"] = PROGRAMS / benchmark.stats.stats.median


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_config(benchmark, images, name: str) -> None:
    run = runners((name,)).get(name)
    if run is None:
        pytest.skip(f"{name} is not usable here")
    benchmark.group = "streams-config"
    mine = [(p, img) for p, img in images if applies(name, p)]  # KVM: no budget, no hypercall
    benchmark.pedantic(lambda: [run(img, p.max_insns) for p, img in mine], rounds=3, iterations=1)
    benchmark.extra_info["programs_per_second"] = len(mine) / benchmark.stats.stats.median
