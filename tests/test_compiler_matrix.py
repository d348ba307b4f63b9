"""The documented C helper always compiles to the agreed encoding (issue 16's compiler matrix).

`asm volatile("movw %%ax, (%%rdx)" :: "a"(idx), "d"(addr))` (and the 32/64-bit spelling
`movw %w0, (%1)`) is inlined into a loop with more live values than free registers, compiled by
gcc (and clang when installed) at -O0/-O1/-O2/-O3/-Os for -m64 and -m32. The object's bytes are
checked with the `--static` sweep: every 2-byte store through RDX/EDX is a contract site, and there
are exactly as many as the compiler's own assembly output has copies of the asm. The settings that
break it (a memory-operand constraint, -m16) are shown too; docs/contract.md lists them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from emu.elf import read_binary
from exitlab.tools.validate import SiteKind, StaticScan, scan_binary

HELPERS = {
    # the helper exactly as docs/contract.md gives it (64-bit only)
    "rdx": 'asm volatile("movw %%ax, (%%rdx)" :: "a"(idx), "d"(addr) : "memory");',
    # the spelling for 32- and 64-bit builds
    "any": 'asm volatile("movw %w0, (%1)" :: "a"(idx), "d"(addr) : "memory");',
    # a memory-operand constraint: the compiler chooses the addressing form (breaks the contract)
    "mem": 'asm volatile("movw %1, %0" : "=m"(*addr) : "a"(idx) : "memory");',
}

# No #include: freestanding, so -m32 needs no multilib headers. Twelve values stay live across the
# loop (more than the free registers once AX and DX are pinned), so the allocator has to spill and
# shuffle around every notify.
SOURCE = r"""
typedef unsigned short u16;
typedef unsigned int u32;
static inline void pv_notify(volatile u16 *addr, u16 idx)
{
    HELPER
}
struct vq { u32 avail, used, ring[16]; };
u32 drive(struct vq *q, volatile u16 *base, unsigned n)
{
    u32 a = q[0].avail, b = q[1].avail, c = q[2].avail, d = q[3].avail, e = q[0].used, f = q[1].used;
    u32 g = q[2].used, h = q[3].used, i = q[0].ring[1], j = q[1].ring[1], k = q[2].ring[1], l = q[3].ring[1];
    for (unsigned t = 0; t < n; t++) {
        a += b ^ t; b += c * 3; c ^= d + t; d += e; e ^= f; f += g * 5;
        g ^= h; h += i; i ^= j; j += k * 7; k ^= l; l += a;
        q[t & 3].ring[t & 15] = a + l;
        if ((a ^ l) & 1)
            pv_notify(base + 2 * (t & 3), (u16)(t & 3));
        pv_notify(base + 2 * (h & 3), (u16)g);
        d /= (e | 1);
    }
    return a + b + c + d + e + f + g + h + i + j + k + l;
}
void kick_all(volatile u16 *base)
{
    for (unsigned t = 0; t < 4; t++)
        pv_notify(base + 2 * t, (u16)t);
}
"""

OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3", "-Os")
_NOTIFY_TEXT = re.compile(r"^\s*movw\s+%ax,\s*\(%[re]dx\)\s*$", re.MULTILINE)
_WORD_STORE_THROUGH_DX = re.compile(r"\bword ptr (\w+:)?\[[re]dx\b")


@cache
def _cannot(compiler: str, arch: str) -> str | None:
    """Why `compiler arch` cannot build a freestanding object here (None: it can)."""
    if shutil.which(compiler) is None:
        return f"{compiler} is not installed"
    proc = subprocess.run([compiler, arch, "-ffreestanding", "-x", "c", "-c", "-o", "/dev/null", "-"],
                          input="int f(void) { return 1; }\n", capture_output=True, text=True)
    if proc.returncode != 0:
        return f"{compiler} {arch} cannot compile here: {proc.stderr.strip().splitlines()[-1:]}"
    return None


def _compile(tmp_path: Path, compiler: str, arch: str, opt: str, helper: str) -> tuple[StaticScan, int]:
    """The sweep of the object, and how many copies of the asm the compiler's assembly output has."""
    why = _cannot(compiler, arch)
    if why is not None:
        pytest.skip(why)
    src = tmp_path / "drv.c"
    src.write_text(SOURCE.replace("HELPER", HELPERS[helper]))
    flags = [compiler, arch, opt, "-g", "-ffreestanding", "-fno-asynchronous-unwind-tables"]
    asm = subprocess.run([*flags, "-S", "-o", "-", str(src)], capture_output=True, text=True, check=True)
    obj = tmp_path / "drv.o"
    subprocess.run([*flags, "-c", "-o", str(obj), str(src)], capture_output=True, text=True, check=True)
    return scan_binary(read_binary(str(obj))), len(_NOTIFY_TEXT.findall(asm.stdout))


def _assert_every_notify_conforms(scan: StaticScan, copies: int) -> None:
    sites = [s for s in scan.sites if s.kind is SiteKind.CONTRACT_SITE]
    bad = [s for s in scan.sites if s.kind is not SiteKind.CONTRACT_SITE
           and (_WORD_STORE_THROUGH_DX.search(s.disasm) or s.insn.endswith(b"\x66\x89\x02"))]
    assert not bad, [f"{s.where.label() if s.where else s.rip}: {s.insn.hex(' ')} {s.reason}" for s in bad]
    assert copies > 0 and len(sites) == copies, (len(sites), copies)
    assert all(s.insn == b"\x66\x89\x02" and s.where is not None and s.where.symbol for s in sites)


@pytest.mark.parametrize("opt", OPT_LEVELS)
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("arch, helper", [("-m64", "rdx"), ("-m64", "any"), ("-m32", "any")])
def test_helper_always_compiles_to_the_agreed_encoding(
    tmp_path: Path, compiler: str, arch: str, helper: str, opt: str
) -> None:
    scan, copies = _compile(tmp_path, compiler, arch, opt, helper)
    _assert_every_notify_conforms(scan, copies)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_memory_operand_constraint_breaks_the_contract(tmp_path: Path, compiler: str) -> None:
    """With "=m"(*addr) the compiler picks the address register and form: `mov word ptr [rsi + 4], ax`."""
    scan, _ = _compile(tmp_path, compiler, "-m64", "-O2", "mem")
    misses = [s for s in scan.sites if s.kind is SiteKind.NEAR_MISS and "16-bit store from AX" in s.reason]
    assert misses and any(s.where is not None and s.where.symbol == "kick_all" for s in misses)


def test_m16_code_never_conforms(tmp_path: Path) -> None:
    """-m16 (.code16gcc) objects are ELF32 but hold 16-bit code: swept with --mode 16, every notify is
    `67 89 02`, a near miss for the wrong mode; nothing is a contract site."""
    why = _cannot("gcc", "-m16")
    if why is not None:
        pytest.skip(why)
    src = tmp_path / "drv16.c"
    src.write_text(SOURCE.replace("HELPER", HELPERS["any"]))
    obj = tmp_path / "drv16.o"
    subprocess.run(["gcc", "-m16", "-O2", "-ffreestanding", "-c", "-o", str(obj), str(src)], check=True)
    binary = read_binary(str(obj))
    assert binary.mode == 32  # the ELF class cannot tell: the user says --mode 16
    binary.mode = 16
    scan = scan_binary(binary)
    notifies = [s for s in scan.sites if s.insn == bytes.fromhex("67 89 02")]
    assert notifies and all(s.kind is SiteKind.NEAR_MISS and "wrong mode" in s.reason for s in notifies)
    assert not [s for s in scan.sites if s.kind is SiteKind.CONTRACT_SITE]
