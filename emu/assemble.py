"""Guest images: Intel-syntax snippets assembled by GNU as + ld, raw binaries, and (via emu.elf) ELF files.

GNU `as` is the reference assembler. The snippet is linked by `ld --oformat binary` at the load
address, so labels and absolute references resolve (objcopy alone would leave them at 0). The
platform's symbols are predefined with `--defsym`, so a snippet writes `mov rdx, NOTIFY_MMIO`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from emu.elf import load_elf, parse_header, section_headers
from emu.errors import AssemblyError, GuestFormatError, ToolMissingError
from emu.image import CodeRegion, GuestImage, Segment
from emu.inputs import read_file
from emu.limits import GUEST_FILE_MAX
from emu.platform import DEFAULT_SYMBOLS, LOAD_ADDR

__all__ = ["MODES", "CodeRegion", "GuestImage", "Segment", "assemble", "load_elf", "load_guest", "load_raw",
           "source_mode"]

MODES = (16, 32, 64)
_AS_FLAGS = {16: ["--32"], 32: ["--32"], 64: ["--64"]}
_LD_EMUL = {16: "elf_i386", 32: "elf_i386", 64: "elf_x86_64"}
_CODE_DIRECTIVE = {16: ".code16", 32: ".code32", 64: ".code64"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(
            f"GNU `{name}` was not found on PATH; install binutils (Debian/Ubuntu: apt-get install binutils)"
        )
    return path


def _check_mode(mode: int) -> None:
    if mode not in MODES:
        raise AssemblyError(f"mode must be one of 16, 32, 64 (got {mode})")


def _diagnostics(stderr: str, file: str) -> AssemblyError:
    """Keep the assembler's (or linker's) own words, but name the user's file and line, not temp paths."""
    where = re.compile(r"(?:\S*/)?" + re.escape(file) + r":(\d+): (.*)$")
    lines = []
    first_line: int | None = None
    for raw in stderr.splitlines():
        m = where.search(raw.strip())
        if m:
            if first_line is None:
                first_line = int(m[1])
            lines.append(f"{file}:{m[1]}: {m[2]}")
        elif raw.strip() and "Assembler messages" not in raw:
            lines.append(re.sub(r"\S*/exitlab-as-[^/\s]+/", "", raw.strip()))
    message = "\n".join(lines) or stderr.strip() or "assembler failed"
    return AssemblyError(message, file=file, line=first_line)


def assemble(
    source: str,
    mode: int = 64,
    name: str = "snippet.S",
    load_addr: int = LOAD_ADDR,
    symbols: dict[str, int] | None = None,
) -> GuestImage:
    """Assemble an Intel-syntax snippet; errors name `name`, the line and the assembler's message."""
    _check_mode(mode)
    as_bin, ld_bin = _tool("as"), _tool("ld")
    syms = dict(DEFAULT_SYMBOLS if symbols is None else symbols)
    base = os.path.basename(name) or "snippet.S"
    with tempfile.TemporaryDirectory(prefix="exitlab-as-") as tmp:
        prelude = Path(tmp, "exitlab-prelude.s")
        prelude.write_text(f".intel_syntax noprefix\n{_CODE_DIRECTIVE[mode]}\n.text\n")
        src = Path(tmp, base)
        src.write_text(source if source.endswith("\n") else source + "\n")
        obj, out = Path(tmp, "guest.o"), Path(tmp, "guest.bin")
        cmd = [as_bin, *_AS_FLAGS[mode], "-g", "-o", str(obj)]
        for sym, val in syms.items():
            cmd += ["--defsym", f"{sym}={val:#x}"]
        proc = subprocess.run([*cmd, str(prelude), str(src)], capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise _diagnostics(proc.stderr, base)
        script = Path(tmp, "link.ld")
        script.write_text(
            f"SECTIONS {{ . = {load_addr:#x};"
            " .text : { *(.text*) *(.rodata*) *(.data*) *(.bss*) *(COMMON) }"
            " /DISCARD/ : { *(.note*) *(.comment) *(.eh_frame*) } }\n"
        )
        proc = subprocess.run(
            [
                ld_bin,
                "-m",
                _LD_EMUL[mode],
                "-T",
                str(script),
                "--oformat",
                "binary",
                "-o",
                str(out),
                str(obj),
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if proc.returncode != 0:
            raise _diagnostics(proc.stderr, base)
        data = out.read_bytes()
        text = _text_size(obj.read_bytes(), load_addr)
    if not data:
        raise AssemblyError(f"{base}: the snippet assembled to no bytes", file=base)
    code = (CodeRegion(".text", load_addr, data[:text]),) if 0 < text < len(data) else None
    return GuestImage(name=base, mode=mode, entry=load_addr, segments=(Segment(load_addr, data),),
                      executable=code)


def _text_size(obj: bytes, load_addr: int) -> int:
    """How many bytes of the linked snippet are its .text sections (the link script puts them first,
    in input order, each at its alignment; .rodata/.data/.bss follow), so static tools do not sweep
    a snippet's data as code."""
    hdr = parse_header(obj, "guest.o")
    end = load_addr
    for s in section_headers(obj, hdr, "guest.o"):
        if s.name == ".text" or s.name.startswith(".text."):
            align = max(s.addralign, 1)
            end = (end + align - 1) // align * align + s.size
    return end - load_addr


def load_raw(data: bytes, mode: int = 64, name: str = "raw", load_addr: int = LOAD_ADDR) -> GuestImage:
    _check_mode(mode)
    if not data:
        raise GuestFormatError(f"{name}: empty guest image")
    return GuestImage(name=name, mode=mode, entry=load_addr, segments=(Segment(load_addr, bytes(data)),))


_MODE_MAGIC = re.compile(r"^\s*[#;]\s*exitlab:\s*mode\s*=\s*(16|32|64)\b", re.MULTILINE)


def source_mode(text: str) -> int | None:
    """A snippet may declare its mode in a comment, `# exitlab: mode=32`, so it runs as written."""
    m = _MODE_MAGIC.search(text[:2000])
    return int(m[1]) if m else None


def load_guest(path: str | Path, mode: int | None = None, load_addr: int = LOAD_ADDR) -> GuestImage:
    """Pick the loader by content: ELF magic, else an assembly source by suffix, else raw bytes."""
    p = Path(path)
    data = read_file(p, GUEST_FILE_MAX, "guest")  # bounded: `run /dev/zero` is an error, not a hang
    if data[:4] == b"\x7fELF":
        return load_elf(data, name=p.name, mode=mode)
    if p.suffix in (".S", ".s", ".asm"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AssemblyError(f"{p.name}: not UTF-8 text ({exc})", file=p.name) from None
        return assemble(text, mode=mode or source_mode(text) or 64, name=p.name, load_addr=load_addr)
    return load_raw(data, mode=mode or 64, name=p.name, load_addr=load_addr)
