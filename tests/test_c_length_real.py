"""The length function on real code and on random bytes, iced-x86 as the reference (issue 15).

- a sweep of the first MiB of this machine's libc `.text`: 0 wrong lengths, 0 false accepts,
  declines at most 0.001% of the instructions (skipped when no libc is found);
- the generated VEX/EVEX tables (fastpath/csrc/vex_pp.h) carry the fingerprint of the generator
  and iced-x86 version that wrote them (a full regeneration runs with EXITLAB_REGEN_CHECK=1: ~1 min);
- the ELF .text reader on a non-ELF and a missing file.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from emu.errors import ExitlabError
from exitlab.tools import decoderbench as db

CSRC = Path(__file__).resolve().parent.parent / "fastpath" / "csrc"
SWEEP_BYTES = 1 << 20


def _libc() -> Path | None:
    found, _ = db.default_binaries()
    return next((p for p in found if "libc" in p.name), None)


def test_libc_text_sweep_against_iced() -> None:
    libc = _libc()
    if libc is None:
        pytest.skip("no libc found on this machine")
    sec = db.elf_text(libc)
    data = sec.data[:SWEEP_BYTES]
    ref = db.iced_reference(data, sec.mode)
    got = db.c_lengths_at("exitlab-length", data, sec.mode, ref.offsets)
    wrong, declined, false_accepts, examples = db.compare(ref, got, data)
    # the last instruction may be cut by the sample boundary: iced then says invalid, so does C
    assert wrong == 0, examples
    assert false_accepts == 0, examples
    assert declined <= ref.valid * 1e-5, (declined, ref.valid, examples)
    assert ref.valid > 100_000


def test_subset_on_libc_against_iced() -> None:
    libc = _libc()
    if libc is None:
        pytest.skip("no libc found on this machine")
    sec = db.elf_text(libc)
    data = sec.data[: SWEEP_BYTES // 4]
    ref = db.iced_reference(data, sec.mode)
    got = db.c_lengths_at("exitlab-subset", data, sec.mode, ref.offsets)
    wrong, declined, false_accepts, examples = db.compare(ref, got, data, subset=True)
    assert (wrong, false_accepts) == (0, 0), examples
    assert sum(ref.subset) > 1000
    assert declined <= sum(ref.subset) * 1e-3, examples


PREFIXY = bytes.fromhex("66 f3 f2 2e 64 65 26 36 3e 48 41 4c 0f f0 67 40")


@pytest.mark.parametrize("mode", [16, 32, 64])
def test_fast_path_equals_full_walk(mode: int) -> None:
    """xl_insn_length (fast path, insn_length.h) == xl_insn_length_slow (the full walk) on random
    prefix-heavy bytes and on every byte offset of a slice of libc."""
    from fastpath._exitlab_c import lib

    rng = random.Random(1500 + mode)
    diff = []
    for _ in range(60_000):
        b = bytearray(rng.getrandbits(8) for _ in range(15))
        for k in range(rng.randrange(5)):
            b[k] = rng.choice(PREFIXY)
        code = bytes(b)
        for n in (15, rng.randrange(16)):
            fast, slow = lib.xl_insn_length(code, n, mode), lib.xl_insn_length_slow(code, n, mode)
            if fast != slow:
                diff.append(f"{code[:n].hex(' ')}: fast {fast}, full {slow}")
    libc = _libc()
    if libc is not None:
        data = db.elf_text(libc).data[: 1 << 16]
        for off in range(len(data)):
            code = data[off : off + 15]
            fast = lib.xl_insn_length(code, len(code), mode)
            slow = lib.xl_insn_length_slow(code, len(code), mode)
            if fast != slow:
                diff.append(f"libc +{off:#x} {code.hex(' ')}: fast {fast}, full {slow}")
    assert not diff, diff[:10]


def _fingerprint_in_header() -> str:
    for line in (CSRC / "vex_pp.h").read_text().splitlines()[:5]:
        if line.startswith("/* fingerprint "):
            return line.split()[2]
    raise AssertionError("vex_pp.h has no fingerprint line: regenerate it")


def test_generated_tables_fingerprint() -> None:
    sys.path.insert(0, str(CSRC))
    try:
        import gen_vex_pp
    finally:
        sys.path.remove(str(CSRC))
    assert _fingerprint_in_header() == gen_vex_pp.fingerprint(), (
        "fastpath/csrc/vex_pp.h is stale: python fastpath/csrc/gen_vex_pp.py > fastpath/csrc/vex_pp.h"
    )


@pytest.mark.skipif(not os.environ.get("EXITLAB_REGEN_CHECK"), reason="EXITLAB_REGEN_CHECK=1: about 1 min")
def test_generated_tables_regenerate_identically() -> None:
    out = subprocess.run(
        [sys.executable, str(CSRC / "gen_vex_pp.py")], capture_output=True, text=True, check=True
    ).stdout
    assert out == (CSRC / "vex_pp.h").read_text()


def test_elf_text_errors(tmp_path: Path) -> None:
    bad = tmp_path / "not-elf"
    bad.write_bytes(b"hello")
    with pytest.raises(ExitlabError, match="not an ELF"):
        db.elf_text(bad)
    with pytest.raises(ExitlabError, match="cannot read"):
        db.elf_text(tmp_path / "missing")


def test_elf_text_of_python_itself() -> None:
    sec = db.elf_text(Path(sys.executable).resolve())
    assert sec.mode == 64 and len(sec.data) > 0
