"""Coverage-guided harness (atheris, libFuzzer-compatible) for the C extension.

One input = CPU mode, window, instruction bytes and the seed of the CPU state, so libFuzzer's
mutations of the raw bytes become mutations of the instruction and of the registers:

    byte 0      bit 0: mode (0 = 64-bit, 1 = 32-bit); bits 1-2: window (regs/notify/low/auto)
    byte 1      instruction length L = byte % 15 + 1
    L bytes     the instruction
    the rest    seed of the random CPU state (registers aimed at the window, RFLAGS, device answer)

Each input runs the C length function and subset decoder invariants, then the whole differential
check of exitlab.tools.fuzz.oracles (Unicorn truth vs the C subset / Capstone / pv-fast paths, the
Python paths and iced-x86); an unexplained disagreement raises, which libFuzzer reports as a crash
with the input saved. Run it:

    python -m exitlab.tools.fuzz.atheris_target tests/data/fuzz_corpus -atheris_runs=2000
    make fuzz-atheris            # the same, bounded, after installing the `fuzz` extra
    python -m exitlab.tools.fuzz.atheris_target --asan ...   # against the ASan/UBSan build (see README)

Under OSS-Fuzz / ClusterFuzzLite the same `TestOneInput` is the fuzz target; building the
extension with clang and `-fsanitize=fuzzer-no-link,address` there gives libFuzzer the C edges too.
"""

from __future__ import annotations

import functools
import os
import random
import sys
from pathlib import Path

if "--asan" in sys.argv:
    # capstone's binding dlopens with RTLD_DEEPBIND, which the ASan runtime refuses outright;
    # hide the flag before anything imports capstone.
    os.__dict__.pop("RTLD_DEEPBIND", None)

from exitlab.tools.fuzz.case import Case  # noqa: E402
from exitlab.tools.fuzz.state import LOW_WINDOW, NOTIFY_WINDOW, REGS_WINDOW, solve_state  # noqa: E402

_WINDOWS = (REGS_WINDOW, NOTIFY_WINDOW, LOW_WINDOW, None)
ASAN_DIR = Path("build/fuzz-asan")


class FuzzFailure(AssertionError):
    """An unexplained disagreement or a broken invariant (libFuzzer reports it as a crash)."""


def case_from_input(data: bytes) -> Case:
    """Decode one harness input into a Case (also used by the corpus generator)."""
    if len(data) < 3:
        data = bytes(data) + bytes(3 - len(data))
    mode = 32 if data[0] & 1 else 64
    window = _WINDOWS[(data[0] >> 1) & 3]
    n = data[1] % 15 + 1
    code = bytes(data[2 : 2 + n]) or b"\x90"
    rng = random.Random(bytes(data[2 + n :]))
    return solve_state(rng, code, mode, window, gen="atheris")


def input_from_case(code: bytes, mode: int, window: int = 3, seed: bytes = b"") -> bytes:
    """The harness input for given bytes (inverse of case_from_input, for writing a corpus)."""
    return bytes([(1 if mode == 32 else 0) | (window & 3) << 1, (len(code) - 1) % 15]) + code[:15] + seed


@functools.lru_cache(maxsize=1)
def _checker() -> object:
    from exitlab.tools.fuzz.oracles import Checker

    return Checker()


def check_input(data: bytes) -> None:
    """The fuzz target's body: raise FuzzFailure on a broken invariant or unexplained disagreement."""
    from exitlab.tools.fuzz.oracles import Checker
    from fastpath import cengine

    case = case_from_input(data)
    n = cengine.insn_length(case.code, case.mode)
    if not (n == -1 or 1 <= n <= min(15, len(case.code))):
        raise FuzzFailure(f"insn_length returned {n} for {len(case.code)} bytes: {case.describe()}")
    d = cengine.decode_subset(case.code, case.mode)
    if d is not None:
        if not 1 <= d.length <= len(case.code) or d.size not in (1, 2, 4, 8):
            raise FuzzFailure(f"subset decode out of range ({d}): {case.describe()}")
        if n != -1 and n != d.length:
            raise FuzzFailure(f"subset length {d.length} != insn_length {n}: {case.describe()}")
    checker = _checker()
    assert isinstance(checker, Checker)
    result = checker.check(case)
    bad = [f for f in result.findings if f.explained is None]
    if bad:
        f = bad[0]
        raise FuzzFailure(f"{f.oracle} {f.cls}: {f.detail}: {case.describe()}")


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name libFuzzer / atheris expect
    check_input(data)


def _use_asan_build() -> None:
    """Load the ASan/UBSan build of the extension (built by exitlab.tools.fuzz.build_asan)."""
    import fastpath

    target = ASAN_DIR / "fastpath"
    if not any(target.glob("_exitlab_c*.so")):
        raise SystemExit(f"no sanitizer build in {target}: "
                         "run `python -m exitlab.tools.fuzz.build_asan` first")
    fastpath.__path__.insert(0, str(target.resolve()))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if "--asan" in argv:
        argv.remove("--asan")
        _use_asan_build()
    import atheris
    import capstone  # noqa: F401  (the extension resolves libcapstone through this import)
    import unicorn  # noqa: F401

    with atheris.instrument_imports(include=["fastpath", "emu", "exitlab.tools.fuzz"]):
        import exitlab.tools.fuzz.oracles  # noqa: F401
        import fastpath.cengine  # noqa: F401
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=0")
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
