import pytest

from emu.bus import Bus, Space
from emu.devices import ConsoleDevice, IoEventFd, NotifyDevice, RegisterDevice
from emu.errors import BusError


def test_overlap_rejected_with_both_names():
    bus = Bus()
    bus.add(Space.MMIO, 0x1000, 0x100, RegisterDevice("a"))
    with pytest.raises(BusError, match="overlaps.*a"):
        bus.add(Space.MMIO, 0x10FF, 0x10, RegisterDevice("b"))
    bus.add(Space.MMIO, 0x1100, 0x10, RegisterDevice("c"))  # adjacent is fine
    bus.add(Space.PIO, 0x1000, 0x100, RegisterDevice("d"))  # other space is fine


def test_bad_ranges():
    bus = Bus()
    with pytest.raises(BusError):
        bus.add(Space.PIO, 0xFFFF, 2, RegisterDevice())
    with pytest.raises(BusError):
        bus.add(Space.MMIO, 0, 0, RegisterDevice())


def test_dispatch_offsets_and_unclaimed_reads_all_ones():
    bus = Bus()
    regs = RegisterDevice()
    bus.add(Space.MMIO, 0x2000, 0x1000, regs)
    bus.write(Space.MMIO, 0x2010, 4, 0xDEADBEEF)
    assert regs.mem[0x10:0x14] == bytes.fromhex("efbeadde")
    assert bus.read(Space.MMIO, 0x2012, 2) == 0xDEAD
    assert bus.read(Space.MMIO, 0x9000, 2) == 0xFFFF
    bus.write(Space.PIO, 0x80, 1, 1)
    assert bus.unclaimed == {"mmio_read": 1, "mmio_write": 0, "pio_in": 0, "pio_out": 1}


def test_notify_counts_queue_and_eventfds():
    n = NotifyDevice(queues=2)
    dm = n.register(IoEventFd(offset=0x40, size=2, datamatch=5))
    n.write(0, 2, 0)
    n.write(4, 2, 1)
    n.write(0x40, 2, 5)
    n.write(0x40, 2, 6)  # datamatch mismatch
    n.write(0x40, 4, 5)  # size mismatch
    n.notify(4)  # address-only kick of queue 1
    n.notify(0x800)  # no registration there
    assert dict(n.kicks) == {0: 1, 1: 2, 5: 2, 6: 1}
    assert n.eventfd_counts[dm] == 1
    assert n.unmatched == 1


def test_console_and_lsr():
    out = []
    c = ConsoleDevice(echo=out.append)
    c.write(0, 1, ord("x"))
    assert c.read(5, 1) & 0x20
    assert c.text == "x" and out == ["x"]
