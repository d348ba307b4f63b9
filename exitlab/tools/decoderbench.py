"""The decoder benchmark of `exitlab bench --decoders`: exitlab's length function and subset decoder
beside Capstone (native, detail on and off) and iced-x86 (its Python binding), on the `.text` of real
binaries, with exactness counts against iced-x86 as the reference.

Speed: every C-side decoder walks the whole buffer in one cffi call (fastpath/csrc/decoderbench.c),
so what is timed is the decoder, not the call; an invalid position advances one byte.  iced-x86 runs
through its Python binding (one object per instruction), so its figure is labelled `iced-python`
and is not iced's native speed.  Times are the walking thread's CPU time (best of `repeat` walks for
the C side, one walk for iced): on a shared machine wall time mostly measures the neighbours.

Exactness: iced-x86 decodes the buffer once; at each of its instruction boundaries every decoder's
length is taken (same C loop, offsets given) and compared.  *wrong*: both decode, lengths differ;
*declined*: iced decodes, the decoder says invalid / not mine; *false_accepts*: iced says invalid
(or, for the subset decoder, not a MOV-family memory instruction), the decoder gives a length.
"""

from __future__ import annotations

import json
import re
import struct
import sysconfig
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emu.errors import ExitlabError
from exitlab.tools.report import environment

DECODER_NAMES = ("exitlab-length", "exitlab-subset", "capstone-detail", "capstone-nodetail", "iced-python")
# enum xl_decoder (decoderbench.h)
C_DECODERS = {"exitlab-length": 0, "exitlab-subset": 1, "capstone-nodetail": 2, "capstone-detail": 3}
# not in the CLI table: the length function's full walk alone, for the bench/ suite (the fast path's gain)
EXTRA_C_DECODERS = {"exitlab-length-full-walk": 4}

# iced Code names of the instructions xl_decode_subset covers (insn_subset.h), memory forms only.
_SUBSET_CODE_RE = re.compile(
    r"^(MOV_(RM8_R8|RM16_R16|RM32_R32|RM64_R64|R8_RM8|R16_RM16|R32_RM32|R64_RM64|RM8_IMM8|RM16_IMM16"
    r"|RM32_IMM32|RM64_IMM32)"
    r"|MOV_(AL_MOFFS8|AX_MOFFS16|EAX_MOFFS32|RAX_MOFFS64|MOFFS8_AL|MOFFS16_AX|MOFFS32_EAX|MOFFS64_RAX)"
    r"|MOV[ZS]X_R(16|32|64)_RM(8|16)|MOVSXD_R64_RM32"
    r"|MOVS[BWDQ]_M(8|16|32|64)_M(8|16|32|64)|STOS[BWDQ]_M(8|16|32|64)_(AL|AX|EAX|RAX))$"
)


# ----------------------------------------------------------------------------------- binaries


@dataclass
class TextSection:
    path: str
    mode: int  # 32 or 64
    data: bytes
    address: int


