"""ELF guests and driver binaries: validated headers, loadable images, code units with symbols.

Two users, one parser:
- `load_elf` turns an ELF executable into a `GuestImage` to run. Every header is validated first
  (class, machine, the program header table, each PT_LOAD's offset/size fields, overlaps, and the
  platform's RAM range) and only then is anything allocated, so a hostile `p_memsz` is an error
  naming the segment and field, not an 8 GiB allocation.
- `ElfBinary` describes a file for the static contract sweep (`exitlab validate --static`):
  executables, relocatable objects (`.o`) and kernel modules (`.ko`), 32- and 64-bit. It lists
  the executable code function by function (STT_FUNC start and size), the relocations that patch
  it, and names addresses `func+0xoff` with `file:line` from DWARF line info (pyelftools).

The fixed-layout headers are read with `struct` so that every bad field gets its own message;
symbol tables, relocations and DWARF are read with pyelftools, whose failures are turned into
`GuestFormatError` (symbols, relocations) or a warning (DWARF: findings just lose file:line).
"""

from __future__ import annotations

import bisect
import dataclasses
import io
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from emu.errors import GuestFormatError
from emu.image import CodeRegion, GuestImage, Segment
from emu.platform import RAM_BASE, RAM_SIZE

ET_REL, ET_EXEC, ET_DYN = 1, 2, 3
EM_386, EM_X86_64 = 3, 62
PT_LOAD = 1
PF_X = 1
PN_XNUM = 0xFFFF
SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL, SHT_DYNSYM = 2, 4, 8, 9, 11
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
SHN_UNDEF, SHN_LORESERVE, SHN_XINDEX = 0, 0xFF00, 0xFFFF
STT_NOTYPE, STT_OBJECT, STT_FUNC = 0, 1, 2

_TYPE_NAMES = {ET_REL: "relocatable object", ET_EXEC: "executable", ET_DYN: "shared object"}

# Per class: (header size, Ehdr fields, Phdr format, Phdr size, Shdr format, Shdr size, Sym size)
_EHDR = {
    64: ("<HHIQQQIHHHHHH", 64),
    32: ("<HHIIIIIHHHHHH", 52),
}
_PHDR = {64: ("<IIQQQQQQ", 56), 32: ("<IIIIIIII", 32)}
_SHDR = {64: ("<IIQQQQIIQQ", 64), 32: ("<IIIIIIIIII", 40)}
_SYM_SIZE = {64: 24, 32: 16}
_SYM_VALUE_AT = {64: 8, 32: 4}
_SHDR_ADDR_AT = {64: 16, 32: 12}

# Bytes patched by each relocation type (x86-64 psABI, i386 psABI); unknown types count as 4.
_RELOC_SIZE_X64 = {
    1: 8,
    2: 4,
    3: 4,
    4: 4,
    9: 4,
    10: 4,
    11: 4,
    12: 2,
    13: 2,
    14: 1,
    15: 1,
    19: 4,
    20: 4,
    21: 4,
    22: 4,
    23: 4,
    24: 8,
    25: 8,
    26: 4,
    32: 4,
    33: 8,
    41: 4,
    42: 4,
}
_RELOC_SIZE_386 = {1: 4, 2: 4, 3: 4, 4: 4, 9: 4, 10: 4, 20: 2, 21: 2, 22: 1, 23: 1, 43: 4}
_LAYOUT_BASE = 0x100000  # where a relocatable object's sections are laid out for symbol/line lookup


@dataclass(frozen=True, slots=True)
class Header:
    cls: int  # 32 or 64 (ELFCLASS)
    type: int
    machine: int
    entry: int
    phoff: int
    shoff: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int
    shstrndx: int

    @property
    def kind(self) -> str:
        return _TYPE_NAMES.get(self.type, f"ELF type {self.type}")


@dataclass(frozen=True, slots=True)
class ProgramHeader:
    index: int
    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True, slots=True)
