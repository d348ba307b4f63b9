import struct
import subprocess

import pytest

from emu import assemble as asm_mod
from emu.assemble import assemble, load_elf, load_guest, load_raw, source_mode
from emu.errors import AssemblyError, GuestFormatError, ToolMissingError
from emu.platform import LOAD_ADDR, NOTIFY_MMIO


def test_symbols_and_labels_resolve_at_load_address():
    img = assemble("mov rdx, NOTIFY_MMIO\nlea rax, [rip + target]\nmov rbx, offset target\ntarget: hlt\n")
    code = img.code
    assert img.entry == LOAD_ADDR
    # mov rdx, imm64 with NOTIFY_MMIO
    assert code[:2] == b"\x48\xba" and int.from_bytes(code[2:10], "little") == NOTIFY_MMIO
    # the absolute label address is LOAD_ADDR + offset of `target` (ld resolved it, not 0)
    target = LOAD_ADDR + len(code) - 1
    assert int.from_bytes(code[-5:-1], "little") == target or target.to_bytes(4, "little") in code


@pytest.mark.parametrize("mode,expect", [(16, "b80500"), (32, "b805000000"), (64, "b805000000")])
def test_modes(mode, expect):
    assert assemble("mov eax, 5" if mode != 16 else "mov ax, 5", mode=mode).code.hex() == expect


def test_error_names_file_line_and_message():
    with pytest.raises(AssemblyError) as ei:
        assemble("nop\nnop\nmovv rax, 1\n", name="drv.S")
    assert ei.value.line == 3
    assert "drv.S:3" in str(ei.value) and "movv" in str(ei.value)


def test_undefined_label_names_line():
    with pytest.raises(AssemblyError) as ei:
        assemble("nop\njmp nowhere\n", name="u.S")
    assert ei.value.line == 2 and "nowhere" in str(ei.value)
    assert "/tmp" not in str(ei.value)


def test_bad_mode():
    with pytest.raises(AssemblyError):
        assemble("nop", mode=8)


def test_missing_as_says_which_package(monkeypatch):
    monkeypatch.setattr(asm_mod.shutil, "which", lambda name: None)
    with pytest.raises(ToolMissingError, match="binutils"):
        assemble("nop")


def test_raw_and_mode_magic(tmp_path):
    p = tmp_path / "g.bin"
    p.write_bytes(b"\xf4")
    img = load_guest(p)
    assert img.mode == 64 and img.code == b"\xf4"
    s = tmp_path / "g.S"
    s.write_text("# exitlab: mode=32\nmov eax, 1\nhlt\n")
    assert load_guest(s).mode == 32
    assert source_mode("; exitlab: mode=16") == 16
    with pytest.raises(GuestFormatError):
        load_raw(b"")


def test_elf_input(tmp_path):
    src = tmp_path / "e.s"
    src.write_text(".intel_syntax noprefix\n.globl _start\n_start: mov eax, 7\nhlt\n")
    obj, elf = tmp_path / "e.o", tmp_path / "e.elf"
    subprocess.run(["as", "--64", "-o", obj, src], check=True)
    subprocess.run(["ld", "-Ttext=0x9000", "-o", elf, obj], check=True)
    img = load_guest(elf)
    assert img.mode == 64 and img.entry == 0x9000
    assert any(
        seg.addr == 0x9000 and seg.data.startswith(b"\xb8\x07\x00\x00\x00\xf4") for seg in img.segments
    )


def test_elf_garbage():
    with pytest.raises(GuestFormatError):
        load_elf(b"\x7fELF" + b"\x02\x01" + b"\x00" * 10)
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<H", hdr, 18, 40)  # ARM
    with pytest.raises(GuestFormatError, match="not x86"):
        load_elf(bytes(hdr))
