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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from exitlab.tools.costs import SEED_PIO_CYCLES, TRAP_MODES, Row, Sweep, seed_ratio


def _pio_row(sweep: Sweep, row: Row) -> Row | None:
    """The PIO row of the same engine, mode and trap mode (ratios never mix trap mechanisms)."""
    return next(
        (r for r in sweep.rows if r.mechanism.name == "pio"
         and (r.engine, r.mode, r.trap_mode) == (row.engine, row.mode, row.trap_mode)),
        None,
    )


def ratio_to_pio(sweep: Sweep, row: Row) -> float | None:
    pio = _pio_row(sweep, row)
    return None if pio is None or not pio.median else row.median / pio.median


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def table(sweep: Sweep) -> str:
    """Today's table (rows trapped the default way), then, when the sweep has other trap modes, the
    trap-parity table beside it."""
    text = _main_table(sweep)
    if any(r.trap_mode != "mixed" for r in sweep.rows):
        text += "\n\n" + parity_table(sweep)
    return text


_TRAP_TITLES = {
    "mixed": "mixed (default)",
    "exit": "exit (all stop+restart)",
    "hook": "hook (all in a hook)",
}


def parity_table(sweep: Sweep) -> str:
    """C live rows side by side per trap mode: ns/exit, trap, tax and ratio to the PIO row trapped
    the same way, with the seed's KVM ratio (where every exit is a whole VM exit) at the end."""
    traps = [t for t in TRAP_MODES if any(r.trap_mode == t and (r.engine, r.mode) == ("c", "live")
                                          for r in sweep.rows)]
    rows = {(r.mechanism.name, r.trap_mode): r for r in sweep.rows if (r.engine, r.mode) == ("c", "live")}
    mechs = list(dict.fromkeys(r.mechanism for r in sweep.rows if (r.engine, r.mode) == ("c", "live")))
    cell = f"{'ns/exit':>8} {'trap':>6} {'tax':>6} {'xPIO':>6}"
    head1 = f"{'':<15} " + " | ".join(f"{_TRAP_TITLES[t]:^{len(cell)}}" for t in traps) + " |"
    head2 = f"{'mechanism':<15} " + " | ".join(cell for _ in traps) + f" | {'seed xPIO':>9}"
    lines = ["trap parity (C engine, live): every kind of exit trapped the same way", head1, head2,
             "-" * len(head2)]
    for mech in mechs:
        cells = []
        for t in traps:
            r = rows.get((mech.name, t))
            if r is None:
                cells.append(f"{'-':>8} {'-':>6} {'-':>6} {'-':>6}")
                continue
            ratio = ratio_to_pio(sweep, r)
            cells.append(f"{r.median:>8.0f} {r.trap:>6.0f} {r.tax:>6.0f} {_fmt(ratio, '.2f'):>6}")
        lines.append(f"{mech.name:<15} " + " | ".join(cells) + f" | {_fmt(seed_ratio(mech), '.2f'):>9}")
    lines.append("")
    lines.append(
        "mixed: PIO in its IN/OUT hook, MMIO and vmcall stop the engine and restart (today's table);\n"
        "exit: every kind stops the engine and restarts (PIO after the rest of its translated block);\n"
        "hook: every kind is handled inside a hook at the exact RIP (MMIO in-place, before the access).\n"
        "xPIO within one trap mode compares paths trapped alike, as the seed's KVM ratios do."
    )
    return "\n".join(lines)


def _main_table(sweep: Sweep) -> str:
    head = (
        f"{'mechanism':<15} {'engine':<6} {'mode':<6} {'exits':>7} {'ns/exit':>9} {'(min-max)':>17} "
        f"{'ticks':>8} {'trap ns':>8} {'tax ns':>8} {'xPIO':>6} | {'seed cyc':>8} {'seed xPIO':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in sweep.rows:
        if r.trap_mode != "mixed":
            continue
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
                "trap": r.trap_mode,
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
        "traps": sweep.traps,
        "environment": environment(),
        "rows": rows,
    }


