"""The I/O-space planner: the seed's limits, per-N fits, output formats and bad input."""

from __future__ import annotations

import json

import pytest

from emu.ioplan import ASSIGNED_RANGE, PLATFORM_RESERVED, IoPlanError, io_windows, plan
from emu.pciboard import pci_board
from exitlab.cli import main


def test_seed_limits():
    p = plan(64)
    assert p.io_windows == (0x10000 - 0x1000) // 0x1000 == 15
    assert p.assigned_ports == 0x1000 // 2 == 2048
    assert p.io_windows_beside_assigned == 14
    assert p.platform_io_windows == 13
    assert p.mmio_hole_size == 0xFEC00000 - 0xC0000000
    assert p.notify_pages == p.mmio_hole_size // 0x1000 == 257024
    assert p.bridge_mem_windows == p.mmio_hole_size // 0x100000 == 1004
    assert p.notify_packed == p.mmio_hole_size // 16


@pytest.mark.parametrize(
    ("n", "io", "assigned", "mmio"),
    [
        (0, (0, 0), (0, 0), (0, 0)),
        (1, (1, 0), (1, 0), (1, 0)),
        (15, (15, 0), (15, 0), (15, 0)),
        (16, (15, 1), (16, 0), (16, 0)),
        (64, (15, 49), (64, 0), (64, 0)),
        (2048, (15, 2033), (2048, 0), (1004, 1044)),
        (2049, (15, 2034), (2048, 1), (1004, 1045)),
    ],
)
def test_fits(n, io, assigned, mmio):
    p = plan(n)
    assert (p.io_bar.fit, p.io_bar.short) == io
    assert (p.assigned.fit, p.assigned.short) == assigned
    assert (p.mmio.fit, p.mmio.short) == mmio


def test_windows_avoid_legacy_and_reserved_ranges():
    assert io_windows()[0] == 0x1000 and io_windows()[-1] == 0xF000
    assert 0x8000 not in io_windows([ASSIGNED_RANGE])
    assert 0xC000 not in io_windows(PLATFORM_RESERVED)


def test_board_uses_the_planner_windows():
    board = pci_board(20, offers="iobar")
    given = [d.io_base for d in board.pci.devices() if d.io_base is not None]
    assert given == io_windows(PLATFORM_RESERVED) and len(given) == plan().platform_io_windows


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"devices": -1}, "--devices"),
        ({"queues": 0}, "--queues"),
        ({"notify_off_multiplier": 3}, "power of two"),
        ({"notify_off_multiplier": 1}, "at least 2"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(IoPlanError, match=message):
        plan(**kwargs)


def test_cli_text_shows_the_arithmetic(capsys):
    assert main(["ioplan", "--devices", "16"]) == 0
    out = capsys.readouterr().out
    assert "(0x10000 - 0x1000) / 0x1000 = 15" in out
    assert "0x1000 / 2 = 2048" in out
    assert "0x3ec00000 / 0x100000 = 1004" in out
    assert "devices 15..15 (1) do not fit" in out


def test_cli_json_keys_are_stable(capsys):
    assert main(["ioplan", "--devices", "3000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["io_windows"] == 15 and out["assigned_ports"] == 2048
    assert out["io_bar"] == {"limit": 15, "fit": 15, "short": 2985}
    assert out["assigned"] == {"limit": 2048, "fit": 2048, "short": 952}
    assert set(out) >= {
        "devices",
        "io_space",
        "legacy_end",
        "io_window",
        "mmio_hole_base",
        "mmio_hole_end",
        "mmio_hole_size",
        "notify_pages",
        "bridge_mem_windows",
        "mmio",
        "platform_io_windows",
    }


def test_cli_bad_input_is_an_error(capsys):
    assert main(["ioplan", "--devices", "-5"]) == 1
    assert "--devices must be between 0" in capsys.readouterr().err
