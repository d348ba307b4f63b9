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

from emu import __version__ as _emu_version
from exitlab.api import (
    Access,
    BenchResult,
    EmulateResult,
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
from exitlab.api import ExitlabError as ExitlabError

try:
    __version__: str = _metadata.version("exitlab")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = _emu_version

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
