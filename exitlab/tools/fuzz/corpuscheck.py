"""`fuzz --corpus DIR` checked once, up front, in the parent process.

A missing directory, or one with no usable case, is an error (never a silent switch to another
generator); each corrupt file is skipped with one warning line naming it, and the campaign runs
on the rest. Workers then load the same directory without repeating the warnings.
"""

from __future__ import annotations

import sys

from emu.errors import InputError
from exitlab.tools.fuzz.gen import scan_corpus


def check_corpus(directory: str, used: bool) -> int:
    """Warn about each unusable file; the number of usable cases. `used`: the corpus generator is on."""
    cases, skipped = scan_corpus(directory)
    for path, why in skipped:
        print(f"exitlab fuzz: warning: skipping corpus file {path}: {why}", file=sys.stderr)
    if used and not cases:
        raise InputError(f"--corpus {directory}: no usable case ({len(skipped)} file(s) skipped)")
    return len(cases)