def write_json(sweep: Sweep, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(sweep), indent=2) + "\n")


@dataclass(frozen=True)
class PlotRow:
    """What the chart needs of one row, from a live sweep or from a saved bench JSON."""

    mechanism: str
    engine: str
    mode: str
    total: float
    trap: float
    seed_ratio: float | None
    trap_mode: str = "mixed"

    @property
    def tax(self) -> float:
        return self.total - self.trap


_ENGINES_MODES = [(e, m, "mixed") for e in ("python", "c") for m in ("live", "replay")] + [
    ("c", "live", "exit"), ("c", "live", "hook")]
_TRAP, _TAX, _SEED = "#9e9e9e", "#1f77b4", "#d62728"
_GROUP_STYLE = {
    ("python", "live", "mixed"): ("o", "#ff7f0e"),
    ("python", "replay", "mixed"): ("s", "#ffbb78"),
    ("c", "live", "mixed"): ("D", "#1f77b4"),
    ("c", "replay", "mixed"): ("^", "#2ca02c"),
    ("c", "live", "exit"): ("v", "#9467bd"),
    ("c", "live", "hook"): ("P", "#8c564b"),
}


def _group(r: PlotRow) -> tuple[str, str, str]:
    return (r.engine, r.mode, r.trap_mode)


def plot(sweep: Sweep, path: str | Path | IO[bytes], format: str | None = None) -> None:
    """Draw the exit-cost chart of a sweep (see plot_rows); `format` is needed when `path` is a stream."""
    rows = [PlotRow(r.mechanism.name, r.engine, r.mode, r.median, r.trap, seed_ratio(r.mechanism),
                    r.trap_mode) for r in sweep.rows]
    plot_rows(rows, path, f"{sweep.exits} exits, median of {sweep.repeat}", format)


def plot_json(json_path: str | Path, path: str | Path) -> None:
    """Redraw the chart from a saved `exitlab bench --json` document, without measuring again."""
    doc = json.loads(Path(json_path).read_text())
    if doc.get("schema") != "exitlab-bench":
        raise ValueError(f"{json_path}: not an exitlab-bench document")
    rows = [
        PlotRow(r["mechanism"], r["engine"], r["mode"], float(r["ns_per_exit"]["median"]),
                float(r["trap_ns"]["median"]), r["seed"]["ratio_to_pio"], r.get("trap", "mixed"))
        for r in doc["rows"]
    ]
    plot_rows(rows, path, f"{doc['exits']} exits, median of {doc['repeat']}")


