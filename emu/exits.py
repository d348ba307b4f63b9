"""ExitRecord: one VM exit as the hardware would report it, plus Unicorn's view kept apart.

A decode path may read `rip`, `mode`, `addr`, `insn` and `regs` (what a real host has on an
EPT-violation exit). `truth_size`/`truth_value` are what Unicorn itself observed; for port I/O
they are also what hardware reports (port, size and data come with the exit), and for MMIO the
engine decoded itself (in-place style, KVM_EXIT_MMIO: the `inplace` path, emu/iopaths.py) what the
engine reports; for exit-style MMIO they are ground truth for tests only and no decoder may read
them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# General registers in x86 encoding order (index == register number), then the rest a host snapshots.
GPR_NAMES: tuple[str, ...] = (
    "rax",
    "rcx",
    "rdx",
    "rbx",
    "rsp",
    "rbp",
    "rsi",
    "rdi",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
)
REG_NAMES: tuple[str, ...] = GPR_NAMES + ("rip", "rflags", "fs_base", "gs_base")
REG_INDEX: dict[str, int] = {name: i for i, name in enumerate(REG_NAMES)}

MAX_INSN_LEN = 15


class ExitKind(enum.Enum):
    MMIO_WRITE = "mmio_write"
    MMIO_READ = "mmio_read"
    PIO_OUT = "pio_out"
    PIO_IN = "pio_in"
    HYPERCALL = "hypercall"


@dataclass(frozen=True, slots=True)
class ExitRecord:
    """One exit. `addr` is the guest-physical address (MMIO), the port (PIO), or the hypercall number."""

    kind: ExitKind
    rip: int
    mode: int
    addr: int
    insn: bytes
    regs: tuple[int, ...]
    truth_size: int = 0
    truth_value: int = 0
    # vector registers (xmmN/ymmN/mmN) and cr0 the instruction reads, by name (emu/vecstate.py):
    # recorded for the SSE/AVX/MMX moves and SMSW only, so a replay can carry them out
    vec: tuple[tuple[str, int], ...] = ()

    def reg(self, name: str) -> int:
        return self.regs[REG_INDEX[name]]

    def regs_dict(self) -> dict[str, int]:
        return dict(zip(REG_NAMES, self.regs, strict=False))