class SectionHeader:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int
    addralign: int = 1

    @property
    def executable(self) -> bool:
        return (self.flags & (SHF_ALLOC | SHF_EXECINSTR)) == SHF_ALLOC | SHF_EXECINSTR and self.size > 0


def parse_header(data: bytes, name: str) -> Header:
    """The ELF header, checked: magic, class, byte order, x86 machine, and header sizes."""
    if data[:4] != b"\x7fELF":
        raise GuestFormatError(f"{name}: not an ELF file")
    if len(data) < 6:
        raise GuestFormatError(f"{name}: truncated ELF header ({len(data)} bytes)")
    cls = {1: 32, 2: 64}.get(data[4])
    if cls is None:
        raise GuestFormatError(f"{name}: unknown ELF class {data[4]} (EI_CLASS must be 1 or 2)")
    if data[5] != 1:
        raise GuestFormatError(f"{name}: big-endian ELF (EI_DATA {data[5]}) is not x86")
    fmt, size = _EHDR[cls]
    if len(data) < size:
        raise GuestFormatError(f"{name}: truncated ELF header ({len(data)} bytes, ELF{cls} needs {size})")
    (
        e_type,
        e_machine,
        _version,
        e_entry,
        e_phoff,
        e_shoff,
        _flags,
        _ehsize,
        e_phentsize,
        e_phnum,
        e_shentsize,
        e_shnum,
        e_shstrndx,
    ) = struct.unpack_from(fmt, data, 16)
    if e_machine not in (EM_386, EM_X86_64):
        raise GuestFormatError(f"{name}: ELF machine {e_machine} is not x86 (3) or x86-64 (62)")
    return Header(
        cls,
        e_type,
        e_machine,
        e_entry,
        e_phoff,
        e_shoff,
        e_phentsize,
        e_phnum,
        e_shentsize,
        e_shnum,
        e_shstrndx,
    )


def _table(data: bytes, name: str, what: str, off: int, num: int, entsize: int, want: int, f: str) -> None:
    """A header table (program or section) must have the standard entry size and lie in the file."""
    if num == 0:
        return
    if entsize != want:
        raise GuestFormatError(f"{name}: {what} entry size e_{f}entsize = {entsize}, ELF needs {want}")
    if off + num * entsize > len(data):
        raise GuestFormatError(
            f"{name}: {what} table (e_{f}off {off:#x}, e_{f}num {num} x e_{f}entsize {entsize}) runs past "
            f"the end of the file ({len(data)} bytes)"
        )


def program_headers(data: bytes, hdr: Header, name: str) -> tuple[ProgramHeader, ...]:
    """Every program header, with each PT_LOAD's fields checked against the file and each other."""
    if hdr.phnum == PN_XNUM:
        raise GuestFormatError(
            f"{name}: extended program header numbering (e_phnum = PN_XNUM) is not supported"
        )
    fmt, size = _PHDR[hdr.cls]
    _table(data, name, "program header", hdr.phoff, hdr.phnum, hdr.phentsize, size, "ph")
    top = 1 << hdr.cls
    out: list[ProgramHeader] = []
    for i in range(hdr.phnum):
        f = struct.unpack_from(fmt, data, hdr.phoff + i * size)
        if hdr.cls == 64:
            p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _align = f
        else:
            p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, _align = f
        ph = ProgramHeader(i, p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz)
        if p_type == PT_LOAD:
            seg = f"segment {i} (PT_LOAD)"
            if p_filesz > p_memsz:
                raise GuestFormatError(
                    f"{name}: {seg}: p_filesz {p_filesz:#x} is larger than p_memsz {p_memsz:#x}"
                )
            if p_offset + p_filesz > len(data):
                raise GuestFormatError(
                    f"{name}: {seg}: p_offset {p_offset:#x} + p_filesz {p_filesz:#x} runs past the end of "
                    f"the file ({len(data)} bytes)"
                )
            if p_paddr + p_memsz > top:
                raise GuestFormatError(
                    f"{name}: {seg}: p_paddr {p_paddr:#x} + p_memsz {p_memsz:#x} wraps past the end of "
                    f"the {hdr.cls}-bit address space"
                )
        out.append(ph)
    loads = sorted((p for p in out if p.type == PT_LOAD and p.memsz), key=lambda p: p.paddr)
    for a, b in zip(loads, loads[1:], strict=False):
        if a.paddr + a.memsz > b.paddr:
            raise GuestFormatError(
                f"{name}: segments {a.index} and {b.index} overlap: segment {a.index} (p_paddr {a.paddr:#x}, "
                f"p_memsz {a.memsz:#x}) reaches {a.paddr + a.memsz:#x}, segment {b.index} starts at "
                f"p_paddr {b.paddr:#x}"
            )
    return tuple(out)


