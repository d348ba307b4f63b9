"""The exit-cost report: a text table, a JSON document with the environment, and a bar chart.

Ratios to PIO are taken within one (engine, mode) column group, so they compare paths, not
engines; the seed's KVM cycles and ratios stand beside them, labelled as the reference.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from fastpath.costs import SEED_PIO_CYCLES, Row, Sweep, seed_ratio


def _pio_row(sweep: Sweep, row: Row) -> Row | None:
    return next(
        (r for r in sweep.rows if r.mechanism.name == "pio" and (r.engine, r.mode) == (row.engine, row.mode)),
        None,
    )


def ratio_to_pio(sweep: Sweep, row: Row) -> float | None:
    pio = _pio_row(sweep, row)
    return None if pio is None or not pio.median else row.median / pio.median


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def table(sweep: Sweep) -> str:
    head = (
        f"{'mechanism':<15} {'engine':<6} {'mode':<6} {'exits':>7} {'ns/exit':>9} {'(min-max)':>17} "
        f"{'ticks':>8} {'trap ns':>8} {'tax ns':>8} {'xPIO':>6} | {'seed cyc':>8} {'seed xPIO':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in sweep.rows:
        ratio = ratio_to_pio(sweep, r)
        mech = r.mechanism
        spread = f"({min(r.totals):.0f}-{max(r.totals):.0f})"
        lines.append(
            f"{mech.name:<15} {r.engine:<6} {r.mode:<6} {r.exits:>7} {r.median:>9.0f} {spread:>17} "
            f"{_fmt(r.ticks_median):>8} {r.trap:>8.0f} {r.tax:>8.0f} {_fmt(ratio, '.2f'):>6} | "
            f"{_fmt(mech.seed_cycles):>8} {_fmt(seed_ratio(mech), '.2f'):>9}"
        )
    lines.append("")
    lines.append(
        f"{sweep.exits} exits per run, median of {sweep.repeat} interleaved repeats; "
        "trap = a count-only exit of the same kind, tax = total - trap;\n"
        "xPIO = ns/exit over the PIO row of the same engine and mode."
    )
    lines.append(
        f"seed cyc / seed xPIO: the reference measurement on x86 KVM (PIO = {SEED_PIO_CYCLES} cycles), not "
        "measured here."
    )
    if sweep.tsc_ghz:
        lines.append(f"TSC: {sweep.tsc_ghz:.2f} ticks/ns (from the C rows).")
    lines.extend(sweep.skipped)
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in ("unicorn", "capstone", "cffi", "iced-x86", "exitlab"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    cc = os.environ.get("CC", "gcc")
    compiler: str | None
    try:
        compiler = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        compiler = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "compiler": compiler,
        "libraries": versions,
        "commit": commit,
    }


def to_json(sweep: Sweep) -> dict[str, Any]:
    rows = []
    for r in sweep.rows:
        rows.append(
            {
                "mechanism": r.mechanism.name,
                "label": r.mechanism.label,
                "engine": r.engine,
                "mode": r.mode,
                "exits": r.exits,
                "ns_per_exit": {
                    "median": r.median,
                    "min": min(r.totals),
                    "max": max(r.totals),
                    "all": r.totals,
                },
                "ticks_per_exit": r.ticks_median,
                "trap_ns": {"median": r.trap, "all": r.traps},
                "tax_ns": r.tax,
                "ratio_to_pio": ratio_to_pio(sweep, r),
                "seed": {"cycles": r.mechanism.seed_cycles, "ratio_to_pio": seed_ratio(r.mechanism)},
            }
        )
    return {
        "schema": "exitlab-bench",
        "version": 1,
        "exits": sweep.exits,
        "repeat": sweep.repeat,
        "seconds": sweep.seconds,
        "tsc_ticks_per_ns": sweep.tsc_ghz,
        "seed_reference": {"pio_cycles": SEED_PIO_CYCLES, "source": "x86 KVM measurement in DESIGN.md"},
        "skipped": sweep.skipped,
        "environment": environment(),
        "rows": rows,
    }


def write_json(sweep: Sweep, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(sweep), indent=2) + "\n")


def plot(sweep: Sweep, path: str | Path | IO[bytes], format: str | None = None) -> None:
    """One panel per (engine, mode): ns/exit per mechanism, trap and tax stacked, log scale, with
    the seed's ratio to PIO drawn as a marker at seed_ratio x this panel's PIO median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(e, m) for e in ("python", "c") for m in ("live", "replay")]
    groups = [g for g in groups if any((r.engine, r.mode) == g for r in sweep.rows)]
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 2.6 * len(groups) + 0.8), squeeze=False)
    for ax, (engine, mode) in zip(axes[:, 0], groups, strict=True):
        rows = [r for r in sweep.rows if (r.engine, r.mode) == (engine, mode)]
        names = [r.mechanism.name for r in rows]
        y = range(len(rows))
        traps = [max(min(r.trap, r.median), 0.0) for r in rows]
        taxes = [max(r.median - t, 0.0) for r, t in zip(rows, traps, strict=True)]
        ax.barh(y, traps, color="#9e9e9e", label="trap")
        ax.barh(y, taxes, left=traps, color="#1f77b4", label="tax")
        pio = next((r for r in rows if r.mechanism.name == "pio"), None)
        if pio is not None:
            for i, r in enumerate(rows):
                sr = seed_ratio(r.mechanism)
                if sr is not None:
                    ax.plot(
                        sr * pio.median,
                        i,
                        marker="D",
                        color="#d62728",
                        markersize=7,
                        label="seed ratio x PIO"
                        if i == 0 or "seed ratio x PIO" not in ax.get_legend_handles_labels()[1]
                        else None,
                    )
        ax.set_yticks(list(y), names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("ns per exit (log)")
        ax.set_title(f"{engine} engine, {mode}")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"exitlab: host cost per notify exit ({sweep.exits} exits, median of {sweep.repeat})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format=format)  # format: needed when `path` is a stream
    plt.close(fig)
