"""`exitlab bench --decoders`: the decoder benchmark's CLI, JSON and plot, on a binary that always
exists (exitlab's own C extension), plus its ELF reader and binary discovery."""

from __future__ import annotations

import json
from pathlib import Path

import fastpath._exitlab_c as ext

from exitlab.cli import main
from exitlab.tools import decoderbench as db

EXT = Path(ext.__file__).resolve()


def test_cli_decoders_json_and_plot(capsys, tmp_path: Path) -> None:
    out, png = tmp_path / "d.json", tmp_path / "d.png"
    rc = main(
        [
            "bench",
            "--decoders",
            "--binary",
            str(EXT),
            "--repeat",
            "1",
            "--no-progress",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    for name in db.DECODER_NAMES:
        assert name in text
    doc = json.loads(out.read_text())
    assert [d["name"] for d in doc["decoders"]] == [
        "exitlab-length",
        "exitlab-subset",
        "capstone-detail",
        "capstone-nodetail",
        "iced-python",
    ]
    keys = {"name", "mib_s", "ns_per_insn", "insns", "wrong", "declined", "false_accepts"}
    assert all(keys <= set(d) for d in doc["decoders"])
    assert "environment" in doc and doc["binaries"][0]["path"] == str(EXT)
    length = doc["decoders"][0]
    assert length["insns"] > 1000 and length["mib_s"] > 0
    assert (length["wrong"], length["false_accepts"]) == (0, 0)
    subset = doc["decoders"][1]
    assert (subset["wrong"], subset["false_accepts"]) == (0, 0)
    assert png.stat().st_size > 1000


def test_cli_binary_needs_decoders(capsys) -> None:
    assert main(["bench", "--binary", str(EXT)]) == 1
    assert "--binary goes with --decoders" in capsys.readouterr().err


def test_cli_decoders_rejects_exit_cost_options(capsys) -> None:
    assert main(["bench", "--decoders", "--exits", "10", "--binary", str(EXT)]) == 1
    assert "--decoders" in capsys.readouterr().err


def test_cli_decoders_bad_binary(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x7fELF" + bytes(60))
    assert main(["bench", "--decoders", "--binary", str(bad), "--no-progress"]) == 1
    assert str(bad) in capsys.readouterr().err


def test_default_binaries_exist() -> None:
    found, notes = db.default_binaries()
    assert all(p.is_file() for p in found)
    assert len(found) + len(notes) == 2
