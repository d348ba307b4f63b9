"""What a guest is once loaded: bytes for guest RAM, an entry point, and which bytes are code.

Kept apart from the loaders (emu/assemble.py for snippets and raw binaries, emu/elf.py for ELF) so
that both can build images and every consumer (machine, KVM engine, validator) imports one type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Segment:
    addr: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CodeRegion:
    """Executable bytes a static tool may decode. `name` says where they came from (an ELF section
    such as `.text`, or `image` for a snippet or raw binary, which has no code/data distinction)."""

    name: str
    addr: int
    data: bytes

    @property
    def end(self) -> int:
        return self.addr + len(self.data)


@dataclass(frozen=True, slots=True)
class GuestImage:
    """Bytes to place in guest RAM and where to start.

    `executable` lists the code a static tool should sweep. For an ELF it is the executable sections
    (or PT_LOAD segments with PF_X when there are no section headers) and never the headers or data;
    None means every segment is code (snippets and raw binaries carry no such information). `elf`
    is the parsed file (emu.elf.ElfBinary) when the image came from one, for symbols and lines.
    """

    name: str
    mode: int
    entry: int
    segments: tuple[Segment, ...]
    executable: tuple[CodeRegion, ...] | None = None
    elf: Any = field(default=None, compare=False, repr=False)

    @property
    def load_addr(self) -> int:
        return self.segments[0].addr if self.segments else self.entry

    @property
    def code_regions(self) -> tuple[CodeRegion, ...]:
        if self.executable is not None:
            return self.executable
        return tuple(CodeRegion("image", s.addr, s.data) for s in self.segments)

    @property
    def code(self) -> bytes:
        """The first code region's bytes (for snippets and raw binaries, the whole image)."""
        regions = self.code_regions
        return regions[0].data if regions else b""