def section_headers(data: bytes, hdr: Header, name: str) -> tuple[SectionHeader, ...]:
    """Every section header with its name; sections with file contents must lie in the file."""
    if hdr.shoff == 0 or (hdr.shnum == 0 and hdr.shoff == 0):
        return ()
    if hdr.shnum == 0:
        raise GuestFormatError(
            f"{name}: extended section numbering (e_shnum = 0, e_shoff set) is not supported"
        )
    fmt, size = _SHDR[hdr.cls]
    _table(data, name, "section header", hdr.shoff, hdr.shnum, hdr.shentsize, size, "sh")
    raw = [struct.unpack_from(fmt, data, hdr.shoff + i * size) for i in range(hdr.shnum)]
    for i, (_n, sh_type, _fl, _addr, sh_offset, sh_size, *_rest) in enumerate(raw):
        if sh_type != SHT_NOBITS and sh_size and sh_offset + sh_size > len(data):
            raise GuestFormatError(
                f"{name}: section {i}: sh_offset {sh_offset:#x} + sh_size {sh_size:#x} runs past the end of "
                f"the file ({len(data)} bytes)"
            )
    if hdr.shstrndx == SHN_XINDEX or hdr.shstrndx >= hdr.shnum:
        raise GuestFormatError(f"{name}: e_shstrndx {hdr.shstrndx} is not a section (e_shnum {hdr.shnum})")
    strtab = raw[hdr.shstrndx]
    names = data[strtab[4] : strtab[4] + strtab[5]] if strtab[1] != SHT_NOBITS else b""
    out = []
    for i, (
        sh_name,
        sh_type,
        sh_flags,
        sh_addr,
        sh_offset,
        sh_size,
        sh_link,
        sh_info,
        sh_addralign,
        sh_entsize,
    ) in enumerate(raw):
        if sh_name >= len(names) and sh_name:
            raise GuestFormatError(
                f"{name}: section {i}: sh_name {sh_name:#x} is outside the section name table"
            )
        end = names.find(b"\0", sh_name)
        label = names[sh_name : end if end >= 0 else len(names)].decode("utf-8", "replace")
        out.append(
            SectionHeader(
                i, label, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_entsize,
                sh_addralign,
            )
        )
    return tuple(out)


def _ram_range() -> tuple[int, int]:
    return RAM_BASE, RAM_BASE + RAM_SIZE


