"""A fuzz campaign: cases [0, N) of a seed, checked in one or several processes.

Case i depends only on (seed, i), so the campaign is the same whatever `jobs` is; work goes out
in chunks of indices and comes back as tallies that merge in any order (each distinct
disagreement keeps its lowest-index instance). Ctrl-C stops at the next case (or chunk), and
the campaign still reports and saves what it found. Minimization runs in the parent afterwards,
once per distinct unexplained disagreement.
"""

from __future__ import annotations

import functools
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from exitlab.tools.fuzz.case import Case
from exitlab.tools.fuzz.gen import GENERATORS, case_at, load_corpus, make_generators
from exitlab.tools.fuzz.minimize import minimize, still_fails
from exitlab.tools.fuzz.oracles import Checker, Finding
from exitlab.tools.fuzz.pool import run_chunks

DEFAULT_CORPUS = "tests/data/fuzz_corpus"
FAST_CHUNK = 5000  # fast cases per pool task (a few hundred ms of work)


@dataclass(frozen=True, slots=True)
class FuzzConfig:
    cases: int = 10_000
    seed: int = 0
    jobs: int = 1
    generators: tuple[str, ...] = GENERATORS
    corpus: str | None = None
    plant: str | None = None  # tests only: a deliberately wrong generic path (oracles.PLANTS)
    minimize_budget: int = 300
    chunk: int = 250
    # fastrun.py: generation, truth and C oracles in C, the Python Checker on flagged cases and on
    # every `python_every`-th case (0: never); False is the full runner (every case in Python)
    fast: bool = False
    python_every: int = 100
    family: str | None = None  # fastrun only: structured cases restricted to families.FAMILIES[family]


@dataclass
class Tally:
    """What a run of cases produced; mergeable (internal, mutable while a campaign runs)."""

    cases: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    generators: Counter[str] = field(default_factory=Counter)
    forms: Counter[str] = field(default_factory=Counter)
    mmio_forms: set[str] = field(default_factory=set)
    findings: dict[str, tuple[int, Finding, Case]] = field(default_factory=dict)  # signature -> first
    counts: Counter[str] = field(default_factory=Counter)  # signature -> n
    c_status: str = ""
    gen_seconds: dict[str, float] = field(default_factory=dict)  # generator -> seconds spent on its cases

    def spent(self, gen: str, seconds: float) -> None:
        self.gen_seconds[gen] = self.gen_seconds.get(gen, 0.0) + seconds

    def run(self, seed: int, index: int, generators: tuple, checker: Checker) -> None:
        """Generate case `index` and check it, timing both for the per-generator rate."""
        t0 = time.perf_counter()
        case = case_at(seed, index, generators)
        self.add(case, checker)
        self.spent(case.gen, time.perf_counter() - t0)

    def add(self, case: Case, checker: Checker) -> None:
        result = checker.check(case)
        self.cases += 1
        self.generators[case.gen] += 1
        self.outcomes.update(result.outcomes)
        self.forms[result.form] += 1
        if result.touched_mmio:
            self.mmio_forms.add(result.form)
        for f in result.findings:
            self.counts[f.signature] += 1
            if f.signature not in self.findings or case.index < self.findings[f.signature][0]:
                self.findings[f.signature] = (case.index, f, case)

    def merge(self, other: Tally) -> None:
        self.cases += other.cases
        self.outcomes.update(other.outcomes)
        self.generators.update(other.generators)
        self.forms.update(other.forms)
        self.mmio_forms |= other.mmio_forms
        self.counts.update(other.counts)
        for gen, seconds in other.gen_seconds.items():
            self.spent(gen, seconds)
        for sig, item in other.findings.items():
            if sig not in self.findings or item[0] < self.findings[sig][0]:
                self.findings[sig] = item
        self.c_status = self.c_status or other.c_status


@dataclass(frozen=True, slots=True)
class Reported:
    """One distinct disagreement: its first instance, minimized, and how often it occurred."""

    finding: Finding
    count: int
    original: Case
    minimized: Case


@dataclass(frozen=True, slots=True)
class FuzzResult:
    config: FuzzConfig
    tally: Tally
    seconds: float
    interrupted: bool
    reported: tuple[Reported, ...]

    @property
    def unexplained(self) -> tuple[Reported, ...]:
        return tuple(r for r in self.reported if r.finding.explained is None)

    @property
    def cases_per_second(self) -> float:
        return self.tally.cases / self.seconds if self.seconds > 0 else 0.0

    def generator_rates(self) -> dict[str, float]:
        """Cases per second of each generator: its cases over the time spent generating and
        checking them (per process; the campaign's wall-clock rate is cases_per_second)."""
        t = self.tally
        return {g: (n / t.gen_seconds[g] if t.gen_seconds.get(g, 0.0) > 0 else 0.0)
                for g, n in t.generators.items()}


