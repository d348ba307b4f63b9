"""PCI config space (mechanism #1), capability parsing, notify addressing and the discovery guest."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu.assemble import load_guest
from emu.bus import Space
from emu.guests import builtin
from emu.machine import Machine, MmioStyle
from emu.pci import (
    CAP_ID_VNDR,
    CAP_PTR,
    CMD_IO,
    CMD_MEM,
    COMMAND,
    EXITLAB_VENDOR_ID,
    HC_OFF,
    MEM_BAR_INDEX,
    NOTIFY_OFF,
    NOTIFY_OFF_MULTIPLIER,
    PV_OFF,
    STATUS,
    STATUS_CAP_LIST,
    VENDOR_VIRTIO,
    WINDOW_LEN,
    CfgType,
    DeviceOffers,
    ExitlabCap,
    Mechanism,
    Offer,
    PciError,
    VirtioCap,
    capabilities,
    notify_address,
    parse_virtio_cap,
    read_config,
)
from emu.pciboard import MAX_PCI_DEVICES, device_offers, pci_board
from emu.platform import ASSIGNED_PORT_BASE, HC_MMIO_WRITE, PCI_MMIO_BASE
from exitlab.cli import main

CF8, CFC = 0xCF8, 0xCFC


def addr(bus: int, dev: int, fn: int, reg: int) -> int:
    return 0x80000000 | bus << 16 | dev << 11 | fn << 8 | reg


def cfg_read(board, bdf: tuple[int, int, int], reg: int, size: int = 4) -> int:
    board.bus.write(Space.PIO, CF8, 4, addr(*bdf, reg & 0xFC))
    return board.bus.read(Space.PIO, CFC + (reg & 3), size)


def cfg_write(board, bdf: tuple[int, int, int], reg: int, size: int, value: int) -> None:
    board.bus.write(Space.PIO, CF8, 4, addr(*bdf, reg & 0xFC))
    board.bus.write(Space.PIO, CFC + (reg & 3), size, value)


def read32(board):
    return lambda bdf, reg: cfg_read(board, bdf, reg)


@pytest.fixture
def board():
    return pci_board(5)


# -- configuration mechanism #1 ----------------------------------------------------------------------
def test_host_bridge_and_root_port_ids(board):
    assert cfg_read(board, (0, 0, 0), 0) == 0x0008_1B36
    assert cfg_read(board, (0, 1, 0), 0) == 0x000C_1B36
    assert cfg_read(board, (0, 1, 0), 0x0E, 1) & 0x7F == 1  # type 1 header
    assert cfg_read(board, (0, 1, 0), 0x0E, 1) & 0x80  # multifunction: 5 ports in slot 1
    assert cfg_read(board, (0, 1, 3), 0x19, 1) == 4  # secondary bus of port 3
    assert cfg_read(board, (4, 0, 0), 0, 2) == VENDOR_VIRTIO


def test_absent_functions_and_disabled_cycles_read_all_ones(board):
    assert cfg_read(board, (0, 9, 0), 0) == 0xFFFFFFFF  # empty slot
    assert cfg_read(board, (1, 1, 0), 0) == 0xFFFFFFFF  # behind a PCIe port only device 0
    assert cfg_read(board, (77, 0, 0), 0) == 0xFFFFFFFF  # no bridge forwards to bus 77
    board.bus.write(Space.PIO, CF8, 4, addr(0, 0, 0, 0) & 0x7FFFFFFF)  # enable bit clear
    assert board.bus.read(Space.PIO, CFC, 4) == 0xFFFFFFFF
    board.bus.write(Space.PIO, CFC, 4, 0)  # and writes vanish
    assert cfg_read(board, (0, 0, 0), 0) == 0x0008_1B36


def test_config_address_latch_rules(board):
    bus = board.bus
    bus.write(Space.PIO, CF8, 4, 0xFFFFFFFF)
    assert bus.read(Space.PIO, CF8, 4) == 0x80FFFFFC  # reserved bits 30:24 and 1:0 read 0
    bus.write(Space.PIO, CF8, 4, addr(0, 0, 0, 0) | 2)  # non-dword register: low bits ignored
    assert bus.read(Space.PIO, CFC, 4) == 0x0008_1B36
    bus.write(Space.PIO, CF8, 2, 0x1234)  # only dword accesses latch
    bus.write(Space.PIO, CF8 + 1, 1, 0x55)
    assert bus.read(Space.PIO, CF8, 4) == addr(0, 0, 0, 0)
    assert bus.read(Space.PIO, CF8, 2) == 0xFFFF  # and only they read it back
    assert board.pci.state()["ignored"] == 3


def test_byte_lanes_of_config_data(board):
    bus = board.bus
    bus.write(Space.PIO, CF8, 4, addr(0, 0, 0, 0))
    assert bus.read(Space.PIO, CFC + 2, 2) == 0x0008  # device ID through lanes 2-3
    assert bus.read(Space.PIO, CFC + 1, 1) == 0x1B
    assert bus.read(Space.PIO, CFC + 1, 4) == 0xFF_0008_1B  # dword at 0xCFD: lanes 1-3 + float
    assert bus.read(Space.PIO, CFC + 3, 2) == 0xFF_00
    assert bus.read(Space.PIO, CF8 + 2, 4) == 0x1B36_FFFF  # straddles 0xCF8: lanes 0-1 only


@given(reg=st.integers(0, 0x3F), lane=st.integers(0, 3), size=st.sampled_from([1, 2, 4]))
def test_any_lane_read_matches_config_bytes(reg, lane, size):
    b = pci_board(1)
    dev = b.pci.devices()[0]
    raw = bytes(dev.config.data) + b"\xff" * 8
    b.bus.write(Space.PIO, CF8, 4, addr(1, 0, 0, reg * 4))
    got = b.bus.read(Space.PIO, CFC + lane, size).to_bytes(size, "little")
    in_port = max(0, min(size, 4 - lane))
    assert got[:in_port] == raw[reg * 4 + lane : reg * 4 + lane + in_port]
    assert got[in_port:] == b"\xff" * (size - in_port)


def test_writes_respect_masks_and_lanes(board):
    bdf = (1, 0, 0)
    cfg_write(board, bdf, 0, 4, 0)  # vendor/device are read-only
    assert cfg_read(board, bdf, 0, 2) == VENDOR_VIRTIO
    cfg_write(board, bdf, COMMAND, 1, 0xFF)  # only I/O, memory, master stick
    assert cfg_read(board, bdf, COMMAND, 2) == 0x7
    cfg_write(board, bdf, COMMAND + 1, 1, 0xFF)  # byte lane 1: nothing writable
    assert cfg_read(board, bdf, COMMAND, 2) == 0x7
    board.bus.write(Space.PIO, CF8, 4, addr(*bdf, COMMAND))
    board.bus.write(Space.PIO, CFC + 1, 4, 0xFFFFFFFF)  # dword at 0xCFD: lanes 1-3 only
    assert cfg_read(board, bdf, COMMAND, 2) == 0x7


def test_bar_sizing_and_decode_gating(board):
    bdf, bar = (1, 0, 0), 0x10 + 4 * MEM_BAR_INDEX
    dev = board.pci.devices()[0]
    base = cfg_read(board, bdf, bar)
    assert base == PCI_MMIO_BASE
    cfg_write(board, bdf, bar, 4, 0xFFFFFFFF)
    assert cfg_read(board, bdf, bar) == 0xFFFFF000  # 4 KiB, 32-bit, non-prefetchable
    cfg_write(board, bdf, bar, 4, base)
    notify = base + PV_OFF + NOTIFY_OFF_MULTIPLIER * dev.notify_off(0, dev.queues)
    board.bus.write(Space.MMIO, notify, 2, 0)  # memory decode still disabled
    assert dev.dropped == 1 and not dev.kicks[Mechanism.PV]
    cfg_write(board, bdf, COMMAND, 2, CMD_MEM)
    board.bus.write(Space.MMIO, notify, 2, 0)
    assert dev.kicks[Mechanism.PV][0] == 1
    cfg_write(board, (0, 1, 0), COMMAND, 2, 0)  # the root port stops forwarding
    board.bus.write(Space.MMIO, notify, 2, 0)
    assert dev.kicks[Mechanism.PV][0] == 1 and dev.dropped == 2


def test_io_bar_sized_and_behind_bridge_window(board):
    dev = board.pci.devices()[4]  # rotate: device 4 is legacy-only
    assert dev.io_base == 0x1000
    bdf = dev.bdf
    assert cfg_read(board, bdf, 0x10) == 0x1001
    cfg_write(board, bdf, 0x10, 4, 0xFFFFFFFF)
    assert cfg_read(board, bdf, 0x10) == 0xFFFFFFE1  # 32 bytes of I/O
    cfg_write(board, bdf, 0x10, 4, 0x1000)
    assert cfg_read(board, dev.parent.bdf, 0x1C, 2) == 0x1010  # I/O base/limit 0x1000-0x1fff
    assert cfg_read(board, bdf, 0x34, 1) == 0 and not cfg_read(board, bdf, STATUS, 2) & STATUS_CAP_LIST
    cfg_write(board, bdf, COMMAND, 2, CMD_IO)
    board.bus.write(Space.PIO, 0x1010, 2, 0)
    assert dev.kicks[Mechanism.IOBAR][0] == 1


# -- capabilities ----------------------------------------------------------------------------------------
def test_capability_list_of_a_full_device(board):
    caps = capabilities(read_config(read32(board), (1, 0, 0)))  # device 0 offers pv, port, hc, mmio
    assert caps[0].cap_id == 0x01 and caps[0].known  # power management, skipped
    parsed = [parse_virtio_cap(c) for c in caps[1:]]
    kinds = [p.cfg_type for p in parsed if isinstance(p, VirtioCap)]
    assert kinds == [CfgType.COMMON, CfgType.NOTIFY, CfgType.ISR, CfgType.DEVICE]
    notify = next(p for p in parsed if isinstance(p, VirtioCap) and p.cfg_type is CfgType.NOTIFY)
    assert (notify.bar, notify.offset, notify.length, notify.notify_off_multiplier) == (
        MEM_BAR_INDEX,
        NOTIFY_OFF,
        WINDOW_LEN,
        NOTIFY_OFF_MULTIPLIER,
    )
    ex = parsed[-1]
    assert isinstance(ex, ExitlabCap)
    assert ex.offers == Offer.PV | Offer.PORT | Offer.HYPERCALL
    assert ex.assigned_port == ASSIGNED_PORT_BASE and ex.hypercall_nr == HC_MMIO_WRITE
    assert (ex.pv_bar, ex.pv_offset, ex.hc_offset, ex.window_len, ex.notify_off_multiplier) == (
        MEM_BAR_INDEX,
        PV_OFF,
        HC_OFF,
        WINDOW_LEN,
        NOTIFY_OFF_MULTIPLIER,
    )


def test_plain_virtio_device_has_no_exitlab_capability(board):
    caps = capabilities(read_config(read32(board), (4, 0, 0)))  # rotate: device 3 is mmio only
    assert CfgType.VENDOR not in [c.cfg_type for c in caps]


def _with_cap(raw: bytes) -> bytes:
    cfg = bytearray(256)
    cfg[STATUS] = STATUS_CAP_LIST
    cfg[CAP_PTR] = 0x40
    cfg[0x40 : 0x40 + len(raw)] = raw
    return bytes(cfg)


def test_unknown_capability_is_listed_not_parsed():
    cfg = bytearray(_with_cap(bytes([0x11, 0x50, 0, 0])))  # MSI-X: not one we know
    cfg[0x50 : 0x50 + 16] = bytes([CAP_ID_VNDR, 0, 16, 7]) + bytes(12)  # virtio cfg_type 7: unknown
    caps = capabilities(bytes(cfg))
    assert [(c.cap_id, c.known) for c in caps] == [(0x11, False), (CAP_ID_VNDR, False)]
    with pytest.raises(PciError, match="not a vendor capability"):
        parse_virtio_cap(caps[0])
    with pytest.raises(PciError, match="unknown virtio cfg_type 7"):
        parse_virtio_cap(caps[1])
    foreign = capabilities(_with_cap(bytes([CAP_ID_VNDR, 0, 28, 9, 0x34, 0x12]) + bytes(22)))
    with pytest.raises(PciError, match="unknown vendor data 0x1234"):
        parse_virtio_cap(foreign[0])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (bytes([CAP_ID_VNDR, 0x40, 16, 1]) + bytes(12), "loops back"),
        (bytes([0x01, 0x42, 0, 0]), "not a dword"),
        (bytes([0x01, 0x10, 0, 0]), "not a dword"),
        (bytes([CAP_ID_VNDR, 0, 2, 1]), "bad cap_len"),
        (bytes([CAP_ID_VNDR, 0, 12, 1]) + bytes(8), "too short"),
        (bytes([CAP_ID_VNDR, 0, 16, 9]) + bytes(12), "need 28"),
    ],
)
def test_malformed_capabilities_are_errors(raw, message):
    with pytest.raises(PciError, match=message):
        for cap in capabilities(_with_cap(raw)):
            parse_virtio_cap(cap)


def test_capabilities_needs_a_full_snapshot():
    with pytest.raises(PciError, match="not 256"):
        capabilities(bytes(64))


# -- notify addressing ---------------------------------------------------------------------------------
def test_notify_address_is_virtio_rule_and_bounds_checked():
    assert notify_address(0x1000, 3, 4, 0x400) == 0x100C
    assert notify_address(0x1000, 0xFF, 4, 0x400) == 0x13FC  # last slot: 2 bytes still fit
    with pytest.raises(PciError, match="outside the 0x400-byte notify window"):
        notify_address(0x1000, 0x100, 4, 0x400)
    with pytest.raises(PciError, match=">= 0"):
        notify_address(0x1000, -1, 4, 0x400)


def test_device_notify_address_and_bad_queues(board):
    dev = board.pci.devices()[0]  # 1 queue, offers pv/port/hc/mmio
    assert dev.notify_address(Mechanism.PV, 0) == PCI_MMIO_BASE + PV_OFF
    with pytest.raises(PciError, match="queue 1 is out of range"):
        dev.notify_address(Mechanism.PV, 1)
    with pytest.raises(PciError, match="not an MMIO notify mechanism"):
        dev.notify_address(Mechanism.PORT, 0)
    cfg_write(board, dev.bdf, COMMAND, 2, CMD_MEM | CMD_IO)
    board.bus.write(Space.MMIO, PCI_MMIO_BASE + PV_OFF + 4, 2, 1)  # queue_notify_off 1: no such queue
    board.bus.write(Space.MMIO, PCI_MMIO_BASE + PV_OFF + 2, 2, 0)  # not a multiple of the multiplier
    board.bus.write(Space.PIO, ASSIGNED_PORT_BASE, 2, 5)  # queue index 5 on the port
    board.bus.write(Space.PIO, ASSIGNED_PORT_BASE + 1, 1, 0)  # half a port
    board.bus.write(Space.MMIO, PCI_MMIO_BASE + HC_OFF, 2, 3)  # right address, wrong data
    assert dev.bad_notify == 4 and dev.bad_data == 1
    assert dev.state()["kicks"] == {"hypercall": {"0": 1}}


def test_queue_registers_follow_queue_select(board):
    dev = board.pci.devices()[3]  # 4 queues
    cfg_write(board, dev.bdf, COMMAND, 2, CMD_MEM)
    base = dev.mem_base
    assert board.bus.read(Space.MMIO, base + 0x12, 2) == 4
    for q in range(4):
        board.bus.write(Space.MMIO, base + 0x16, 2, q)
        assert board.bus.read(Space.MMIO, base + 0x1E, 2) == 3 - q
        assert board.bus.read(Space.MMIO, base + 0x18, 2) == 256
    board.bus.write(Space.MMIO, base + 0x16, 2, 9)
    assert board.bus.read(Space.MMIO, base + 0x18, 2) == 0  # absent queue: size 0


def test_bad_board_input():
    with pytest.raises(PciError, match="between 0 and 248"):
        pci_board(MAX_PCI_DEVICES + 1)
    with pytest.raises(PciError, match="unknown offer policy"):
        pci_board(1, offers="fastest")
    with pytest.raises(PciError, match="1..16 queues"):
        DeviceOffers(frozenset({Mechanism.MMIO}), queues=0)


# -- the discovery guest -------------------------------------------------------------------------------
GUEST = load_guest(builtin("pci_discover"))


def run_guest(devices: int, offers: str = "rotate", style: MmioStyle = MmioStyle.INPLACE):
    board = pci_board(devices, offers=offers)
    result = Machine(GUEST, board=board, mmio_style=style).run()
    assert result.stop.reason.value == "hlt", result.stop.message
    return board, result


def check_counts(board) -> dict[str, int]:
    """Every queue q of every served device was kicked exactly q+1 times, by the expected mechanism."""
    used: dict[str, int] = {}
    for dev in board.pci.devices():
        mech = dev.expected_mechanism()
        want = {mech.value: {str(q): q + 1 for q in range(dev.queues)}} if mech else {}
        assert dev.state()["kicks"] == want, dev.name
        assert (dev.bad_notify, dev.bad_data, dev.dropped) == (0, 0, 0), dev.name
        key = mech.value if mech else "none"
        used[key] = used.get(key, 0) + 1
    return used


@pytest.mark.parametrize(
    ("devices", "used"),
    [
        (1, {"pv": 1}),
        (15, {"pv": 3, "port": 3, "hypercall": 3, "mmio": 3, "iobar": 3}),
        (16, {"pv": 4, "port": 3, "hypercall": 3, "mmio": 3, "iobar": 3}),
        (64, {"pv": 13, "port": 13, "hypercall": 13, "mmio": 13, "iobar": 12}),
    ],
)
def test_discovery_guest_rotating_offers(devices, used):
    board, result = run_guest(devices)
    assert check_counts(board) == used
    line = (
        f"pci: devices={devices} pv={used.get('pv', 0)} port={used.get('port', 0)} "
        f"hypercall={used.get('hypercall', 0)} mmio={used.get('mmio', 0)} "
        f"iobar={used.get('iobar', 0)} none=0 bad=0\n"
    )
    assert result.console == line
    assert result.exits["hypercall"] == sum(
        sum(q + 1 for q in range(d.queues))
        for d in board.pci.devices()
        if d.expected_mechanism() is Mechanism.HYPERCALL
    )


def test_discovery_guest_exit_style_decodes_the_same():
    board, _ = run_guest(16, style=MmioStyle.EXIT)
    assert check_counts(board) == {"pv": 4, "port": 3, "hypercall": 3, "mmio": 3, "iobar": 3}


def test_io_bars_alone_stop_at_the_window_limit():
    board, result = run_guest(64, offers="iobar")
    assert check_counts(board) == {"iobar": 13, "none": 51}
    assert "iobar=13 none=51" in result.console


def test_assigned_ports_serve_64_devices():
    board, result = run_guest(64, offers="ports")
    assert check_counts(board) == {"port": 64}
    assert sorted(d.assigned_port for d in board.pci.devices()) == [
        ASSIGNED_PORT_BASE + 2 * i for i in range(64)
    ]
    assert "port=64 " in result.console


def test_offer_policies():
    assert device_offers("rotate", 3).mechanisms == frozenset({Mechanism.MMIO})
    assert device_offers("rotate", 7).queues == 4
    assert not device_offers("iobar", 0).modern


def test_run_cli_with_devices(capsys):
    assert main(["run", "pci_discover", "--devices", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["console"].startswith("pci: devices=16 pv=4 ")
    assert out["devices"]["virtio-02:00.0"]["kicks"] == {"port": {"0": 1, "1": 2}}
    assert main(["run", "pci_discover", "--devices", "-1"]) == 1
    assert "between 0 and 248" in capsys.readouterr().err


def test_default_board_is_unchanged_without_devices(capsys):
    assert main(["run", "kick_pio", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["devices"]["notify"]["kicks"] == {"0": 64, "1": 64, "2": 64, "3": 64}
    assert not any(name.startswith("virtio") for name in out["devices"])


def test_exitlab_vendor_id_constant():
    assert EXITLAB_VENDOR_ID == 0xE817
