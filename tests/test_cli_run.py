import json

import pytest

from emu import guests
from emu.trace import read_trace
from exitlab.cli import build_parser, main


def run_json(capsys, *argv):
    rc = main(["run", *argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_json_keys_and_counts(capsys):
    rc, d = run_json(capsys, "kick_mmio")
    assert rc == 0
    assert set(d) >= {"stop", "exits", "devices", "regs", "console"}
    assert set(d["stop"]) >= {"reason", "rip", "message"}
    assert set(d["exits"]) == {"mmio_write", "mmio_read", "pio_out", "pio_in", "hypercall"}
    assert d["exits"]["mmio_write"] == 256
    assert d["devices"]["notify"]["kicks"] == {"0": 64, "1": 64, "2": 64, "3": 64}
    assert isinstance(d["regs"]["rax"], int) and d["stop"]["reason"] == "hlt"


@pytest.mark.parametrize("name", guests.names())
def test_every_builtin_guest_halts_cleanly(capsys, name):
    rc, d = run_json(capsys, name)
    assert (rc, d["stop"]["reason"]) == (0, "hlt"), d["stop"]


def test_text_output_and_console(capsys):
    assert main(["run", "hello"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hello from the guest\n")
    assert "stop: hlt" in out and "pio_out=21" in out


def test_error_stop_exit_status(tmp_path, capsys):
    g = tmp_path / "bad.S"
    g.write_text("mov rax, [0x900000]\n")
    rc, d = run_json(capsys, str(g))
    assert rc == 1 and d["stop"]["reason"] == "unmapped"


def test_budget_and_timeout_flags(tmp_path, capsys):
    g = tmp_path / "loop.S"
    g.write_text("1: jmp 1b\n")
    rc, d = run_json(capsys, str(g), "--max-insns", "50")
    assert rc == 1 and d["stop"]["reason"] == "budget"
    rc, d = run_json(capsys, str(g), "--timeout", "0.1")
    assert rc == 1 and d["stop"]["reason"] == "timeout"


def test_bad_assembly_is_a_clear_error(tmp_path, capsys):
    g = tmp_path / "syntax.S"
    g.write_text("nop\nmov rax,\n")
    assert main(["run", str(g)]) == 1
    err = capsys.readouterr().err
    assert "syntax.S:2" in err and "Traceback" not in err


def test_unknown_guest(capsys):
    assert main(["run", "no_such_guest_xyz"]) == 1
    assert "built-in" in capsys.readouterr().err


def test_trace_flag(tmp_path, capsys):
    t = tmp_path / "t.jsonl"
    assert main(["run", "kick_pio", "--trace", str(t), "--json"]) == 0
    capsys.readouterr()
    recs = read_trace(t)
    assert len(recs) == 256 and all(r.addr == 0xC000 for r in recs)


def test_mode_flag_and_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("mov ax, 7\nhlt\n"))
    rc, d = run_json(capsys, "-", "--mode", "16")
    assert rc == 0 and d["regs"]["rax"] == 7 and "r8" not in d["regs"]


def test_help_for_every_subcommand(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        assert p.description and len(text) > 80, name