def elf_text(path: str | Path) -> TextSection:
    """The `.text` section of an x86 ELF file, read with the section headers (stdlib `struct`)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ExitlabError(f"{p}: cannot read ({e.strerror})") from e
    if raw[:4] != b"\x7fELF" or len(raw) < 64:
        raise ExitlabError(f"{p}: not an ELF file")
    cls, endian = raw[4], raw[5]
    if endian != 1 or cls not in (1, 2):
        raise ExitlabError(f"{p}: not a little-endian ELF32/ELF64 file (class {cls}, data {endian})")
    (machine,) = struct.unpack_from("<H", raw, 18)
    if (cls, machine) not in ((2, 62), (1, 3)):
        raise ExitlabError(f"{p}: not an x86 ELF (e_machine {machine}, class {cls})")
    mode = 64 if cls == 2 else 32
    if cls == 2:
        (shoff,) = struct.unpack_from("<Q", raw, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", raw, 0x3A)
        fmt = "<IIQQQQIIQQ"
    else:
        (shoff,) = struct.unpack_from("<I", raw, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", raw, 0x2E)
        fmt = "<IIIIIIIIII"
    if shoff == 0 or shnum == 0 or shstrndx >= shnum or shoff + shnum * shentsize > len(raw):
        raise ExitlabError(f"{p}: no usable section header table")
    heads = [struct.unpack_from(fmt, raw, shoff + i * shentsize) for i in range(shnum)]
    strtab = heads[shstrndx]
    names = raw[strtab[4] : strtab[4] + strtab[5]]
    for h in heads:
        name = names[h[0] : names.index(b"\0", h[0])]
        if name == b".text":
            sh_type, addr, off, size = h[1], h[3], h[4], h[5]
            if sh_type == 8 or off + size > len(raw):  # SHT_NOBITS, or cut short
                raise ExitlabError(f"{p}: .text has no bytes in the file")
            return TextSection(str(p), mode, raw[off : off + size], addr)
    raise ExitlabError(f"{p}: no .text section")


def _mapped(fragment: str) -> Path | None:
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split(None, 5)
            if len(parts) == 6 and fragment in Path(parts[5]).name:
                return Path(parts[5])
    except OSError:
        pass
    return None


def default_binaries() -> tuple[list[Path], list[str]]:
    """This machine's libc and libpython: as mapped into this process, else from sysconfig, else
    the usual library directories.  Returns (found, notes about what was not found)."""
    found: list[Path] = []
    notes: list[str] = []
    libc = _mapped("libc.so") or next(
        (
            p
            for p in map(
                Path, ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6", "/lib64/libc.so.6")
            )
            if p.is_file()
        ),
        None,
    )
    if libc is None:
        notes.append("libc: not found (skipped)")
    else:
        found.append(libc)
    cands: list[Path] = []
    m = _mapped("libpython")
    if m:
        cands.append(m)
    libdir = sysconfig.get_config_var("LIBDIR") or "/usr/lib"
    for var in ("INSTSONAME", "LDLIBRARY"):  # a static build names libpython3.X.a: not a candidate
        name = sysconfig.get_config_var(var)
        if name and ".so" in str(name):
            cands.append(Path(libdir) / str(name))
    ver = sysconfig.get_python_version()
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/lib", "/usr/lib"):
        cands.append(Path(d) / f"libpython{ver}.so.1.0")
        cands.extend(sorted(Path(d).glob("libpython3*.so.1.0")) if Path(d).is_dir() else [])
    libpy = next((c for c in cands if c.is_file()), None)
    if libpy is None:
        notes.append("libpython: no shared libpython on this machine (skipped)")
    else:
        found.append(libpy.resolve())
    return found, notes


# ----------------------------------------------------------------------------------- reference


@dataclass
class Reference:
    """iced-x86's walk of one buffer: offsets, lengths (-1 invalid), MOV-family flags."""

    offsets: list[int]
    lengths: list[int]
    subset: list[bool]
    ns: int  # thread CPU time of the walk (the iced-python figure)

    @property
    def valid(self) -> int:
        return sum(1 for n in self.lengths if n > 0)


def _subset_codes() -> tuple[frozenset[int], frozenset[int]]:
    """(all subset codes, the MOVS/STOS ones)."""
    from iced_x86 import Code

    names = [n for n in dir(Code) if _SUBSET_CODE_RE.match(n)]
    return (
        frozenset(getattr(Code, n) for n in names),
        frozenset(getattr(Code, n) for n in names if n.startswith(("MOVS", "STOS")) and "_M" in n[4:7]),
    )


def iced_reference(data: bytes, mode: int) -> Reference:
    """Walk `data` with iced-x86 (timed: that is the iced-python figure), then mark the MOV-family
    memory instructions the subset decoder is meant to take."""
    from iced_x86 import Code, Decoder, Instruction, OpKind

    codes, strings = _subset_codes()
    dec = Decoder(mode, data, ip=0)
    insn = Instruction()
    offsets: list[int] = []
    lengths: list[int] = []
    subset: list[bool] = []
    invalid = Code.INVALID
    t0 = time.thread_time_ns()
    while dec.can_decode:
        off = dec.position
        dec.decode_out(insn)
        offsets.append(off)
        code = insn.code
        lengths.append(-1 if code == invalid else insn.len)
        subset.append(code in codes)
    ns = time.thread_time_ns() - t0
    # memory forms only, no LOCK, F2/F3 only on MOVS/STOS, never both F2 and F3
    for j, off in enumerate(offsets):
        if not subset[j]:
            continue
        dec.position = off
        dec.decode_out(insn)
        is_string = insn.code in strings
        has_mem = is_string or any(insn.op_kind(k) == OpKind.MEMORY for k in range(insn.op_count))
        pfx = _legacy_prefixes(data[off : off + insn.len], mode)
        reps = {0xF2, 0xF3} & pfx
        subset[j] = has_mem and 0xF0 not in pfx and (is_string or not reps) and len(reps) < 2
    return Reference(offsets, lengths, subset, ns)


