"""`exitlab bench --trap`: the trap-parity rows run, carry their trap mode everywhere (table, JSON,
plot), ratios never mix trap modes, and the default output is what it was. No timing assertions."""

import json

import pytest

from exitlab.cli import main
from exitlab.tools import costs, report

MECHS = [m for m in costs.MECHANISMS if m.name in ("pio", "pv-fast", "hypercall", "mmio-subset")]


@pytest.fixture(scope="module")
def sweep():
    return costs.run_sweep(exits=30, repeat=1, mechanisms=MECHS, engines=("c",), modes=("live",),
                           traps=costs.TRAP_MODES)


def test_plan_rows_adds_c_live_rows_per_trap_mode():
    rows = costs.plan_rows(MECHS, ("python", "c"), ("live", "replay"), ("mixed", "hook"))
    keys = [r.key for r in rows]
    assert "pv-fast/c/live/hook" in keys and "hypercall/c/live/hook" in keys
    assert not any(k.endswith("/hook") and "/c/live/" not in k for k in keys)
    assert "pv-fast/c/live" in keys and "pio/python/replay" in keys  # today's rows unchanged
    only = costs.plan_rows(MECHS, ("python", "c"), ("live", "replay"), ("exit",))
    assert {r.trap_mode for r in only} == {"exit"} and {(r.engine, r.mode) for r in only} == {("c", "live")}


def test_every_trap_mode_runs_and_counts_every_kick(sweep):
    keys = {r.key for r in sweep.rows}
    for m in MECHS:
        assert {f"{m.name}/c/live", f"{m.name}/c/live/exit", f"{m.name}/c/live/hook"} <= keys
    for r in sweep.rows:
        assert r.exits == 30 and r.totals and r.traps, r.key
    assert sweep.traps == list(costs.TRAP_MODES) and not sweep.skipped


def test_ratio_to_pio_stays_within_a_trap_mode(sweep):
    for r in sweep.rows:
        pio = next(p for p in sweep.rows if p.mechanism.name == "pio" and p.trap_mode == r.trap_mode)
        assert report.ratio_to_pio(sweep, r) == pytest.approx(r.median / pio.median)


def test_table_shows_the_parity_section(sweep):
    text = report.table(sweep)
    main_part, parity = text.split("trap parity (C engine, live)")
    for title in ("mixed (default)", "exit (all stop+restart)", "hook (all in a hook)"):
        assert title in parity
    for m in MECHS:
        line = next(ln for ln in parity.splitlines() if ln.startswith(m.name + " "))
        assert line.count("|") == 3
    for m in MECHS:  # today's table keeps one row per mechanism: the mixed one
        assert sum(ln.startswith(m.name + " ") for ln in main_part.splitlines()) == 1


def test_json_and_plot_carry_the_trap_mode(sweep, tmp_path):
    out = tmp_path / "b.json"
    report.write_json(sweep, out)
    doc = json.loads(out.read_text())
    assert doc["traps"] == ["mixed", "exit", "hook"]
    assert {(r["mechanism"], r["trap"]) for r in doc["rows"]} == {
        (m.name, t) for m in MECHS for t in costs.TRAP_MODES
    }
    png = tmp_path / "b.png"
    report.plot_json(out, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_sweep_is_mixed_only():
    sw = costs.run_sweep(exits=10, repeat=1, mechanisms=MECHS[:1], engines=("c",), modes=("live",))
    assert [r.trap_mode for r in sw.rows] == ["mixed"]
    assert "trap parity" not in report.table(sw)
    assert all(r["trap"] == "mixed" for r in report.to_json(sw)["rows"])


def test_cli_trap_all(capsys, tmp_path):
    rc = main(["bench", "--exits", "20", "--repeat", "1", "--engine", "c", "--mode", "live", "--trap", "all",
               "--mechanism", "pio", "--mechanism", "pv-fast", "--no-progress",
               "--json", str(tmp_path / "t.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "trap parity" in out and "pv-fast" in out
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert sorted(r["trap"] for r in rows if r["mechanism"] == "pv-fast") == ["exit", "hook", "mixed"]


def test_cli_trap_needs_c_live_rows(capsys):
    assert main(["bench", "--trap", "hook", "--engine", "python", "--no-progress"]) == 1
    assert "C engine live rows" in capsys.readouterr().err
    assert main(["bench", "--decoders", "--trap", "exit", "--no-progress"]) == 1
    assert "--trap belongs to the exit-cost table" in capsys.readouterr().err


def test_api_bench_traps():
    import exitlab

    res = exitlab.bench(["pio", "hypercall"], engines=("c",), modes=("live",), exits=20, traps=("hook",))
    assert [(r.mechanism.name, r.trap_mode) for r in res.rows] == [("pio", "hook"), ("hypercall", "hook")]
    assert {r["trap"] for r in res.to_json()["rows"]} == {"hook"}
