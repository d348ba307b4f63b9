"""Disagreement classes still open in the engines: the explicit allow-list of the seeded test
campaign (tests/test_fuzz_streams.py) and of the atheris entry.

Each entry is (configuration pattern, class pattern, why) with fnmatch patterns. The list must only
shrink: when an engine fix lands, delete its entries — the test campaign then fails if the class
comes back. A configuration with no entry must be clean. The S-numbers are the findings in
docs/fuzzing-streams.md (and /work/wt/NOTES.md); "row N" is issue 11's table.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

# (configuration, class) pairs the seeded test campaign (TEST_SEED, TEST_CASES) finds today.
KNOWN_OPEN: tuple[tuple[str, str, str], ...] = (
    ("py-inplace", "budget:dev.regs_mem", "item b / S11: straddling store not split"),
    ("py-inplace", "budget:regs-dev-count", "item b / S11"),
    ("py-inplace", "hlt:dev.regs_mem,regs-dev-count", "item b / S11"),
    ("py-inplace", "hlt:regs,regs-dev-count", "row 1 / item b: straddling or misaligned read"),
    ("py-inplace", "unmapped:regs-dev-count", "rows 14/16/17 / S8-S10: access off the window end"),
    ("py-generic", "bad-decline-state:console,exits.pio_out,regs", "row 0: stale RIP after a hypercall"),
    ("py-generic", "bad-decline-state:flags,regs,regs-dev-count", "row 0"),
    ("py-generic", "bad-decline-state:regs", "row 0"),
    ("py-generic", "bad-decline-state:regs-dev-count", "row 16 / S8-S10: decline after the device access"),
    ("py-fast", "bad-decline-state:console,exits.pio_out,regs", "row 0"),
    ("py-fast", "bad-decline-state:flags,regs,regs-dev-count", "row 0"),
    ("py-fast", "bad-decline-state:regs", "row 0"),
    ("py-fast", "bad-decline-state:regs-dev-count", "row 16 / S8-S10"),
    ("py-wildcard", "bad-decline-state:regs", "row 0 / row 9"),
    ("c-inplace", "bad-decline-state:notify", "row 4: decline after device reads"),
    ("c-inplace", "bad-decline-state:notify,regs-dev-count", "row 4"),
    ("c-inplace", "bad-decline-state:regs-dev-count", "row 4"),
    ("c-inplace", "hlt:dev.regs_mem,regs-dev-count", "item b / S11"),
    ("c-inplace", "hlt:regs-dev-count", "rows 2/3: pieces re-read, MMIO->MMIO MOVS doubled"),
    ("c-inplace", "unmapped:regs-dev-count", "row 17 / S8-S10"),
    *[
        (c, cls, why)
        for c in ("c-capstone", "c-subset", "c-pv-fast", "c-generic", "c-fast")
        for cls, why in (
            ("hlt:dev.regs_mem,regs-dev-count", "item b / S11"),
            ("unmapped->hlt:flags,regs,regs-dev-count", "row 14: access off the window end completes"),
        )
    ],
    (
        "kvm",
        "unmapped:regs-dev-count",
        "S8-S10: emu/kvm.py lets an access off the window end reach the device",
    ),
)
TEST_SEED = 11
TEST_CASES = 40


def is_known_open(config: str, cls: str) -> bool:
    return any(fnmatchcase(config, c) and fnmatchcase(cls, k) for c, k, _ in KNOWN_OPEN)


def configs_with_known_open() -> set[str]:
    from fastpath.fuzz.streams_run import ALL_CONFIGS

    return {name for name in ALL_CONFIGS if any(fnmatchcase(name, c) for c, _, _ in KNOWN_OPEN)}
