"""emu/elf.py: headers validated before anything is allocated (issue 13 H6, T3), executable code
regions instead of the first PT_LOAD, and ElfBinary's functions, relocations and lines."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from emu import assemble as assemble_module
from emu.elf import ElfBinary, load_elf, read_binary
from emu.errors import GuestFormatError
from emu.platform import LOAD_ADDR, RAM_BASE, RAM_SIZE

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

PT_LOAD, PF_X, PF_R = 1, 1, 4


def make_elf(
    segments: list[dict[str, int]],
    cls: int = 64,
    payload: bytes = b"\xf4",
    e_type: int = 2,
    phnum: int | None = None,
    phentsize: int | None = None,
    entry: int = LOAD_ADDR,
) -> bytes:
    """A minimal little-endian x86 ELF: header, program headers, then `payload` (no sections).
    Each segment dict gives paddr/offset/filesz/memsz/flags; offset defaults to the payload."""
    ehsize, phsize = (64, 56) if cls == 64 else (52, 32)
    payload_off = ehsize + phsize * len(segments)
    ident = b"\x7fELF" + bytes([2 if cls == 64 else 1, 1, 1]) + bytes(9)
    machine = 62 if cls == 64 else 3
    n = len(segments) if phnum is None else phnum
    if cls == 64:
        hdr = ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, entry, ehsize, 0, 0, ehsize,
                                  phentsize or phsize, n, 64, 0, 0)
    else:
        hdr = ident + struct.pack("<HHIIIIIHHHHHH", e_type, machine, 1, entry, ehsize, 0, 0, ehsize,
                                  phentsize or phsize, n, 40, 0, 0)
    phdrs = b""
    for s in segments:
        off = s.get("offset", payload_off)
        filesz = s.get("filesz", len(payload))
        memsz = s.get("memsz", filesz)
        paddr, flags = s.get("paddr", LOAD_ADDR), s.get("flags", PF_R | PF_X)
        ptype = s.get("type", PT_LOAD)
        if cls == 64:
            phdrs += struct.pack("<IIQQQQQQ", ptype, flags, off, paddr, paddr, filesz, memsz, 0x1000)
        else:
            phdrs += struct.pack("<IIIIIIII", ptype, off, paddr, paddr, filesz, memsz, flags, 0x1000)
    return hdr + phdrs + payload


@pytest.mark.parametrize("cls", [64, 32])
def test_minimal_elf_loads_and_its_pf_x_segment_is_the_code(cls: int) -> None:
    img = load_elf(make_elf([{}], cls=cls, payload=b"\x66\x89\x02\xf4"))
    assert img.mode == cls and img.entry == LOAD_ADDR
    assert img.segments[0].addr == LOAD_ADDR and img.segments[0].data == b"\x66\x89\x02\xf4"
    (region,) = img.code_regions  # no section headers: the executable PT_LOAD, never the ELF header
    assert region.addr == LOAD_ADDR and region.data == b"\x66\x89\x02\xf4"


def test_load_elf_is_still_importable_from_emu_assemble() -> None:
    assert assemble_module.load_elf is load_elf


# -- H6: an 8 GiB segment is refused before anything is allocated -------------------------------------


@pytest.mark.parametrize("cls", [64, 32])
def test_huge_memsz_is_refused_before_allocating(cls: int) -> None:
    memsz = 8 << 30 if cls == 64 else 0xF0000000
    data = make_elf([{"memsz": memsz}], cls=cls)
    tracemalloc.start()
    try:
        with pytest.raises(GuestFormatError, match=r"segment 0 \(PT_LOAD.*p_memsz .*does not fit guest RAM"):
            load_elf(data, name="big.elf")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"load_elf allocated {peak} bytes before refusing"


def test_segment_outside_ram_names_the_ram_range() -> None:
    ram_end = RAM_BASE + RAM_SIZE
    with pytest.raises(GuestFormatError, match=f"{RAM_BASE:#x}-{ram_end - 1:#x}"):
        load_elf(make_elf([{"paddr": ram_end - 1, "filesz": 1, "memsz": 2}]))
    with pytest.raises(GuestFormatError, match="does not fit"):
        load_elf(make_elf([{"paddr": 0}]))  # page 0 is not RAM
    assert load_elf(make_elf([{"paddr": 0x40000}]), ram=(0x40000, 0x41000)).segments[0].addr == 0x40000


# -- T3: every malformed header is one GuestFormatError naming the segment and field --------------------


@pytest.mark.parametrize("cls", [64, 32])
@pytest.mark.parametrize(
    "seg, pattern",
    [
        ({"filesz": 8, "memsz": 4}, r"segment 0 \(PT_LOAD\): p_filesz 0x8 is larger than p_memsz 0x4"),
        ({"offset": 0x10000}, r"segment 0 \(PT_LOAD\): p_offset 0x10000 \+ p_filesz .* past the end"),
        ({"filesz": 0x10000}, r"segment 0 \(PT_LOAD\): p_offset .* \+ p_filesz 0x10000 .* past the end"),
        ({"memsz": "max"}, r"segment 0 \(PT_LOAD\): p_paddr 0x8000 \+ p_memsz 0xf+ wraps"),
        ({"paddr": "max", "filesz": 0, "memsz": 2}, r"segment 0 \(PT_LOAD\): p_paddr 0xf+ \+ p_memsz 0x2"),
    ],
)
def test_bad_segment_fields(cls: int, seg: dict[str, object], pattern: str) -> None:
    top = (1 << cls) - 1
    fields = {k: (top if v == "max" else v) for k, v in seg.items()}
    with pytest.raises(GuestFormatError, match=pattern):
        load_elf(make_elf([fields], cls=cls))  # type: ignore[list-item]
    with pytest.raises(GuestFormatError, match=pattern):  # the static reader applies the same checks
        ElfBinary(make_elf([fields], cls=cls), "x.elf")  # type: ignore[list-item]


def test_overlapping_segments_are_named() -> None:
    data = make_elf([{"paddr": 0x8000, "memsz": 0x200}, {"paddr": 0x8100}])
    pattern = r"segments 0 and 1 overlap: segment 0 \(p_paddr 0x8000, p_memsz 0x200\)"
    with pytest.raises(GuestFormatError, match=pattern):
        load_elf(data)


@pytest.mark.parametrize("phnum", [0xFFFE, 0xFFFF, 100])
def test_huge_phnum_is_one_clear_error(phnum: int) -> None:
    with pytest.raises(GuestFormatError, match=r"e_phnum|PN_XNUM"):
        load_elf(make_elf([{}], phnum=phnum))


def test_wrong_phentsize_and_no_segments() -> None:
    with pytest.raises(GuestFormatError, match="e_phentsize = 40, ELF needs 56"):
        load_elf(make_elf([{}], phentsize=40))
    with pytest.raises(GuestFormatError, match="no loadable segments"):
        load_elf(make_elf([{"type": 4}]))  # a PT_NOTE only


def test_header_level_errors() -> None:
    with pytest.raises(GuestFormatError, match="not an ELF"):
        load_elf(b"MZ\x90\x00")
    with pytest.raises(GuestFormatError, match="truncated ELF header"):
        load_elf(b"\x7fELF\x02\x01" + bytes(10))
    with pytest.raises(GuestFormatError, match="unknown ELF class 3"):
        load_elf(b"\x7fELF\x03\x01" + bytes(60))
    with pytest.raises(GuestFormatError, match="big-endian"):
        load_elf(b"\x7fELF\x02\x02" + bytes(60))
    with pytest.raises(GuestFormatError, match="relocatable object .* --static"):
        load_elf(make_elf([{}], e_type=1))


def test_section_headers_beyond_the_file(tmp_path: Path) -> None:
    good = make_elf([{}])
    bad = bytearray(good)
    struct.pack_into("<Q", bad, 40, 0x100000)  # e_shoff far away
    struct.pack_into("<H", bad, 60, 3)  # e_shnum 3
    with pytest.raises(GuestFormatError, match=r"section header table \(e_shoff 0x100000"):
        load_elf(bytes(bad))


# -- real compiler output -----------------------------------------------------------------------------

C_GUEST = r"""
#include <stdint.h>
static inline void pv_notify(volatile uint16_t *addr, uint16_t idx)
{
    asm volatile("movw %%ax, (%%rdx)" :: "a"(idx), "d"(addr) : "memory");
}
static const char table[] = {0x66, 0x89, 0x02, 0x66, 0x89, 0x02};
void kick(unsigned q) { pv_notify((volatile uint16_t *)(0xFEB00000UL + 4 * q), (uint16_t)q); }
void _start(void)
{
    for (unsigned q = 0; q < 4; q++)
        kick(q);
    (void)*(volatile const char *)table;
    asm("hlt");
}
"""


def _gcc(tmp_path: Path, src: str, out: str, *flags: str) -> Path:
    c = tmp_path / "g.c"
    c.write_text(src)
    dest = tmp_path / out
    subprocess.run(["gcc", *flags, "-o", str(dest), str(c)], check=True, capture_output=True)
    return dest


@needs_gcc
def test_gcc_executable_code_is_text_not_headers(tmp_path: Path) -> None:
    elf = _gcc(tmp_path, C_GUEST, "g.elf", "-O2", "-g", "-ffreestanding", "-nostdlib", "-static",
               "-Wl,-Ttext=0x8000", "-Wl,--build-id=none")
    img = assemble_module.load_guest(elf)
    names = [r.name for r in img.code_regions]
    assert names == [".text"]
    text = img.code_regions[0]
    assert text.addr == 0x8000 and img.code == text.data and not text.data.startswith(b"\x7fELF")
    # the agreed bytes in .rodata are data, and are not in any code region
    in_text = text.data.count(b"\x66\x89\x02")
    assert in_text >= 2 and elf.read_bytes().count(b"\x66\x89\x02") == in_text + 2


@needs_gcc
def test_object_functions_relocations_and_lines(tmp_path: Path) -> None:
    obj = _gcc(tmp_path, C_GUEST, "g.o", "-O2", "-g", "-ffreestanding", "-c")
    binary = read_binary(str(obj))
    assert binary.relocatable and binary.kind == "relocatable object" and binary.mode == 64
    funcs = [u.function for u in binary.code_units() if not u.gap]
    assert funcs == ["kick", "_start"]
    kick = next(u for u in binary.code_units() if u.function == "kick")
    at = kick.data.index(b"\x66\x89\x02")
    where = binary.locate(kick.addr + at)
    assert (where.section, where.symbol, where.offset, where.rip) == (".text", "kick", at, at)
    assert where.file == "g.c" and where.line == 5  # the asm line of the helper
    start = next(u for u in binary.code_units() if u.function == "_start")
    assert any(r.type == "R_X86_64_PC32" and ".rodata" in r.target for r in start.relocations)


def test_hostile_mutations_are_only_format_errors(tmp_path: Path) -> None:
    """A class test: random header/table corruptions of a real object and executable never raise
    anything but GuestFormatError, from loading or from the static reader."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    seeds = [
        _gcc(tmp_path, C_GUEST, "g.o", "-O2", "-g", "-ffreestanding", "-c").read_bytes(),
        _gcc(tmp_path, C_GUEST, "g.elf", "-O2", "-g", "-ffreestanding", "-nostdlib", "-static",
             "-Wl,-Ttext=0x8000", "-Wl,--build-id=none").read_bytes(),
    ]
    rng = random.Random(16)
    for seed in seeds:
        shoff = struct.unpack_from("<Q", seed, 40)[0]
        hot = list(range(16, 64)) + list(range(64, 64 + 56 * 4)) + list(range(shoff, len(seed)))
        for _ in range(150):
            data = bytearray(seed)
            for _ in range(rng.randint(1, 4)):
                data[rng.choice(hot)] = rng.randrange(256)
            if rng.random() < 0.2:
                data = data[: rng.randrange(len(data))]
            for use in (lambda d: load_elf(d), _read_everything):
                try:
                    use(bytes(data))
                except GuestFormatError:
                    pass


def _read_everything(data: bytes) -> None:
    b = ElfBinary(data, "m.o")
    for u in b.code_units():
        b.locate(u.addr)
