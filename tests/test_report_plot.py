"""The exit-cost chart: drawn from a sweep or redrawn from a saved bench JSON (docs/bench.png)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exitlab.tools import costs, report

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_json_redraws_the_committed_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    report.plot_json(ROOT / "docs" / "bench.json", out)
    assert out.read_bytes()[:8] == PNG


def test_plot_json_rows_match_the_document() -> None:
    doc = json.loads((ROOT / "docs" / "bench.json").read_text())
    seen: list[report.PlotRow] = []
    orig = report.plot_rows
    try:
        report.plot_rows = lambda rows, path, subtitle="", format=None: seen.extend(rows)  # type: ignore
        report.plot_json(ROOT / "docs" / "bench.json", "unused.png")
    finally:
        report.plot_rows = orig
    assert len(seen) == len(doc["rows"])
    for row, src in zip(seen, doc["rows"], strict=True):
        assert row.total == src["ns_per_exit"]["median"] and row.trap == src["trap_ns"]["median"]
        assert row.tax == pytest.approx(src["tax_ns"])
        assert row.seed_ratio == src["seed"]["ratio_to_pio"]


def test_plot_json_refuses_other_documents(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"schema": "exitlab-trace"}))
    with pytest.raises(ValueError, match="not an exitlab-bench"):
        report.plot_json(bad, tmp_path / "x.png")


def test_plot_from_a_small_sweep(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    mechs = [m for m in costs.MECHANISMS if m.name in ("pio", "pv-fast")]
    sweep = costs.run_sweep(100, 1, mechs, ["c"], ["replay"])
    out = tmp_path / "s.png"
    report.plot(sweep, out)
    assert out.read_bytes()[:8] == PNG
