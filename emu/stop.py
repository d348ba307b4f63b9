"""How a run ends: the stop taxonomy every engine shares (docs/SEMANTICS.md rule 12).

Kept apart from emu.machine so the modules the run loop uses (in-place MMIO, system instructions)
can name a stop without importing the loop itself."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class StopReason(enum.Enum):
    HLT = "hlt"
    BUDGET = "budget"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    UNMAPPED = "unmapped"
    INVALID_INSN = "invalid_insn"
    TRIPLE_FAULT = "triple_fault"
    EMULATION_ERROR = "emulation_error"
    DEVICE_ERROR = "device_error"


@dataclass(frozen=True, slots=True)
class Stop:
    reason: StopReason
    rip: int
    message: str
    insn: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.reason is not StopReason.HLT

    @property
    def interrupted(self) -> bool:
        """The user asked to stop (SIGINT); the CLI exits 130."""
        return self.reason is StopReason.INTERRUPTED

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason.value,
            "rip": self.rip,
            "message": self.message,
            "bytes": self.insn.hex(" "),
        }
