"""`exitlab run --engine c` answers exactly as the Python engine, for every example guest and path."""

import json

import pytest

from emu import guests
from exitlab.cli import main

GUESTS = [g for g in guests.names() if not g.startswith("pci_")]  # the C engine models the default board
PATHS = ["inplace", "generic", "fast", "wildcard"]


def run_json(capsys, *argv):
    rc = main(["run", *argv, "--json"])
    return rc, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("guest", GUESTS)
def test_c_engine_equals_python_engine(capsys, guest, path):
    rc_py, py = run_json(capsys, guest, "--path", path)
    rc_c, c = run_json(capsys, guest, "--path", path, "--engine", "c")
    assert (rc_c, c["stop"]["reason"], c["stop"]["rip"]) == (rc_py, py["stop"]["reason"], py["stop"]["rip"])
    assert c["regs"] == py["regs"]
    assert c["exits"] == py["exits"]
    assert c["console"] == py["console"]
    assert c["devices"]["notify"]["kicks"] == py["devices"]["notify"]["kicks"]


def test_subset_is_c_only(capsys):
    assert main(["run", "kick_mmio", "--path", "subset"]) == 1
    assert "--engine c" in capsys.readouterr().err
    rc, d = run_json(capsys, "kick_mmio", "--path", "subset", "--engine", "c")
    assert rc == 0 and d["devices"]["c_engine"]["counts"]["subset"] == 256
