"""A stream-fuzzing campaign: programs [0, N) of a seed, each through every configuration.

Program i depends only on (seed, i), so a campaign is the same for any --jobs; tallies merge in any
order and every distinct disagreement class keeps its lowest-index program. Ctrl-C stops between
programs and the summary covers what ran. Minimization runs afterwards in the parent, once per
distinct class, and writes repro_N.S (+ repro_N.json) files.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emu.assemble import GuestImage, assemble
from emu.errors import ExitlabError
from exitlab.tools.fuzz.pool import run_chunks
from exitlab.tools.fuzz.streams_compare import Comparator, ProgramResult, Verdict
from exitlab.tools.fuzz.streams_gen import Program, generate, parse_program
from exitlab.tools.fuzz.streams_minimize import minimize
from exitlab.tools.fuzz.streams_run import ALL_CONFIGS, Outcome, Runner, c_aliases, kvm_skip_reason, runners

KINDS = ("agree", "decline", "n/a", "disagree")


@dataclass(frozen=True, slots=True)
class StreamsConfig:
    cases: int = 1000
    seed: int = 0
    jobs: int = 1
    configs: tuple[str, ...] = ALL_CONFIGS
    minimize_budget: int = 250
    chunk: int = 50
    plant: Callable[[dict[str, Runner]], dict[str, Runner]] | None = None  # tests: wrap runners


def image_of(program: Program) -> GuestImage:
    return assemble(program.source(), mode=program.mode, name="stream.S")


@dataclass
class Tally:
    programs: int = 0
    errors: int = 0
    kinds: dict[str, Counter[str]] = field(default_factory=dict)  # config -> kind -> n
    classes: Counter[str] = field(default_factory=Counter)  # signature -> n
    first: dict[str, tuple[int, Program, Verdict]] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)

    def add(self, index: int, result: ProgramResult) -> None:
        self.programs += 1
        if result.error:
            self.errors += 1
            if len(self.error_examples) < 5:
                self.error_examples.append(f"program {index}: {result.error}")
            return
        for name, v in result.verdicts.items():
            self.kinds.setdefault(name, Counter())[v.kind] += 1
            if v.kind == "disagree":
                self.classes[v.signature] += 1
                if v.signature not in self.first or index < self.first[v.signature][0]:
                    self.first[v.signature] = (index, result.program, v)

    def merge(self, other: Tally) -> None:
        self.programs += other.programs
        self.errors += other.errors
        for name, c in other.kinds.items():
            self.kinds.setdefault(name, Counter()).update(c)
        self.classes.update(other.classes)
        for sig, item in other.first.items():
            if sig not in self.first or item[0] < self.first[sig][0]:
                self.first[sig] = item
        self.error_examples += other.error_examples[: max(0, 5 - len(self.error_examples))]


def check_program(
    comparator: Comparator, program: Program, configs: tuple[str, ...] | None = None
) -> ProgramResult:
    try:
        image = image_of(program)
    except ExitlabError as exc:
        return ProgramResult(program, Outcome("reference", "none", 0), error=f"does not assemble: {exc}")
    try:
        return comparator.check(program, image, configs)
    except Exception as exc:  # noqa: BLE001 - the reference itself failed: report, never crash a campaign
        return ProgramResult(
            program, Outcome("reference", "none", 0), error=f"reference failed: {type(exc).__name__}: {exc}"
        )


@functools.lru_cache(maxsize=2)
def _comparator(configs: tuple[str, ...]) -> Comparator:
    return Comparator(runners(configs), c_aliases(configs))


def make_comparator(config: StreamsConfig) -> Comparator:
    if config.plant is None:
        return _comparator(config.configs)
    return Comparator(config.plant(runners(config.configs)))  # no aliases: a plant may wrap one


def run_chunk(config: StreamsConfig, start: int, stop: int) -> Tally:
    comparator = make_comparator(config)
    tally = Tally()
    for i in range(start, stop):
        tally.add(i, check_program(comparator, generate(config.seed, i)))
    return tally


@dataclass(frozen=True, slots=True)
class Reported:
    signature: str
    tier: str
    count: int
    index: int
    original: Program
    minimized: Program
    verdict: Verdict
    path: str = ""


@dataclass
class CampaignResult:
    config: StreamsConfig
    tally: Tally
    seconds: float
    interrupted: bool
    reported: list[Reported]

    @property
    def rate(self) -> float:
        return self.tally.programs / self.seconds if self.seconds > 0 else 0.0

    @property
    def clean(self) -> bool:
        return not self.tally.classes and not self.tally.errors and not self.interrupted


def _progress(total: int) -> Callable[[int], None]:
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="prog", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
            return bar.update
        except ImportError:
            pass
    state = {"done": 0, "last": time.monotonic()}

    def update(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] >= 10 or state["done"] == total:
            state["last"] = now
            print(f"exitlab fuzz --streams: {state['done']}/{total} programs", file=sys.stderr)

    return update


def run_campaign(config: StreamsConfig, progress: bool = True, minimize_found: bool = True) -> CampaignResult:
    update = _progress(config.cases) if progress else (lambda n: None)
    tally = Tally()
    t0 = time.perf_counter()
    interrupted = False
    try:
        if config.jobs <= 1:
            comparator = make_comparator(config)
            for i in range(config.cases):
                tally.add(i, check_program(comparator, generate(config.seed, i)))
                update(1)
        else:
            _run_pool(config, tally, update)
    except KeyboardInterrupt:
        interrupted = True
    except BrokenProcessPool:
        tally.errors += 1
        tally.error_examples.append("a worker process died (native crash): rerun with --jobs 1")
        interrupted = True
    seconds = time.perf_counter() - t0
    reported = _report(config, tally, minimize_found and not interrupted)
    return CampaignResult(config, tally, seconds, interrupted, reported)


def _run_pool(config: StreamsConfig, tally: Tally, update: Callable[[int], None]) -> None:
    def on_part(part: Tally) -> None:
        tally.merge(part)
        update(part.programs)

    chunks = [(s, min(s + config.chunk, config.cases)) for s in range(0, config.cases, config.chunk)]
    run_chunks(config.jobs, functools.partial(run_chunk, config), chunks, on_part)


def still_fails(comparator: Comparator, signature: str) -> Callable[[Program], bool]:
    config = signature.split("|", 1)[0]

    def fails(p: Program) -> bool:
        r = check_program(comparator, p, (config,))
        v = r.verdicts.get(config)
        return not r.error and v is not None and v.signature == signature

    return fails


def _report(config: StreamsConfig, tally: Tally, do_minimize: bool) -> list[Reported]:
    out = []
    comparator = make_comparator(config) if tally.first else None
    done: dict[int, list[Program]] = {}  # program index -> programs minimized from it
    for sig in sorted(tally.first, key=lambda s: (tally.first[s][0], s)):
        index, program, verdict = tally.first[sig]
        small = program
        if do_minimize and comparator is not None:
            fails = still_fails(comparator, sig)
            try:
                # the same root cause usually shows in several configurations: start from a program
                # already minimized from the same original when it shows this class too
                start = next((p for p in done.get(index, []) if fails(p)), program)
                small = minimize(start, fails, config.minimize_budget)
                done.setdefault(index, []).append(small)
            except KeyboardInterrupt:
                do_minimize = False
        out.append(Reported(sig, verdict.tier, tally.classes[sig], index, program, small, verdict))
    return out


# -------------------------------------------------------------------------------- reproducers
def repro_header(rep: Reported, now: Verdict | None = None, limit: int = 10) -> list[str]:
    v = now if now is not None and now.kind == "disagree" else rep.verdict
    head = [
        f"exitlab fuzz --streams reproducer: configuration {v.config} disagrees with the reference",
        f"class: {v.cls}   tier: {rep.tier}   seen in {rep.count} program(s); first: {rep.original.origin}",
        "difference in this program (field: reference -> configuration):",
    ]
    for name, a, b in v.diff[:limit]:
        head.append(f"  {name}: {_short(a)} -> {_short(b)}")
    head.append(f"replay: exitlab fuzz --streams --replay {Path(rep.path).name if rep.path else 'FILE'}")
    return head


def _short(v: Any) -> str:
    if isinstance(v, int):
        return hex(v)
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], int):
        return f"{v[0]}@{v[1]:#x}"
    text = repr(v)
    return text if len(text) < 80 else text[:77] + "..."


def write_reproducers(result: CampaignResult, out_dir: str) -> list[str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    comparator = make_comparator(result.config)
    paths = []
    for n, rep in enumerate(result.reported, 1):
        path = out / f"repro_{n}.S"
        rep = replace(rep, path=str(path))
        result.reported[n - 1] = rep
        config = rep.verdict.config
        again = check_program(comparator, rep.minimized, (config,))
        now = again.verdicts.get(config)
        path.write_text(rep.minimized.source(header=repro_header(rep, now)))
        doc = {
            "signature": rep.signature,
            "config": config,
            "class": rep.verdict.cls,
            "tier": rep.tier,
            "count": rep.count,
            "origin": rep.original.origin,
            "mode": rep.minimized.mode,
            "max_insns": rep.minimized.max_insns,
            "source": rep.minimized.source(),
            "original_source": rep.original.source(),
            "diff": [[k, _jsonable(a), _jsonable(b)] for k, a, b in (now or rep.verdict).diff],
            "original_diff": [[k, _jsonable(a), _jsonable(b)] for k, a, b in rep.verdict.diff],
            "reference": again.reference.to_json(),
            "got": again.outcomes[config].to_json() if config in again.outcomes else None,
            "verdict_now": again.verdicts[config].kind if config in again.verdicts else None,
        }
        path.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        paths.append(str(path))
    return paths


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, tuple):
        return list(v)
    return v


# -------------------------------------------------------------------------------- summaries
def table(tally: Tally) -> list[dict[str, Any]]:
    rows = []
    for name in [c for c in ALL_CONFIGS if c in tally.kinds] + sorted(set(tally.kinds) - set(ALL_CONFIGS)):
        k = tally.kinds[name]
        ran = k["agree"] + k["decline"] + k["disagree"]
        classes = {
            sig.split("|", 1)[1]: n for sig, n in tally.classes.items() if sig.split("|", 1)[0] == name
        }
        rows.append(
            {
                "config": name,
                "programs": ran,
                "agree": k["agree"],
                "declines": k["decline"],
                "decline_rate": k["decline"] / ran if ran else 0.0,
                "not_applicable": k["n/a"],
                "disagree": k["disagree"],
                "classes": classes,
            }
        )
    return rows


def summary_json(result: CampaignResult, paths: list[str]) -> dict[str, Any]:
    return {
        "seed": result.config.seed,
        "programs": result.tally.programs,
        "seconds": round(result.seconds, 3),
        "programs_per_second": round(result.rate, 2),
        "interrupted": result.interrupted,
        "assembly_errors": result.tally.errors,
        "error_examples": result.tally.error_examples,
        "configs": table(result.tally),
        "kvm_skipped": kvm_skip_reason() or None,
        "disagreements": [
            {
                "signature": r.signature,
                "config": r.verdict.config,
                "class": r.verdict.cls,
                "tier": r.tier,
                "count": r.count,
                "first_index": r.index,
                "repro": paths[i] if i < len(paths) else None,
                "minimized_lines": len(r.minimized.lines),
            }
            for i, r in enumerate(result.reported)
        ],
        "clean": result.clean,
    }


def summary_text(result: CampaignResult, paths: list[str]) -> str:
    t = result.tally
    lines = [
        f"exitlab fuzz --streams: {t.programs} programs, seed {result.config.seed}, "
        f"{result.seconds:.1f} s ({result.rate:.1f} programs/s)"
        + ("  [INTERRUPTED: partial]" if result.interrupted else ""),
        "",
        f"{'configuration':13} {'programs':>8} {'agree':>7} {'declines':>9} {'rate':>6} {'n/a':>6} "
        f"{'disagree':>8}",
    ]
    for row in table(t):
        lines.append(
            f"{row['config']:13} {row['programs']:8} {row['agree']:7} {row['declines']:9} "
            f"{100 * row['decline_rate']:5.1f}% {row['not_applicable']:6} {row['disagree']:8}"
        )
        for cls, n in sorted(row["classes"].items(), key=lambda x: -x[1]):
            lines.append(f"{'':15}{n:6}  {cls}")
    if "kvm" in result.config.configs and kvm_skip_reason():
        lines.append(f"kvm: skipped ({kvm_skip_reason()})")
    if t.errors:
        what = "could not be checked (assembly or reference failure)"
        lines += ["", f"{t.errors} program(s) {what}:", *t.error_examples]
    if result.reported:
        lines += ["", f"{len(result.reported)} distinct disagreement class(es):"]
        for i, r in enumerate(result.reported):
            where = paths[i] if i < len(paths) else ""
            lines.append(f"  {r.signature}  [{r.tier}] x{r.count}  {len(r.minimized.lines)} lines  {where}")
    verdict = (
        "clean" if result.clean else ("partial (interrupted)" if result.interrupted else "DISAGREEMENTS")
    )
    lines += ["", f"result: {verdict}"]
    return "\n".join(lines)


# -------------------------------------------------------------------------------- replay
def load_program(path: str) -> Program:
    p = Path(path)
    text = p.read_text()
    if p.suffix == ".json":
        return parse_program(json.loads(text)["source"])
    return parse_program(text)


def replay(path: str, configs: tuple[str, ...] = ALL_CONFIGS) -> ProgramResult:
    program = load_program(path)
    return check_program(_comparator(configs), program)


def replay_text(result: ProgramResult) -> str:
    ref = result.reference
    lines = [result.program.source(), f"reference: {ref.stop} at rip={ref.rip:#x} ({ref.message})"]
    if result.error:
        lines.append(result.error)
    for name, v in result.verdicts.items():
        o = result.outcomes.get(name)
        where = f"{o.stop} at rip={o.rip:#x}" if o else ""
        tag = v.kind + (f" {v.cls} [{v.tier}]" if v.kind == "disagree" else "")
        lines.append(f"  {name:12} {where:28} {tag}")
        for k, a, b in v.diff[:8]:
            lines.append(f"      {k}: {_short(a)} -> {_short(b)}")
    bad = any(v.kind == "disagree" for v in result.verdicts.values())
    lines.append("still disagrees" if bad else "no disagreement")
    return "\n".join(lines)
