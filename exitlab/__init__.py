"""exitlab's public Python API: run a guest, decode and emulate one instruction, replay a trace,
validate a guest against the pv contract, run a quick bench sweep.

    import exitlab
    result = exitlab.run("kick_mmio", path="generic")
    print(result.stop.reason.value, result.exits)

Every function returns the dataclass the matching CLI command prints as JSON (each has
`to_json()` giving exactly the CLI's keys). This package is the top layer: it imports `emu` and
`fastpath`, and they never import it. Everything not re-exported here is internal and may move.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from emu import __version__ as _emu_version

if TYPE_CHECKING:  # the names below are loaded on first use (see __getattr__)
    from exitlab.api import (
        Access,
        BenchResult,
        EmulateResult,
        ExitlabError,
        ExitRecord,
        GuestImage,
        ReplayResult,
        Report,
        RunResult,
        Stop,
        StopReason,
        bench,
        decode,
        emulate,
        load,
        replay,
        run,
        validate,
        version_info,
    )

try:
    __version__: str = _metadata.version("exitlab")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = _emu_version


def __getattr__(name: str) -> Any:
    """The API is loaded on first use, so `exitlab.cli` (the console script) starts without it and
    can take Ctrl-C from its first line on (docs/robustness.md)."""
    if name in __all__ and name != "__version__":
        from exitlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'exitlab' has no attribute {name!r}")


__all__ = [
    "Access",
    "BenchResult",
    "EmulateResult",
    "ExitRecord",
    "ExitlabError",
    "GuestImage",
    "ReplayResult",
    "Report",
    "RunResult",
    "Stop",
    "StopReason",
    "__version__",
    "bench",
    "decode",
    "emulate",
    "load",
    "replay",
    "run",
    "validate",
    "version_info",
]
