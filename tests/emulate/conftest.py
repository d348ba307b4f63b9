"""Shared fixtures for the per-family tests: `agree` runs a family's differential campaign."""

from __future__ import annotations

import os

os.environ.setdefault("UC_IGNORE_REG_BREAK", "1")  # silence unicorn's deprecation warning on unused ids