def load_elf(
    data: bytes, name: str = "guest.elf", mode: int | None = None, ram: tuple[int, int] | None = None
) -> GuestImage:
    """Load PT_LOAD segments at their physical addresses; the mode follows ELFCLASS unless given.

    All headers are validated, and every segment checked against guest RAM `ram` = (start, end)
    (default: the platform's), before any segment's bytes are built."""
    hdr = parse_header(data, name)
    if hdr.type == ET_REL:
        raise GuestFormatError(
            f"{name}: a relocatable object (ET_REL) cannot run; "
            f"check it with `exitlab validate --static {name}`"
        )
    if hdr.type not in (ET_EXEC, ET_DYN):
        raise GuestFormatError(f"{name}: ELF type {hdr.type} is not an executable (ET_EXEC or ET_DYN)")
    phdrs = program_headers(data, hdr, name)
    sections = section_headers(data, hdr, name)
    lo, hi = ram or _ram_range()
    loads = [p for p in phdrs if p.type == PT_LOAD and p.memsz]
    if not loads:
        raise GuestFormatError(f"{name}: no loadable segments")
    for p in loads:
        if p.paddr < lo or p.paddr + p.memsz > hi:
            raise GuestFormatError(
                f"{name}: segment {p.index} (PT_LOAD, p_paddr {p.paddr:#x}, p_memsz {p.memsz:#x}) "
                f"does not fit guest RAM {lo:#x}-{hi - 1:#x}"
            )
    segs = tuple(
        Segment(p.paddr, data[p.offset : p.offset + p.filesz] + bytes(p.memsz - p.filesz)) for p in loads
    )
    exe = tuple(
        CodeRegion(s.name, s.addr, data[s.offset : s.offset + s.size])
        for s in sections
        if s.executable and s.type != SHT_NOBITS
    )
    if not exe:
        exe = tuple(
            CodeRegion(f"segment {p.index}", p.vaddr, data[p.offset : p.offset + p.filesz])
            for p in loads
            if p.flags & PF_X and p.filesz
        )
    return GuestImage(
        name=name,
        mode=mode or hdr.cls,
        entry=hdr.entry,
        segments=segs,
        executable=exe,
        elf=_LazyBinary(data, name),
    )


# -- static analysis ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relocation:
    """`size` bytes at `addr` (sweep address) are patched at link/load time: not constants."""

    addr: int
    size: int
    type: str
    target: str

    def describe(self) -> str:
        return f"{self.type} against `{self.target}`"


@dataclass(frozen=True, slots=True)
class CodeUnit:
    """Bytes to sweep as one run of code: a whole function, or a whole executable section when it
    has no sized function symbols. `gap` units are the bytes between functions: alignment padding,
    data in the text section, or code without a symbol size; the sweep does not decode them for
    findings (it only says when they are not padding)."""

    section: str
    addr: int
    data: bytes
    function: str | None = None
    gap: bool = False
    relocations: tuple[Relocation, ...] = ()

    @property
    def end(self) -> int:
        return self.addr + len(self.data)


@dataclass(frozen=True, slots=True)
class Location:
    """Where an address is, for a human: `symbol+0xoffset (file:line)` and the section."""

    section: str | None = None
    rip: int | None = None  # the address to show: section offset in an object, else the address
    symbol: str | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None

    def label(self) -> str:
        parts = []
        if self.symbol is not None:
            parts.append(f"{self.symbol}+{self.offset or 0:#x}")
        elif self.section is not None and self.rip is not None:
            parts.append(f"{self.section}+{self.rip:#x}")
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "symbol": self.symbol,
            "offset": self.offset,
            "file": self.file,
            "line": self.line,
        }


def _library_errors() -> tuple[type[BaseException], ...]:
    from elftools.common.exceptions import ELFError
    from elftools.construct.core import ConstructError

    return (
        ELFError,
        ConstructError,
        struct.error,
        ValueError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        TypeError,
        AttributeError,
    )


