"""The cost sweep's plumbing (not its speed): every row runs, every kick is counted, the JSON
carries every figure and the environment, the plot is written. Speed lives in bench/."""

import json

import pytest

from emu.errors import ExitlabError
from exitlab.cli import main
from exitlab.tools import costs, report


@pytest.fixture(scope="module")
def sweep():
    return costs.run_sweep(exits=40, repeat=2)


def test_every_mechanism_has_rows_for_both_engines_and_modes(sweep):
    keys = {r.key for r in sweep.rows}
    for mech in costs.MECHANISMS:
        for engine in ("python", "c"):
            path = mech.py_path if engine == "python" else mech.c_path
            for mode in ("live", "replay"):
                assert (f"{mech.name}/{engine}/{mode}" in keys) == (path is not None)
    assert not sweep.skipped, sweep.skipped
    for r in sweep.rows:
        assert r.exits == 40 and len(r.totals) == len(r.traps) == 2, r.key
        assert all(t > 0 for t in r.totals)


def test_pio_ratio_is_one_and_seed_columns(sweep):
    for r in sweep.rows:
        if r.mechanism.name == "pio":
            assert report.ratio_to_pio(sweep, r) == 1.0
    text = report.table(sweep)
    assert "4341" in text and "1817" in text and "1566" in text and "1737" in text
    assert "seed" in text and "not measured here" in text


def test_json_has_figures_and_environment(sweep, tmp_path):
    out = tmp_path / "b.json"
    report.write_json(sweep, out)
    doc = json.loads(out.read_text())
    env = doc["environment"]
    assert set(env) >= {"cpu", "python", "compiler", "libraries", "commit"}
    assert env["libraries"]["unicorn"].startswith("2.1")
    row = doc["rows"][0]
    assert set(row) >= {"mechanism", "engine", "mode", "ns_per_exit", "ticks_per_exit", "trap_ns", "tax_ns",
                        "ratio_to_pio", "seed"}
    assert doc["tsc_ticks_per_ns"] and doc["tsc_ticks_per_ns"] > 0


def test_plot_is_a_png(sweep, tmp_path):
    out = tmp_path / "b.png"
    report.plot(sweep, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wrong_path_is_caught_by_the_kick_check(monkeypatch):
    """A path that loses kicks must not produce a number (the bench replays through emu/replay.py's
    routes; here the pio path answers without reaching the device)."""
    from emu.cpu import DeviceAccess, Outcome
    from emu.iopaths import PioPath

    def lose(self, rec, cpu):
        return Outcome(rec.rip + 2, (DeviceAccess(rec.addr, rec.truth_size, True, rec.truth_value, True),))

    monkeypatch.setattr(PioPath, "handle", lose)
    recs = costs.record_exits(costs.MECHANISMS[0], 10)
    with pytest.raises(ExitlabError, match="counted 0 kicks, expected 10"):
        costs.py_replay(costs.MECHANISMS[0], recs)


def test_cli_bench_unknown_mechanism(capsys):
    assert main(["bench", "--mechanism", "smoke-signals", "--no-progress"]) == 1
    assert "unknown mechanism" in capsys.readouterr().err


def test_cli_bench_one_mechanism(capsys, tmp_path):
    rc = main(["bench", "--exits", "20", "--repeat", "1", "--mechanism", "pv-fast", "--no-progress",
               "--json", str(tmp_path / "x.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "pv-fast" in out and "mmio-generic" not in out