@functools.lru_cache(maxsize=4)
def _worker(plant: str | None, corpus: str | None, gens: tuple[str, ...]) -> tuple[Checker, tuple]:
    """Per-process checker and generators (created once per process, reused for every chunk)."""
    return Checker(plant=plant), make_generators(gens, load_corpus(corpus))


def run_chunk(config: FuzzConfig, start: int, stop: int) -> Tally:
    if config.fast:
        from exitlab.tools.fuzz import fastrun

        tally = Tally()
        fastrun.run_range(config, start, stop, tally)
        return tally
    checker, generators = _worker(config.plant, config.corpus, config.generators)
    tally = Tally(c_status=checker.c_status)
    for i in range(start, stop):
        tally.run(config.seed, i, generators, checker)
    return tally


def _chunks(config: FuzzConfig) -> Iterator[tuple[int, int]]:
    step = max(config.chunk, FAST_CHUNK) if config.fast else config.chunk
    for start in range(0, config.cases, step):
        yield start, min(start + step, config.cases)


def _progress(total: int, enabled: bool) -> Callable[[int], None] | None:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    return bar.update


def run_campaign(config: FuzzConfig, progress: bool | None = None) -> FuzzResult:
    """Run the campaign; never raises on Ctrl-C (the result says `interrupted`)."""
    if progress is None:
        progress = sys.stderr.isatty()
    update = _progress(config.cases, progress)
    tally = Tally()
    t0 = time.perf_counter()
    interrupted = False
    try:
        if config.jobs <= 1 and config.fast:
            from exitlab.tools.fuzz import fastrun

            for start, stop in _chunks(config):
                fastrun.run_range(config, start, stop, tally, update)
        elif config.jobs <= 1:
            checker, generators = _worker(config.plant, config.corpus, config.generators)
            tally.c_status = checker.c_status
            for i in range(config.cases):
                tally.run(config.seed, i, generators, checker)
                if update is not None and i % 50 == 49:
                    update(50)
        else:
            _run_pool(config, tally, update)
    except KeyboardInterrupt:
        interrupted = True
    except BrokenProcessPool:
        # a worker died (a native crash in Unicorn, Capstone or the C extension): keep what the
        # others found, and say so; rerun with --jobs 1 to get the Python-level context
        tally.outcomes[("runner", "worker-crashed")] += 1
        interrupted = True
    seconds = time.perf_counter() - t0
    reported = _report(config, tally, interrupted)
    return FuzzResult(config, tally, seconds, interrupted, reported)


def _run_pool(config: FuzzConfig, tally: Tally, update: Callable[[int], None] | None) -> None:
    def on_part(part: Tally) -> None:
        tally.merge(part)
        if update is not None:
            update(part.cases)

    run_chunks(config.jobs, functools.partial(run_chunk, config), _chunks(config), on_part)


def _report(config: FuzzConfig, tally: Tally, interrupted: bool) -> tuple[Reported, ...]:
    """Minimize each distinct unexplained disagreement (explained ones are kept as found)."""
    out: list[Reported] = []
    checker: Checker | None = None
    stop = interrupted
    for sig in sorted(tally.findings, key=lambda s: tally.findings[s][0]):
        _, finding, case = tally.findings[sig]
        small = case
        if finding.explained is None and not stop:
            checker = checker or Checker(plant=config.plant)
            try:
                small = minimize(case, still_fails(checker, finding), config.minimize_budget)
            except KeyboardInterrupt:
                stop = True
            if small != case:
                again = [
                    f
                    for f in checker.check(small).findings
                    if f.oracle == finding.oracle and f.cls == finding.cls
                ]
                finding = again[0] if again else finding
        out.append(Reported(finding, tally.counts[sig], case, small))
    # variants that minimized to the same disagreement are one finding
    merged: dict[tuple[str, str, bytes, int, str | None], Reported] = {}
    for rep in out:
        key = (
            rep.finding.oracle,
            rep.finding.cls,
            rep.minimized.code,
            rep.minimized.mode,
            rep.finding.explained,
        )
        if key in merged:
            prev = merged[key]
            merged[key] = Reported(prev.finding, prev.count + rep.count, prev.original, prev.minimized)
        else:
            merged[key] = rep
    return tuple(merged.values())
