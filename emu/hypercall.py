"""Hypercalls with the KVM ABI: number in RAX, arguments in RBX, RCX, RDX, RSI, result in RAX.

HC_MMIO_WRITE is the seed's option 1: the guest asks the host to perform an MMIO write, so the
host learns address, size and value from registers and never decodes an instruction.
"""

from __future__ import annotations

from emu.bus import Bus, Space
from emu.platform import HC_MMIO_WRITE, KVM_EFAULT, KVM_EINVAL, KVM_ENOSYS

VMCALL = bytes.fromhex("0f01c1")  # Intel
VMMCALL = bytes.fromhex("0f01d9")  # AMD
HYPERCALL_LEN = 3


def is_hypercall(insn: bytes) -> bool:
    return insn[:3] in (VMCALL, VMMCALL)


def _neg(code: int, mode: int) -> int:
    return (-code) & ((1 << 64) - 1 if mode == 64 else 0xFFFFFFFF)


def hypercall(bus: Bus, mode: int, nr: int, a0: int, a1: int, a2: int, a3: int) -> int:
    """Perform hypercall `nr`; returns the value for RAX (0 or a negated KVM error code)."""
    if nr == HC_MMIO_WRITE:
        gpa, size, value = a0, a1, a2
        if size not in (1, 2, 4, 8) or (size == 8 and mode != 64):
            return _neg(KVM_EINVAL, mode)
        if bus.find(Space.MMIO, gpa) is None or bus.find(Space.MMIO, gpa + size - 1) is None:
            return _neg(KVM_EFAULT, mode)
        # One device write per device range the access touches, low part first (SEMANTICS rule 4,
        # as KVM splits an access that crosses from one MMIO region into the next).
        value &= (1 << (8 * size)) - 1
        off = 0
        while off < size:
            m = bus.find(Space.MMIO, gpa + off)
            if m is None:
                return _neg(KVM_EFAULT, mode)
            n = min(size - off, m.end - (gpa + off))
            bus.write(Space.MMIO, gpa + off, n, (value >> (8 * off)) & ((1 << (8 * n)) - 1))
            off += n
        return 0
    return _neg(KVM_ENOSYS, mode)
