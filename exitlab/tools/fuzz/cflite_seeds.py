"""Seed corpora for the libFuzzer harnesses, zipped the way OSS-Fuzz / ClusterFuzzLite expect.

    python -m exitlab.tools.fuzz.cflite_seeds OUT_DIR [--data tests/data]

writes OUT_DIR/<harness>_seed_corpus.zip for each harness, from the committed test data:

- atheris_target (mode/window byte, length byte, instruction, state seed): the files of
  `fuzz_corpus` as they are, plus every `fuzz_regressions` reproducer and every gcc-compiled
  accessor of `gcc_mmio_cases.jsonl` converted to that layout;
- atheris_length (mode byte % 3 -> 16/32/64, then raw bytes): the same instructions, plus the
  instruction bytes of `asan_corpus` (whose byte 0 uses the same mode selector);
- atheris_streams (bytes the stream harness turns into a guest program): the same instructions,
  one per seed and a few concatenated, as raw x86 bytes.

Build.sh runs it (`.clusterfuzzlite/build.sh`); nothing here needs the C extension.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path

MODE_INDEX = {16: 0, 32: 1, 64: 2}


def _target_input(code: bytes, mode: int) -> bytes:
    """The atheris_target layout (exitlab.tools.fuzz.atheris_target.input_from_case, window auto)."""
    return bytes([(1 if mode == 32 else 0) | 3 << 1, (len(code) - 1) % 15]) + code[:15]


def instructions(data: Path) -> list[tuple[bytes, int]]:
    """(instruction bytes, mode) from every committed source, in a stable order."""
    out: list[tuple[bytes, int]] = []
    for p in sorted((data / "fuzz_corpus").glob("*")):
        raw = p.read_bytes()
        if len(raw) >= 3:
            n = raw[1] % 15 + 1
            out.append((raw[2 : 2 + n], 32 if raw[0] & 1 else 64))
    for p in sorted((data / "fuzz_regressions").glob("*.json")):
        case = json.loads(p.read_text())["case"]
        out.append((bytes.fromhex(case["bytes"]), int(case.get("mode", 64))))
    cases = data / "gcc_mmio_cases.jsonl"
    if cases.exists():
        for line in cases.read_text().splitlines():
            if line.strip():
                case = json.loads(line)
                out.append((bytes.fromhex(case["bytes"]), int(case.get("mode", 64))))
    for p in sorted((data / "asan_corpus").glob("*")):
        raw = p.read_bytes()
        if len(raw) >= 3:
            out.append((raw[2:17], (16, 32, 64)[raw[0] % 3]))
    return [(code, mode) for code, mode in out if code]


def _write_zip(path: Path, seeds: Iterable[bytes]) -> int:
    names = set()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for seed in seeds:
            name = hashlib.sha1(seed).hexdigest()  # libFuzzer's own corpus naming
            if name not in names:
                names.add(name)
                z.writestr(name, seed)
    return len(names)


def write_all(out: Path, data: Path) -> dict[str, int]:
    """Write every <harness>_seed_corpus.zip into `out`; returns the seed count per harness."""
    insns = instructions(data)
    if not insns:
        raise SystemExit(f"cflite_seeds: no seed inputs found under {data}")
    target = [p.read_bytes() for p in sorted((data / "fuzz_corpus").glob("*"))]
    target += [_target_input(code, mode) for code, mode in insns if mode != 16]
    length = [bytes([MODE_INDEX[mode]]) + code for code, mode in insns]
    streams = [code for code, _ in insns]
    streams += [b"".join(c for c, _ in insns[i : i + 4]) for i in range(0, 40, 4)]
    out.mkdir(parents=True, exist_ok=True)
    return {
        name: _write_zip(out / f"{name}_seed_corpus.zip", seeds)
        for name, seeds in (
            ("atheris_target", target), ("atheris_length", length), ("atheris_streams", streams)
        )
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exitlab.tools.fuzz.cflite_seeds", description=__doc__)
    p.add_argument("out", type=Path, help="where the zips go ($OUT under ClusterFuzzLite)")
    p.add_argument("--data", type=Path, default=Path("tests/data"), help="the committed test data")
    args = p.parse_args(argv)
    for name, n in write_all(args.out, args.data).items():
        print(f"{args.out / (name + '_seed_corpus.zip')}: {n} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