def plot_rows(
    rows: list[PlotRow], path: str | Path | IO[bytes], subtitle: str = "", format: str | None = None
) -> None:
    """One panel per (engine, mode) on a linear axis: trap and tax stacked, so bar lengths are the
    costs, each bar labelled with its numbers; the seed's ratio to PIO drawn as a marker at
    seed_ratio x this panel's PIO. A last panel shows the tax alone for every engine and mode, as
    points on a log axis (taxes span 3 ns to 100 us; points, unlike bars, do not start at the axis
    minimum), a tax <= 0 drawn hollow at the left edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in _ENGINES_MODES if any(_group(r) == g for r in rows)]
    mechs = list(dict.fromkeys(r.mechanism for r in rows))
    ncols = 2 if len(groups) > 1 else 1
    nrows = (len(groups) + ncols - 1) // ncols
    fig = plt.figure(figsize=(13, 3.1 * nrows + 3.6))
    grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[1.0] * nrows + [1.15])
    for i, g in enumerate(groups):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        _cost_panel(ax, [r for r in rows if _group(r) == g], *g)
    _tax_panel(fig.add_subplot(grid[nrows, :]), rows, mechs, groups)
    fig.suptitle("exitlab: host cost per notify exit = trap + tax" + (f" ({subtitle})" if subtitle else ""))
    handles = [
        matplotlib.patches.Patch(color=_TRAP, label="trap: a count-only exit of the same kind"),
        matplotlib.patches.Patch(color=_TAX, label="tax: what the path adds"),
        matplotlib.lines.Line2D([], [], marker="D", color=_SEED, linestyle="none",
                                label="seed (KVM) ratio to PIO x this panel's PIO"),
    ]
    fig.legend(handles=handles, loc="upper center", ncols=3, fontsize=8, bbox_to_anchor=(0.5, 0.965))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110, format=format)
    plt.close(fig)


def _cost_panel(ax: Any, rows: list[PlotRow], engine: str, mode: str, trap_mode: str = "mixed") -> None:
    y = list(range(len(rows)))
    traps = [max(min(r.trap, r.total), 0.0) for r in rows]
    taxes = [max(r.total - t, 0.0) for r, t in zip(rows, traps, strict=True)]
    ax.barh(y, traps, color=_TRAP, label="trap (count-only exit)")
    ax.barh(y, taxes, left=traps, color=_TAX, label="tax (the path)")
    pio = next((r for r in rows if r.mechanism == "pio"), None)
    xmax = max((r.total for r in rows), default=1.0)
    ends = [r.total for r in rows]
    if pio is not None:
        for i, r in enumerate(rows):
            if r.seed_ratio is not None:
                x = r.seed_ratio * pio.total
                ax.plot(x, i, marker="D", color=_SEED, markersize=6, linestyle="none",
                        label="seed ratio x PIO")
                ends[i] = max(ends[i], x)
                xmax = max(xmax, x)
    for i, r in enumerate(rows):
        sign = "+" if r.tax >= 0 else "-"
        ax.text(ends[i] + xmax * 0.02, i, f"{_short(r.total)} = {_short(r.trap)} {sign} {_short(abs(r.tax))}",
                va="center", fontsize=7)
    ax.set_xlim(0, xmax * 1.4)
    ax.set_yticks(y, [r.mechanism for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ns per exit")
    how = {"mixed": "", "exit": ", every exit stops the engine", "hook": ", every exit in a hook"}
    trapped = how.get(trap_mode, f", trap {trap_mode}")
    ax.set_title(f"{engine} engine, {mode}{trapped}", fontsize=10)


def _tax_panel(ax: Any, rows: list[PlotRow], mechs: list[str], groups: list[tuple[str, str, str]]) -> None:
    positive = [r.tax for r in rows if r.tax > 0]
    floor = min(positive) / 2 if positive else 1.0
    step = min(0.18, 0.8 / max(len(groups), 1))
    offsets = {g: (k - (len(groups) - 1) / 2) * step for k, g in enumerate(groups)}
    for g in groups:
        marker, color = _GROUP_STYLE[g]
        pts = [(mechs.index(r.mechanism) + offsets[g], r.tax) for r in rows if _group(r) == g]
        pos = [(y, t) for y, t in pts if t > 0]
        neg = [(y, t) for y, t in pts if t <= 0]
        ax.plot([t for _, t in pos], [y for y, _ in pos], marker=marker, color=color, linestyle="none",
                markersize=7, label=f"{g[0]} {g[1]}" + ("" if g[2] == "mixed" else f" ({g[2]})"))
        if neg:
            ax.plot([floor] * len(neg), [y for y, _ in neg], marker=marker, markerfacecolor="none",
                    color=color, linestyle="none", markersize=7)
    ax.set_xscale("log")
    ax.set_xlim(left=floor * 0.8)
    ax.set_yticks(range(len(mechs)), mechs)
    ax.invert_yaxis()
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.set_xlabel("tax: ns per exit added by the path (log; hollow = 0 or below, within noise)")
    ax.set_title("the tax alone, every engine and mode", fontsize=10)
    ax.legend(loc="lower right", fontsize=7, ncols=2)


def _short(ns: float) -> str:
    return f"{ns / 1000:.1f}k" if abs(ns) >= 10_000 else f"{ns:.0f}"
