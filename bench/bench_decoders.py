"""Decoder benchmarks on real code: exitlab's length function (and its full walk alone, without the
fast path of insn_length.h) and subset decoder, Capstone (native, detail on/off) and iced-x86 (Python
binding) over the .text of this machine's libc and libpython (the defaults of `exitlab bench
--decoders`), and the length function on the legacy-prefixed instructions alone (its second path).
Every C-side round is one cffi call walking the whole .text; MiB/s, ns/insn and instructions go to
`benchmark.extra_info`, and each round checks the walk decoded what it should (no timed assertion).

Run: pytest bench/bench_decoders.py --benchmark-enable --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

from typing import Any

import pytest

from exitlab.tools import decoderbench as db

found, _notes = db.default_binaries()
SECTIONS = {p.name: db.elf_text(p) for p in found}
if not SECTIONS:
    pytest.skip("no libc / libpython on this machine", allow_module_level=True)


@pytest.fixture(scope="module")
def references() -> dict[str, db.Reference]:
    return {name: db.iced_reference(sec.data, sec.mode) for name, sec in SECTIONS.items()}


def _info(benchmark: Any, nbytes: int, ns: int, insns: int, **extra: object) -> None:
    benchmark.extra_info.update(
        {
            "bytes": nbytes,
            "insns": insns,
            "mib_s": nbytes / (1 << 20) / (ns / 1e9),
            "ns_per_insn": ns / insns,
            **extra,
        }
    )


@pytest.mark.parametrize("binary", sorted(SECTIONS))
@pytest.mark.parametrize(
    "decoder", ["exitlab-length", "exitlab-length-full-walk", "capstone-nodetail", "capstone-detail"]
)
def test_sweep_text(benchmark: Any, references: dict[str, db.Reference], decoder: str, binary: str) -> None:
    """One decoder over a whole .text (C loop, an invalid position skips one byte)."""
    benchmark.group = f"decoders:{binary}"
    sec = SECTIONS[binary]
    out: list[tuple[int, int]] = []
    benchmark.pedantic(lambda: out.append(db.c_sweep(decoder, sec.data, sec.mode, 1)), rounds=5, iterations=1)
    ns, insns = min(out)
    # the walk follows iced's boundaries wherever both decode: about as many instructions
    assert insns >= 0.95 * len(references[binary].offsets)
    _info(benchmark, len(sec.data), ns, insns, decoder=decoder, binary=sec.path)


@pytest.mark.parametrize("binary", sorted(SECTIONS))
def test_subset_mov_family(benchmark: Any, references: dict[str, db.Reference], binary: str) -> None:
    """The subset decoder over the MOV-family memory instructions iced finds in the .text."""
    benchmark.group = f"decoders:{binary}"
    sec, ref = SECTIONS[binary], references[binary]
    movs = b"".join(
        sec.data[o : o + n] for o, n, s in zip(ref.offsets, ref.lengths, ref.subset, strict=True) if s
    )
    out: list[tuple[int, int]] = []
    benchmark.pedantic(
        lambda: out.append(db.c_sweep("exitlab-subset", movs, sec.mode, 1)), rounds=5, iterations=1
    )
    ns, insns = min(out)
    assert insns == sum(ref.subset)
    _info(benchmark, len(movs), ns, insns, decoder="exitlab-subset", binary=sec.path)


LEGACY_PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})


@pytest.mark.parametrize("binary", sorted(SECTIONS))
def test_length_prefixed(benchmark: Any, references: dict[str, db.Reference], binary: str) -> None:
    """The length function over the instructions iced finds that start with a legacy prefix (about
    5% of real code: 66 0F SSE, nop padding, fs: TLS), which leave the common path."""
    benchmark.group = f"decoders:{binary}"
    sec, ref = SECTIONS[binary], references[binary]
    spans = zip(ref.offsets, ref.lengths, strict=True)
    picked = [sec.data[o : o + n] for o, n in spans if n > 0 and sec.data[o] in LEGACY_PREFIXES]
    buf = b"".join(picked)
    out: list[tuple[int, int]] = []
    benchmark.pedantic(
        lambda: out.append(db.c_sweep("exitlab-length", buf, sec.mode, 1)), rounds=5, iterations=1
    )
    ns, insns = min(out)
    assert insns == len(picked)
    _info(benchmark, len(buf), ns, insns, decoder="exitlab-length (prefixed)", binary=sec.path)


@pytest.mark.parametrize("binary", sorted(SECTIONS))
def test_iced_python(benchmark: Any, binary: str) -> None:
    """iced-x86 through its Python binding (one Instruction reused): not iced's native speed."""
    benchmark.group = f"decoders:{binary}"
    sec = SECTIONS[binary]
    out: list[db.Reference] = []
    benchmark.pedantic(lambda: out.append(db.iced_reference(sec.data, sec.mode)), rounds=1, iterations=1)
    ref = out[0]
    assert ref.valid > 0
    _info(benchmark, len(sec.data), ref.ns, len(ref.offsets), decoder="iced-python", binary=sec.path)