def _legacy_prefixes(b: bytes, mode: int) -> set[int]:
    out: set[int] = set()
    for x in b:
        if x in (0x66, 0x67, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0xF0, 0xF2, 0xF3):
            out.add(x)
        elif not (mode == 64 and x & 0xF0 == 0x40):
            break
    return out


# ----------------------------------------------------------------------------------- measurement


@dataclass
class DecoderResult:
    name: str
    mib_s: float
    ns_per_insn: float
    insns: int
    wrong: int
    declined: int
    false_accepts: int
    bytes: int = 0
    note: str = ""
    examples: list[str] = field(default_factory=list)  # first few disagreements, hex


def _c() -> Any:
    from fastpath._exitlab_c import ffi, lib

    return ffi, lib


def c_lengths_at(decoder: str, data: bytes, mode: int, offsets: list[int]) -> list[int]:
    ffi, lib = _c()
    offs = ffi.new("uint32_t[]", offsets)
    out = ffi.new("int8_t[]", max(len(offsets), 1))
    code = {**C_DECODERS, **EXTRA_C_DECODERS}[decoder]
    if lib.xl_bench_lengths_at(code, data, len(data), mode, offs, len(offsets), out) < 0:
        raise ExitlabError(f"{decoder}: cannot open the decoder")
    return list(out)[: len(offsets)]


def c_sweep(decoder: str, data: bytes, mode: int, repeat: int) -> tuple[int, int]:
    """(best ns over `repeat` walks, instructions per walk)."""
    ffi, lib = _c()
    res = ffi.new("struct xl_sweep *")
    best = None
    for _ in range(repeat):
        if lib.xl_bench_sweep({**C_DECODERS, **EXTRA_C_DECODERS}[decoder], data, len(data), mode, res) < 0:
            raise ExitlabError(f"{decoder}: cannot open the decoder")
        best = res.ns if best is None else min(best, res.ns)
    return int(best or 0), int(res.insns)


def compare(
    ref: Reference, got: list[int], data: bytes, subset: bool = False
) -> tuple[int, int, int, list[str]]:
    """(wrong, declined, false accepts, examples) of `got` (lengths at ref.offsets) against iced."""
    wrong = declined = fa = 0
    ex: list[str] = []
    for j, n in enumerate(got):
        want = ref.lengths[j]
        expected = want > 0 and (ref.subset[j] if subset else True)
        off = ref.offsets[j]
        if expected and n > 0 and n != want:
            wrong += 1
            kind = "wrong"
        elif expected and n <= 0:
            declined += 1
            kind = "declined"
        elif not expected and n > 0:
            fa += 1
            kind = "false accept"
        else:
            continue
        if len(ex) < 8:
            ex.append(f"{kind} @{off:#x}: {data[off : off + 15].hex(' ')} (iced {want}, got {n})")
    return wrong, declined, fa, ex


def _mib_s(nbytes: int, ns: int) -> float:
    return nbytes / (1 << 20) / (ns / 1e9) if ns else 0.0


def run(
    sections: Iterable[TextSection], repeat: int = 3, progress: Callable[[str], None] | None = None
) -> list[DecoderResult]:
    """All five decoders over all sections; figures are summed over the sections."""
    tot: dict[str, dict[str, Any]] = {
        n: {"ns": 0, "insns": 0, "bytes": 0, "wrong": 0, "declined": 0, "fa": 0, "ex": []}
        for n in DECODER_NAMES
    }
    for sec in sections:
        if progress:
            progress(f"iced reference: {sec.path}")
        ref = iced_reference(sec.data, sec.mode)
        t = tot["iced-python"]
        t["ns"] += ref.ns
        t["insns"] += len(ref.offsets)
        t["bytes"] += len(sec.data)
        movs = b"".join(
            sec.data[o : o + n] for o, n, s in zip(ref.offsets, ref.lengths, ref.subset, strict=True) if s
        )
        for name in C_DECODERS:
            if progress:
                progress(f"{name}: {sec.path}")
            t = tot[name]
            got = c_lengths_at(name, sec.data, sec.mode, ref.offsets)
            w, d, f, ex = compare(ref, got, sec.data, subset=name == "exitlab-subset")
            t["wrong"] += w
            t["declined"] += d
            t["fa"] += f
            t["ex"].extend(f"{Path(sec.path).name}: {e}" for e in ex)
            buf = movs if name == "exitlab-subset" else sec.data
            ns, insns = c_sweep(name, buf, sec.mode, repeat)
            t["ns"] += ns
            t["insns"] += insns
            t["bytes"] += len(buf)
    out = []
    for name in DECODER_NAMES:
        t = tot[name]
        out.append(
            DecoderResult(
                name=name,
                mib_s=_mib_s(t["bytes"], t["ns"]),
                ns_per_insn=t["ns"] / t["insns"] if t["insns"] else 0.0,
                insns=t["insns"],
                wrong=t["wrong"],
                declined=t["declined"],
                false_accepts=t["fa"],
                bytes=t["bytes"],
                note=NOTES[name],
                examples=t["ex"][:8],
            )
        )
    return out


