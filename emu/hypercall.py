"""The hypercall instructions: `vmcall` (Intel) and `vmmcall` (AMD), 3 bytes each.

What a hypercall does (the KVM ABI, HC_MMIO_WRITE) is the hypercall *path*, `emu.iopaths.
HypercallPath`; this module only knows the encodings, which the run loop's site classifier and the
stream fuzzer's reference need without the path.
"""

from __future__ import annotations

VMCALL = bytes.fromhex("0f01c1")  # Intel
VMMCALL = bytes.fromhex("0f01d9")  # AMD
HYPERCALL_LEN = 3


def is_hypercall(insn: bytes) -> bool:
    return insn[:3] in (VMCALL, VMMCALL)
