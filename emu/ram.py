"""Guest RAM as a host buffer: the one view both the Unicorn machine and the KVM engine read.

The host owns the bytes (a ctypes buffer mapped with `mem_map_ptr`, or an mmap given to KVM as a
memslot), so reading guest memory never goes through the emulator.
"""

from __future__ import annotations

from emu.assemble import GuestImage
from emu.errors import EmulationError, GuestFormatError


class GuestRam:
    def __init__(self, view: memoryview, base: int) -> None:
        self.view = view
        self.base = base
        self.size = len(view)

    def read(self, addr: int, size: int) -> bytes:
        """The bytes at `addr`; shorter than `size` where RAM ends, empty outside RAM."""
        off = addr - self.base
        if off < 0 or off >= self.size:
            return b""
        return bytes(self.view[off : min(off + size, self.size)])

    def write(self, addr: int, data: bytes) -> None:
        off = addr - self.base
        if off < 0 or off + len(data) > self.size:
            raise EmulationError(f"guest write of {len(data)} bytes at {addr:#x} is outside RAM")
        self.view[off : off + len(data)] = data

    def load(self, image: GuestImage) -> None:
        for seg in image.segments:
            off = seg.addr - self.base
            if off < 0 or off + len(seg.data) > self.size:
                raise GuestFormatError(
                    f"{image.name}: segment at {seg.addr:#x} (+{len(seg.data):#x}) is outside RAM "
                    f"{self.base:#x}-{self.base + self.size - 1:#x}"
                )
            self.view[off : off + len(seg.data)] = seg.data