NOTES = {
    "exitlab-length": "xl_insn_length, C loop over the whole .text",
    "exitlab-subset": "xl_decode_subset, C loop over the MOV-family memory instructions only",
    "capstone-detail": "Capstone (native, cs_disasm_iter), detail on, C loop",
    "capstone-nodetail": "Capstone (native, cs_disasm_iter), detail off, C loop",
    "iced-python": "iced-x86 through its Python binding (not iced's native speed); the reference",
}


def table(results: list[DecoderResult], sections: list[TextSection], notes: list[str]) -> str:
    head = (
        f"{'decoder':<18} {'MiB/s':>9} {'ns/insn':>8} {'insns':>10} {'wrong':>6} {'declined':>9} "
        f"{'false acc':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        exact = r.name == "iced-python"
        lines.append(
            f"{r.name:<18} {r.mib_s:>9.1f} {r.ns_per_insn:>8.2f} {r.insns:>10} "
            f"{'ref' if exact else r.wrong:>6} {'ref' if exact else r.declined:>9} "
            f"{'ref' if exact else r.false_accepts:>9}"
        )
    lines.append("")
    total = sum(len(s.data) for s in sections)
    lines.append(
        f"{len(sections)} binaries, {total / (1 << 20):.1f} MiB of .text: "
        + ", ".join(f"{s.path} ({len(s.data) / (1 << 20):.1f} MiB, {s.mode}-bit)" for s in sections)
    )
    lines.extend(f"{r.name}: {r.note}" for r in results)
    lines.append("times: thread CPU time of one walk over the .text (C: best of the repeats).")
    lines.append(
        "wrong / declined / false acc: against iced-x86 at its instruction boundaries (subset: against the "
        "MOV-family memory instructions iced finds)."
    )
    for r in results:
        lines.extend(f"  {r.name} {e}" for e in r.examples)
    lines.extend(notes)
    return "\n".join(lines)


def to_json(results: list[DecoderResult], sections: list[TextSection], notes: list[str]) -> dict[str, Any]:
    return {
        "schema": "exitlab-bench-decoders",
        "version": 1,
        "decoders": [
            {k: v for k, v in asdict(r).items() if k not in ("examples",)} | {"examples": r.examples}
            for r in results
        ],
        "binaries": [{"path": s.path, "mode": s.mode, "text_bytes": len(s.data)} for s in sections],
        "timing": "thread CPU time (CLOCK_THREAD_CPUTIME_ID / time.thread_time_ns), C: best of the repeats",
        "notes": notes,
        "environment": environment(),
    }


def write_json(
    results: list[DecoderResult], sections: list[TextSection], notes: list[str], path: str
) -> None:
    Path(path).write_text(json.dumps(to_json(results, sections, notes), indent=2) + "\n")


def plot(results: list[DecoderResult], path: str) -> None:
    """Two panels: MiB/s and ns/insn per decoder (log scale), exactness counts as labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in results]
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.6))
    y = range(len(results))
    colors = ["#1f77b4" if n.startswith("exitlab") else "#9e9e9e" for n in names]
    for ax, key, label in (
        (axes[0], "mib_s", "MiB/s (log)"),
        (axes[1], "ns_per_insn", "ns per instruction (log)"),
    ):
        vals = [getattr(r, key) for r in results]
        ax.barh(y, vals, color=colors)
        for i, r in enumerate(results):
            tag = (
                "reference"
                if r.name == "iced-python"
                else (f"wrong {r.wrong}, declined {r.declined}, false acc {r.false_accepts}")
            )
            ax.text(
                vals[i],
                i,
                f" {vals[i]:.1f}  ({tag})" if key == "mib_s" else f" {vals[i]:.1f}",
                va="center",
                fontsize=7,
            )
        ax.set_yticks(list(y), names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(right=max(vals) * (12 if key == "mib_s" else 2))  # room for the labels
        ax.set_xlabel(label)
    fig.suptitle("exitlab: instruction decoders on real .text (exactness vs iced-x86)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
