"""Summaries (text and JSON) and reproducer files of a campaign, and `--replay` of one file.

A reproducer is self-contained: the case (bytes, mode, registers, window, device answer), what
the truth did (expected) and what the path did (got), the oracle and class. `exitlab fuzz
--replay FILE` re-runs the case through every oracle and says whether it still disagrees.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from emu.errors import OutputError
from emu.inputs import loads_strict, read_file
from emu.limits import CASE_FILE_MAX
from emu.outfile import write_text_atomic
from exitlab.tools.fuzz.atheris_target import case_from_input
from exitlab.tools.fuzz.case import Case, CaseFormatError
from exitlab.tools.fuzz.oracles import CLASSES, PLANTS, Checker, Finding
from exitlab.tools.fuzz.runner import FuzzResult, Reported

REPRO_SCHEMA = "exitlab-fuzz-reproducer"


def reproducer(rep: Reported, seed: int | None = None, plant: str | None = None) -> dict[str, Any]:
    f = rep.finding
    return {
        "schema": REPRO_SCHEMA,
        "version": 1,
        "oracle": f.oracle,
        "class": f.cls,
        "form": f.form,
        "detail": f.detail,
        "explained": f.explained,
        "occurrences": rep.count,
        "seed": seed,
        "plant": plant,
        "case": rep.minimized.to_json(),
        "original": rep.original.to_json() if rep.original != rep.minimized else None,
        "expected": dict(f.expected),
        "got": dict(f.got),
    }


def write_reproducers(result: FuzzResult, out_dir: str | Path) -> list[Path]:
    """One JSON file per distinct disagreement (explained ones too: they document themselves)."""
    root = Path(out_dir)
    paths: list[Path] = []
    for rep in result.reported:
        if not paths:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                why = exc.strerror or exc
                raise OutputError(f"--out {root}: cannot create the directory ({why})") from None
        f = rep.finding
        digest = hashlib.sha1(f.signature.encode()).hexdigest()[:8]
        path = root / f"{f.oracle}-{f.cls}-{f.form.lower()}-{digest}.json"
        data = reproducer(rep, result.config.seed, result.config.plant)
        write_text_atomic(path, json.dumps(data, indent=2) + "\n", "reproducer")
        paths.append(path)
    return paths


def summary_json(result: FuzzResult, paths: list[Path] | None = None) -> dict[str, Any]:
    t = result.tally
    by_oracle: dict[str, dict[str, int]] = {}
    for (oracle, outcome), n in sorted(t.outcomes.items()):
        by_oracle.setdefault(oracle, {})[outcome] = n
    classes = {c: 0 for c in CLASSES}
    for rep in result.unexplained:
        classes[rep.finding.cls] += rep.count
    files = {id(r): str(p) for r, p in zip(result.reported, paths or [], strict=False)}
    return {
        "cases": t.cases,
        "seconds": round(result.seconds, 3),
        "cases_per_s": round(result.cases_per_second, 1),
        "seed": result.config.seed,
        "jobs": result.config.jobs,
        "generators": dict(t.generators),
        "generator_cases_per_s": {g: round(v, 1) for g, v in result.generator_rates().items()},
        "runner": "fast" if result.config.fast else "full",
        "python_every": result.config.python_every if result.config.fast else 1,
        "plant": result.config.plant,
        "interrupted": result.interrupted,
        "c_extension": t.c_status or "unknown",
        "outcomes": by_oracle,
        "unexplained_by_class": classes,
        "coverage": {
            "iced_forms": len([f for f in t.forms if f not in ("invalid", "self-modifying")]),
            "iced_forms_with_mmio": len(t.mmio_forms - {"invalid"}),
            "invalid_or_truncated": t.forms.get("invalid", 0),
        },
        "disagreements": [
            {
                "oracle": r.finding.oracle,
                "class": r.finding.cls,
                "form": r.finding.form,
                "detail": r.finding.detail,
                "count": r.count,
                "explained": r.finding.explained,
                "bytes": r.minimized.code.hex(" "),
                "mode": r.minimized.mode,
                "reproducer": files.get(id(r)),
            }
            for r in result.reported
        ],
        "clean": not result.unexplained and not result.interrupted,
    }


def summary_text(result: FuzzResult, paths: list[Path] | None = None) -> str:
    s = summary_json(result, paths)
    every = s["python_every"]
    python = "on every case" if every == 1 else f"on every {every}th case" if every else "never"
    lines = [
        f"exitlab fuzz: {s['cases']} cases in {s['seconds']:.1f} s ({s['cases_per_s']:.0f} cases/s), "
        f"seed {s['seed']}, {s['jobs']} job(s){' — INTERRUPTED' if s['interrupted'] else ''}",
        f"generators: {', '.join(f'{k} {v}' for k, v in s['generators'].items())}",
        f"cases/s per generator ({s['runner']} runner, Python paths {python}): "
        f"{', '.join(f'{k} {v:.0f}' for k, v in s['generator_cases_per_s'].items())}",
        f"C extension: {s['c_extension']}",
        f"coverage: {s['coverage']['iced_forms']} instruction forms (iced-x86 codes) exercised, "
        f"{s['coverage']['iced_forms_with_mmio']} of them with an MMIO access; "
        f"{s['coverage']['invalid_or_truncated']} invalid/truncated inputs",
        "outcomes by oracle:",
    ]
    for oracle, outcomes in s["outcomes"].items():
        lines.append(f"  {oracle:17} " + ", ".join(f"{k} {v}" for k, v in outcomes.items()))
    unexplained = {k: v for k, v in s["unexplained_by_class"].items() if v}
    lines.append(
        "unexplained disagreements by class: "
        + (", ".join(f"{k} {v}" for k, v in unexplained.items()) or "none")
    )
    for d in s["disagreements"]:
        tag = f"explained ({d['explained']})" if d["explained"] else "UNEXPLAINED"
        where = f" -> {d['reproducer']}" if d["reproducer"] else ""
        lines.append(
            f"  [{tag}] {d['oracle']} {d['class']} {d['form']} x{d['count']}: "
            f"bytes={d['bytes']} mode={d['mode']}: {d['detail']}{where}"
        )
    if result.unexplained:
        lines.append("result: UNEXPLAINED DISAGREEMENTS")
    elif result.interrupted:
        lines.append(f"result: INTERRUPTED after {s['cases']} of {result.config.cases} cases "
                     "(no unexplained disagreement among them; not a clean campaign)")
    else:
        lines.append("result: clean")
    return "\n".join(lines)


def libfuzzer_input(path: str | Path) -> bytes | None:
    """The bytes of `path` when it is a raw input of the libFuzzer harness atheris_target (a crash
    file from `make fuzz-atheris`, ClusterFuzzLite or OSS-Fuzz), None when it is meant as JSON: a
    *.json name, or contents that parse as JSON. Such an input replays as the same case."""
    p = Path(path)
    if p.suffix == ".json" or not p.is_file() or p.stat().st_size > CASE_FILE_MAX:
        return None
    data = p.read_bytes()
    if data.lstrip()[:1] in (b"{", b"["):  # meant as JSON: a broken reproducer is an error, not bytes
        return None
    try:
        json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data
    return None


def replay(
    path: str | Path, checker: Checker | None = None
) -> tuple[Case, list[Finding], list[tuple[str, str]]]:
    """Re-run a reproducer (or case) file: the case, its findings now, and every oracle's outcome."""
    crash = libfuzzer_input(path)
    if crash is not None:  # a raw libFuzzer input of atheris_target
        case = case_from_input(crash)
        result = (checker or Checker()).check(case)
        return case, list(result.findings), list(result.outcomes)
    data = read_file(path, CASE_FILE_MAX, "reproducer")
    try:
        raw = loads_strict(data)
        case = Case.from_json(raw)
    except ValueError as exc:
        raise CaseFormatError(f"{path}: not a valid case or reproducer ({exc})") from None
    plant = raw.get("plant")
    if plant is not None and plant not in PLANTS:
        raise CaseFormatError(f"{path}: unknown plant {plant!r} (known: {', '.join(PLANTS)})")
    checker = checker or Checker(plant=plant)
    result = checker.check(case)
    return case, list(result.findings), list(result.outcomes)
