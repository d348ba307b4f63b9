"""Disagreement classes still open in the engines: the explicit allow-list of the seeded test
campaign (tests/test_fuzz_streams.py) and of the atheris entry.

Each entry is (configuration pattern, class pattern, why) with fnmatch patterns. The list must only
shrink: when an engine fix lands, delete its entries — the test campaign then fails if the class
comes back. A configuration with no entry must be clean. The S-numbers are the findings in
docs/fuzzing-streams.md; "row N" is issue 11's table.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from exitlab.tools.fuzz.streams_run import ALL_CONFIGS

# (configuration, class) pairs the seeded test campaign (TEST_SEED, TEST_CASES) finds today.
KNOWN_OPEN: tuple[tuple[str, str, str], ...] = (
    # Empty since the merges of cengine c17a02a, pyengine 01c6d8e and generic 90d93b2: every Unicorn
    # configuration is clean on the test seed (T1-T7, T9-T11, T13 fixed; T5 by cengine b16892f).
    # KVM is not in the test campaign (host-dependent); see docs/fuzzing-streams.md (T8).
)
TEST_SEED = 11
TEST_CASES = 40


def is_known_open(config: str, cls: str) -> bool:
    return any(fnmatchcase(config, c) and fnmatchcase(cls, k) for c, k, _ in KNOWN_OPEN)


def configs_with_known_open() -> set[str]:
    return {name for name in ALL_CONFIGS if any(fnmatchcase(name, c) for c, _, _ in KNOWN_OPEN)}
