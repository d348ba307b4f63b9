"""The fast campaign: cases generated, run and compared in C, the Python Checker only where needed.

`exitlab fuzz` spends almost all of its time outside the code under test when every case goes
through Python (generation, iced-x86, the Python paths). Here a chunk of cases is one call into
fastpath/csrc/fuzzcore.c (`xl_fz_batch_run`): generators, the register-state solver, the Unicorn
truth on a reused engine, and the C oracles (length, subset decoder, subset / Capstone / pv-fast
paths). C only *flags* a case that looks wrong; the Python `Checker` then re-runs it and decides,
so classes, the allow-list of known deviations (explain.py), minimization and reproducers mean
exactly what they mean in the full runner. Every `python_every`-th case of each generator also
goes through the whole Checker (the generic and fast Python paths), and a case the Checker finds
wrong that C did not flag is counted under ("runner", "missed-by-c") — a bug of fuzzcore's
comparisons.

Case i depends only on (seed, i) (a splitmix64 stream per case in C), whatever the chunking or
the number of processes; it is not the case i of the full runner (a different generator stream).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import capstone  # noqa: F401  (loads libcapstone before the extension)
import unicorn  # noqa: F401  (loads libunicorn before the extension)
from fastpath._exitlab_c import ffi, lib

from emu.exits import GPR_NAMES
from exitlab.tools.fuzz.case import Case
from exitlab.tools.fuzz.ctruth import pack_case
from exitlab.tools.fuzz.families import packed
from exitlab.tools.fuzz.gen import GENERATORS, load_corpus
from exitlab.tools.fuzz.oracles import Checker

GEN_IDS = {name: i for i, name in enumerate(GENERATORS)}  # the order of enum xl_fz_gen
C_ORACLES = ("length", "c-subset-decoder", "c-subset", "c-capstone", "c-pv-fast")  # enum xl_fz_oracle
PY_ORACLES = frozenset({"generic", "fast", "unicorn-vs-iced"})
# enum xl_fz_outcome, as the full runner names the outcome (per oracle where it differs)
_OUTCOMES = ("agree", "declined", "status", "suspect", "both-invalid", "not-compared", "accepted")
_SKIPS = {1: "skipped-self-modifying", 2: "skipped-long-rep", 3: "skipped-unicorn-aborts",
          4: "skipped-engine-layout"}
DEFAULT_PYTHON_EVERY = 100
BATCH = 1000


def outcome_name(oracle: int, code: int) -> str:
    if oracle == 0 and code == 1:
        return "unknown"  # oracles.py: the C length function declined bytes iced-x86 decodes
    return _OUTCOMES[code]


def case_from_c(c: Any, index: int) -> Case:
    """The Case a `struct xl_fz_case` holds (the Python Checker and reproducers use this)."""
    mode = int(c.mode)
    regs = {name: int(c.regs[i]) for i, name in enumerate(GPR_NAMES[: 16 if mode == 64 else 8])}
    regs["rflags"] = int(c.regs[17])
    regs["fs_base"], regs["gs_base"] = int(c.regs[18]), int(c.regs[19])
    xmm = {i: int(c.xmm[i][0]) | int(c.xmm[i][1]) << 64 for i in range(int(c.n_xmm))}
    return Case.make(
        bytes(c.code)[: int(c.len)], mode, regs, (int(c.mmio_base), int(c.mmio_size)), int(c.read_value),
        xmm, int(c.regs[16]), GENERATORS[int(c.gen)], index,
    )


class FastWorker:
    """Per process: the C batch runner, the packed corpus, the Python Checker and buffers."""

    def __init__(self, generators: tuple[str, ...], corpus: str | None, plant: str | None,
                 family: str | None = None) -> None:
        raw = lib.xl_fz_batch_new()
        if raw == ffi.NULL:
            raise MemoryError("xl_fz_batch_new")
        self.batch = ffi.gc(raw, lib.xl_fz_batch_free)
        if family is not None:  # --family: the structured generator draws only that family's forms
            templates, count = packed(family)
            self._templates = ffi.from_buffer(templates)
            if lib.xl_fz_batch_family(self.batch, self._templates, count) != 0:
                raise ValueError(f"family {family!r} has too many templates")
        self.gens = bytes(GEN_IDS[g] for g in generators)
        usable = [c for c in load_corpus(corpus) if c.mode in (32, 64)] if "corpus" in generators else []
        self.corpus = ffi.new("struct xl_fz_case[]", max(len(usable), 1))
        for i, c in enumerate(usable):
            pack_case(c, self.corpus[i])
        self.ncorpus = len(usable)
        self.checker = Checker(plant=plant)
        self.cases = ffi.new("struct xl_fz_case[]", BATCH)
        self.out = ffi.new("struct xl_fz_out[]", BATCH)


@functools.lru_cache(maxsize=4)
def worker(generators: tuple[str, ...], corpus: str | None, plant: str | None,
           family: str | None = None) -> FastWorker:
    return FastWorker(generators, corpus, plant, family)


def run_range(config: Any, start: int, stop: int, tally: Any, update: Any = None) -> None:
    """Cases [start, stop) of the campaign into `tally` (a runner.Tally), BATCH at a time."""
    w = worker(config.generators, config.corpus, config.plant, getattr(config, "family", None))
    every = config.python_every
    tally.c_status = tally.c_status or w.checker.c_status
    for lo in range(start, stop, BATCH):
        n = min(BATCH, stop - lo)
        st = ffi.new("struct xl_fz_stats *")
        if lib.xl_fz_batch_run(w.batch, config.seed & ((1 << 64) - 1), lo, n, w.gens, len(w.gens), w.corpus,
                               w.ncorpus, w.cases, w.out, st) != 0:
            raise RuntimeError("the C fuzz core could not open Capstone")
        _absorb_stats(tally, st)
        for k in range(n):
            o = w.out[k]
            index = lo + k
            # every Nth case *of each generator* (they take turns: index % N alone would give the
            # Python paths one generator's cases whenever N is a multiple of their number)
            full = every > 0 and (index // len(w.gens)) % every == 0
            if o.skip:
                tally.outcomes[("truth", _SKIPS.get(int(o.skip), "skipped"))] += 1
                continue
            if not (o.suspect or full):
                continue
            t0 = time.perf_counter()
            case = case_from_c(w.cases[k], index)
            # a flagged C capstone refusal is judged against the generic path (oracles._c_should_have_run)
            c_refused = bool(o.suspect >> C_ORACLES.index("c-capstone") & 1)
            result = w.checker.check(case, python=full or c_refused)
            flagged = {C_ORACLES[b] for b in range(len(C_ORACLES)) if o.suspect >> b & 1}
            keep = flagged | (PY_ORACLES if full else set())
            tally.outcomes.update(x for x in result.outcomes if x[0] in keep)
            tally.forms[result.form] += 1
            if result.touched_mmio:
                tally.mmio_forms.add(result.form)
            for f in result.findings:
                if f.oracle in C_ORACLES and f.oracle not in flagged:
                    tally.outcomes[("runner", "missed-by-c")] += 1
                tally.counts[f.signature] += 1
                if f.signature not in tally.findings or index < tally.findings[f.signature][0]:
                    tally.findings[f.signature] = (index, f, case)
            tally.spent(case.gen, time.perf_counter() - t0)
        if update is not None:
            update(n)


def _absorb_stats(tally: Any, st: Any) -> None:
    for g, name in enumerate(GENERATORS):
        n = int(st.cases[g])
        if n:
            tally.cases += n
            tally.generators[name] += n
            tally.spent(name, int(st.ns[g]) / 1e9)
            tally.outcomes[("runner", "flagged-by-c")] += int(st.flagged[g])
    for o, oracle in enumerate(C_ORACLES):
        for code in range(len(_OUTCOMES)):
            v = int(st.outcomes[o][code])
            if v:
                tally.outcomes[(oracle, outcome_name(o, code))] += v


def available() -> bool:
    """True when the extension has the fuzz core (always, once built from this tree)."""
    return hasattr(lib, "xl_fz_batch_run")
