"""Coverage-guided stream fuzzing (atheris / libFuzzer), next to the per-instruction atheris_target.

One input = the choices of the stream generator: `streams_gen.program_from_bytes` reads them two
bytes at a time (zeros once the input is used up), so the same bytes always make the same program
and a mutation of a few bytes changes a few choices (one instruction, one address, the budget).
Each program runs through every engine x path configuration against the independent reference; a
disagreement (not a clean decline) raises, which libFuzzer reports as a crash with the input saved.

    python -m exitlab.tools.fuzz.atheris_streams CORPUS_DIR -atheris_runs=500

Disagreements the engines still have are listed by class in KNOWN_OPEN (docs/fuzzing-streams.md);
set EXITLAB_STREAMS_STRICT=1 to make those fail too.
"""

from __future__ import annotations

import functools
import os
import sys

from exitlab.tools.fuzz.streams_gen import program_from_bytes


class StreamsFailure(AssertionError):
    """A configuration disagrees with the reference (libFuzzer reports it as a crash)."""


@functools.lru_cache(maxsize=1)
def _comparator() -> object:
    from exitlab.tools.fuzz.streams_campaign import _comparator as shared
    from exitlab.tools.fuzz.streams_run import ALL_CONFIGS

    return shared(tuple(c for c in ALL_CONFIGS if c != "kvm"))  # KVM: host-dependent, see the docs


def check_input(data: bytes, strict: bool | None = None) -> list[str]:
    """Run the program `data` encodes; return the disagreement signatures that are allowed (known
    open), raise StreamsFailure on any other one."""
    from exitlab.tools.fuzz.streams_campaign import check_program
    from exitlab.tools.fuzz.streams_compare import Comparator
    from exitlab.tools.fuzz.streams_known import is_known_open

    if strict is None:
        strict = os.environ.get("EXITLAB_STREAMS_STRICT") == "1"
    program = program_from_bytes(data)
    comparator = _comparator()
    assert isinstance(comparator, Comparator)
    result = check_program(comparator, program)
    if result.error:
        raise StreamsFailure(f"generated program does not assemble: {result.error}\n{program.source()}")
    known = []
    for v in result.verdicts.values():
        if v.kind != "disagree":
            continue
        if not strict and is_known_open(v.config, v.cls):
            known.append(v.signature)
            continue
        detail = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in v.diff[:6])
        raise StreamsFailure(f"{v.signature} [{v.tier}]: {detail}\n{program.source()}")
    return known


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name libFuzzer / atheris expect
    check_input(data)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    import atheris
    import capstone  # noqa: F401  (the extension resolves libcapstone through this import)
    import unicorn  # noqa: F401

    with atheris.instrument_imports(include=["fastpath", "emu", "exitlab.tools.fuzz"]):
        import exitlab.tools.fuzz.streams_campaign  # noqa: F401
        import fastpath.cengine  # noqa: F401
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=0")
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