class ElfBinary:
    """A driver binary for static analysis: code units, relocations, symbols and DWARF lines.

    A relocatable object has every allocated section at address 0; to name addresses uniquely its
    sections are laid out at distinct addresses (a copy of the headers and symbol values is
    patched, as a linker would), and pyelftools' DWARF relocation then yields those addresses too.
    Findings are still shown as section offsets, as `objdump -d` shows them.
    """

    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self.header = parse_header(data, name)
        self.mode = self.header.cls
        self.kind = self.header.kind
        self.relocatable = self.header.type == ET_REL
        self.program_headers = program_headers(data, self.header, name)
        sections = section_headers(data, self.header, name)
        self.warnings: list[str] = []
        if self.relocatable:
            data, sections = self._lay_out(data, sections)
        self.sections = sections
        self._data = data
        self._origin = {s.index: (s.addr if self.relocatable else 0) for s in sections}
        self._elf = self._guard("the section headers", self._open)
        self._funcs: list[tuple[int, int, str, int]] = []  # start, end, name, section index
        self._labels: list[tuple[int, str, int]] = []  # start, name, section index (any code symbol)
        self._guard("the symbol table", self._read_symbols)
        self._lines: list[tuple[int, int, list[tuple[int, str, int]]]] | None = None

    # -- reading -----------------------------------------------------------------------------------

    def _guard(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except GuestFormatError:
            raise
        except _library_errors() as exc:
            raise GuestFormatError(f"{self.name}: cannot read {what}: {exc}") from None

    def _open(self) -> Any:
        from elftools.elf.elffile import ELFFile

        return ELFFile(io.BytesIO(self._data))

    def _lay_out(
        self, data: bytes, sections: tuple[SectionHeader, ...]
    ) -> tuple[bytes, tuple[SectionHeader, ...]]:
        cls = self.header.cls
        buf = bytearray(data)
        base: dict[int, int] = {}
        cursor = _LAYOUT_BASE
        for s in sections:
            if s.flags & SHF_ALLOC and s.size:
                cursor = (cursor + 0xFFF) & ~0xFFF
                base[s.index] = cursor
                cursor += s.size
        if cursor >= 1 << cls:
            raise GuestFormatError(f"{self.name}: allocated sections total {cursor:#x} bytes: too large")
        addr_fmt = "<Q" if cls == 64 else "<I"
        shsize = _SHDR[cls][1]
        for idx, b in base.items():
            struct.pack_into(addr_fmt, buf, self.header.shoff + idx * shsize + _SHDR_ADDR_AT[cls], b)
        symsize = _SYM_SIZE[cls]
        for s in sections:
            if s.type not in (SHT_SYMTAB, SHT_DYNSYM):
                continue
            if s.entsize != symsize:
                raise GuestFormatError(
                    f"{self.name}: section {s.name}: symbol entry size {s.entsize}, ELF needs {symsize}"
                )
            for off in range(s.offset, s.offset + s.size - symsize + 1, symsize):
                shndx = struct.unpack_from("<H", buf, off + (6 if cls == 64 else 14))[0]
                if shndx in base:
                    at = off + _SYM_VALUE_AT[cls]
                    (value,) = struct.unpack_from(addr_fmt, buf, at)
                    struct.pack_into(addr_fmt, buf, at, (value + base[shndx]) % (1 << cls))
        laid = tuple(dataclasses.replace(s, addr=base.get(s.index, s.addr)) for s in sections)
        return bytes(buf), laid

    def _read_symbols(self) -> None:
        from elftools.elf.sections import SymbolTableSection

        code = {s.index for s in self.sections if s.executable}
        table = next((s for s in self._elf.iter_sections() if s["sh_type"] == "SHT_SYMTAB"), None)
        table = table or next((s for s in self._elf.iter_sections() if s["sh_type"] == "SHT_DYNSYM"), None)
        if not isinstance(table, SymbolTableSection):
            return
        funcs: dict[tuple[int, int], tuple[int, str, int]] = {}
        for sym in table.iter_symbols():
            shndx = sym["st_shndx"]
            if not isinstance(shndx, int) or shndx not in code or not sym.name:
                continue
            kind, start, size = sym["st_info"]["type"], sym["st_value"], sym["st_size"]
            if kind == "STT_FUNC" and size:
                key = (shndx, start)
                prefer = sym["st_info"]["bind"] != "STB_LOCAL"
                if key not in funcs or (prefer and funcs[key][2] == 0):
                    funcs[key] = (start + size, sym.name, int(prefer))
            if kind in ("STT_FUNC", "STT_NOTYPE"):
                self._labels.append((start, sym.name, shndx))
        self._funcs = sorted((start, end, name, shndx) for (shndx, start), (end, name, _p) in funcs.items())
        self._labels.sort()

    def _relocations(self, section: SectionHeader) -> tuple[Relocation, ...]:
        from elftools.elf.descriptions import describe_reloc_type
        from elftools.elf.relocation import RelocationSection

        sizes = _RELOC_SIZE_X64 if self.header.machine == EM_X86_64 else _RELOC_SIZE_386
        out: list[Relocation] = []
        for rs in self._elf.iter_sections():
            if not isinstance(rs, RelocationSection) or rs["sh_info"] != section.index:
                continue
            symtab = self._elf.get_section(rs["sh_link"]) if rs["sh_link"] else None
            for r in rs.iter_relocations():
                rtype = r["r_info_type"]
                target = "?"
                if symtab is not None and hasattr(symtab, "get_symbol"):
                    sym = symtab.get_symbol(r["r_info_sym"])
                    target = sym.name
                    if (
                        not target
                        and isinstance(sym["st_shndx"], int)
                        and sym["st_shndx"] < len(self.sections)
                    ):
                        target = self.sections[sym["st_shndx"]].name
                addend = r["r_addend"] if r.is_RELA() else 0
                if addend:
                    target += f"{addend:+#x}"
                start = r["r_offset"] + (section.addr if self.relocatable else 0)
                out.append(
                    Relocation(start, sizes.get(rtype, 4), describe_reloc_type(rtype, self._elf), target)
                )
        return tuple(sorted(out, key=lambda r: r.addr))

    # -- code ----------------------------------------------------------------------------------------

    def code_units(self) -> tuple[CodeUnit, ...]:
        """Every executable section split into functions (and the gaps between them); a section
        without sized function symbols is one unit. Sections are read as stored in the file."""
        units: list[CodeUnit] = []
        exe = [s for s in self.sections if s.executable and s.type != SHT_NOBITS]
        if not exe and not self.sections:
            for p in self.program_headers:
                if p.type == PT_LOAD and p.flags & PF_X and p.filesz:
                    data = self._data[p.offset : p.offset + p.filesz]
                    units.append(CodeUnit(f"segment {p.index}", p.vaddr, data))
            return tuple(units)
        for s in exe:
            data = self._data[s.offset : s.offset + s.size]
            relocs = self._guard(f"the relocations of {s.name}", lambda s=s: self._relocations(s))
            funcs = [(a, e, n) for a, e, n, i in self._funcs if i == s.index]
            if not funcs:
                units.append(CodeUnit(s.name, s.addr, data, None, False, relocs))
                continue
            cursor = s.addr
            for start, end, fname in funcs:
                start, end = max(start, cursor, s.addr), min(end, s.addr + s.size)
                if start >= end:
                    continue
                if start > cursor:
                    units.append(self._unit(s, data, cursor, start, None, True, relocs))
                units.append(self._unit(s, data, start, end, fname, False, relocs))
                cursor = end
            if cursor < s.addr + s.size:
                units.append(self._unit(s, data, cursor, s.addr + s.size, None, True, relocs))
        return tuple(units)

    @staticmethod
    def _unit(
        s: SectionHeader,
        data: bytes,
        start: int,
        end: int,
        fn: str | None,
        gap: bool,
        relocs: Iterable[Relocation],
    ) -> CodeUnit:
        mine = tuple(r for r in relocs if r.addr < end and r.addr + r.size > start)
        return CodeUnit(s.name, start, data[start - s.addr : end - s.addr], fn, gap, mine)

    # -- names -----------------------------------------------------------------------------------------

    def _section_at(self, addr: int) -> SectionHeader | None:
        for s in self.sections:
            if s.executable and s.addr <= addr < s.addr + s.size:
                return s
        return None

    def locate(self, addr: int) -> Location:
        """`addr` (a sweep or run-time address) as section, shown address, symbol+offset, file:line."""
        sec = self._section_at(addr)
        section = sec.name if sec is not None else None
        rip = addr - self._origin.get(sec.index, 0) if sec is not None else addr
        symbol = offset = None
        i = bisect.bisect_right([f[0] for f in self._funcs], addr) - 1
        if i >= 0 and self._funcs[i][0] <= addr < self._funcs[i][1]:
            symbol, offset = self._funcs[i][2], addr - self._funcs[i][0]
        elif sec is not None:
            j = bisect.bisect_right([lb[0] for lb in self._labels], addr) - 1
            while j >= 0 and self._labels[j][2] != sec.index:
                j -= 1
            if j >= 0:
                symbol, offset = self._labels[j][1], addr - self._labels[j][0]
        file, line = self._line(addr)
        return Location(section, rip, symbol, offset, file, line)

    def _line(self, addr: int) -> tuple[str | None, int | None]:
        if self._lines is None:
            self._lines = []
            try:
                self._read_lines()
            except Exception as exc:  # a third-party parser on hostile DWARF: lose file:line, not the run
                self._lines = []
                self.warnings.append(
                    f"DWARF line info unreadable ({type(exc).__name__}: {exc}); no file:line"
                )
            self._lines.sort(key=lambda s: s[0])
        best: tuple[str, int] | None = None
        best_start = -1
        for start, end, rows in self._lines:  # sequences may nest in odd objects: take the innermost
            if start <= addr < end and start > best_start:
                k = bisect.bisect_right([r[0] for r in rows], addr) - 1
                if k >= 0:
                    best, best_start = (rows[k][1], rows[k][2]), start
        return best if best is not None else (None, None)

    def _read_lines(self) -> None:
        assert self._lines is not None
        if not self._elf.has_dwarf_info():
            return
        dwarf = self._elf.get_dwarf_info()
        for cu in dwarf.iter_CUs():
            lp = dwarf.line_program_for_CU(cu)
            if lp is None:
                continue
            files = lp["file_entry"]
            v5 = lp["version"] >= 5
            rows: list[tuple[int, str, int]] = []
            for entry in lp.get_entries():
                st = entry.state
                if st is None:
                    continue
                if st.end_sequence:
                    if rows:
                        self._lines.append((rows[0][0], st.address, rows))  # program order: the last row wins
                    rows = []
                    continue
                idx = st.file if v5 else st.file - 1
                fname = files[idx].name if 0 <= idx < len(files) else b"?"
                rows.append(
                    (
                        st.address,
                        fname.decode("utf-8", "replace") if isinstance(fname, bytes) else str(fname),
                        st.line,
                    )
                )


class _LazyBinary:
    """An executable guest's symbols, parsed only when a finding needs a name."""

    def __init__(self, data: bytes, name: str) -> None:
        self._data, self._name = data, name
        self._binary: ElfBinary | None = None

    @property
    def binary(self) -> ElfBinary:
        if self._binary is None:
            self._binary = ElfBinary(self._data, self._name)
        return self._binary

    def locate(self, addr: int) -> Location:
        return self.binary.locate(addr)

    def code_units(self) -> tuple[CodeUnit, ...]:
        return self.binary.code_units()

    @property
    def warnings(self) -> list[str]:
        return self.binary.warnings


def read_binary(path: str, data: bytes | None = None) -> ElfBinary:
    """An ELF driver binary from `path` for `exitlab validate --static`."""
    from pathlib import Path

    p = Path(path)
    if data is None:
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise GuestFormatError(f"{p}: cannot read ({exc.strerror})") from None
    return ElfBinary(data, p.name)
