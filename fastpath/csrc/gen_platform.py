"""Write fastpath/csrc/platform_gen.h: the platform's numbers and the hypercall ABI for C.

The numbers live once, in Python: the memory map and ports in `emu/platform.py`, the hypercall
numbers and KVM error codes there too, the hypercall instruction's length in `emu/hypercall.py`,
the default devices' constants (notify offsets, register-file id, console LSR) in `emu/devices.py`.
The C engine's headers (paths.h, devstate.h) include the generated file instead of repeating them
by hand, and tests/test_platform_gen.py fails when the checked-in header is not what this script
writes now (so a change to emu/platform.py cannot leave C behind).

Regenerate (pure Python, no build needed before; `make venv` rebuilds the extension after):

    .venv/bin/python fastpath/csrc/gen_platform.py > fastpath/csrc/platform_gen.h && make venv
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from emu import devices, hypercall, platform


@dataclass(frozen=True)
class Const:
    """One C constant: its name after the XL_ prefix, its value, its C suffix and why it exists."""

    name: str
    value: int
    suffix: str  # "ull" for guest-physical addresses and sizes, "u" for ports and small numbers
    doc: str
    decimal: bool = False  # counts and error codes read better in decimal


def _vmcall_word(insn: bytes) -> int:
    """The 3 instruction bytes as a little-endian integer (what the C paths compare with)."""
    return int.from_bytes(insn, "little")


_NOTIFY = devices.NotifyDevice()  # its default registration count is the C flat device's
CONSTS: tuple[tuple[str, tuple[Const, ...]], ...] = (
    (
        "Memory map (emu/platform.py)",
        (
            Const("PAGE", platform.PAGE, "ull", "page size"),
            Const("RAM_BASE", platform.RAM_BASE, "ull", "guest RAM start (page 0 stays unmapped)"),
            Const("RAM_SIZE", platform.RAM_SIZE, "ull", "guest RAM size"),
            Const("LOAD_ADDR", platform.LOAD_ADDR, "ull", "where a snippet is loaded and starts"),
            Const("STACK_TOP", platform.STACK_TOP, "ull", "initial RSP/ESP/SP"),
            Const("NOTIFY_MMIO", platform.NOTIFY_MMIO, "ull", "notify device MMIO window = pv window"),
            Const("NOTIFY_MMIO_SIZE", platform.NOTIFY_MMIO_SIZE, "ull", "its size"),
            Const("REGS_MMIO", platform.REGS_MMIO, "ull", "register device"),
            Const("REGS_MMIO_SIZE", platform.REGS_MMIO_SIZE, "ull", "its size"),
            Const("PCI_MMIO_BASE", platform.PCI_MMIO_BASE, "ull", "root port k's window: base + k * window"),
            Const("PCI_MMIO_WINDOW", platform.PCI_MMIO_WINDOW, "ull", "bridge memory window granule"),
        ),
    ),
    (
        "Ports (emu/platform.py)",
        (
            Const("NOTIFY_PORT", platform.NOTIFY_PORT, "u", "notify device legacy I/O port"),
            Const("NOTIFY_PORT_SIZE", platform.NOTIFY_PORT_SIZE, "u", "its size in ports", True),
            Const("CONSOLE_PORT", platform.CONSOLE_PORT, "u", "16550-style console"),
            Const("CONSOLE_PORT_SIZE", platform.CONSOLE_PORT_SIZE, "u", "its size in ports", True),
            Const("PCI_CONFIG_ADDRESS", platform.PCI_CONFIG_ADDRESS, "u", "PCI CONFIG_ADDRESS"),
            Const("PCI_CONFIG_DATA", platform.PCI_CONFIG_DATA, "u", "PCI CONFIG_DATA"),
            Const("ASSIGNED_PORT_BASE", platform.ASSIGNED_PORT_BASE, "u", "assigned notify ports' range"),
            Const("ASSIGNED_PORT_SIZE", platform.ASSIGNED_PORT_SIZE, "u", "its size in ports"),
        ),
    ),
    (
        "Hypercall ABI (emu/platform.py, emu/hypercall.py): KVM's, nr in RAX, args in RBX RCX RDX RSI,\n"
        " * result in RAX (truncated to 32 bits outside 64-bit mode), errors negated",
        (
            Const("HC_MMIO_WRITE", platform.HC_MMIO_WRITE, "u", "MMIO write on the guest's behalf"),
            Const("HYPERCALL_LEN", hypercall.HYPERCALL_LEN, "u", "VMCALL / VMMCALL length", True),
            Const("VMCALL", _vmcall_word(hypercall.VMCALL), "u", "0F 01 C1, little-endian"),
            Const("VMMCALL", _vmcall_word(hypercall.VMMCALL), "u", "0F 01 D9, little-endian"),
            Const("KVM_ENOSYS", platform.KVM_ENOSYS, "u", "unknown hypercall (negated in RAX)", True),
            Const("KVM_EFAULT", platform.KVM_EFAULT, "u", "address not in a device window", True),
            Const("KVM_EINVAL", platform.KVM_EINVAL, "u", "bad size", True),
        ),
    ),
    (
        "Default devices (emu/devices.py)",
        (
            Const("NOTIFY_OFF_MULTIPLIER", devices.NOTIFY_OFF_MULTIPLIER, "u", "queue q at base + 4*q", True),
            Const("NOTIFY_QUEUES", _NOTIFY.queues, "u", "wildcard registrations of the default notify", True),
            Const("REGS_ID", devices.REGS_ID, "u", "register device bytes 0-3 (\"exit\")"),
            Const("REGS_VERSION", devices.REGS_VERSION, "u", "register device bytes 4-7", True),
            Const("CONSOLE_LSR", devices.ConsoleDevice.LSR, "u", "line status register offset", True),
            Const("CONSOLE_LSR_READY", devices.ConsoleDevice.LSR_READY, "u", "what LSR reads"),
        ),
    ),
)

HEADER = """\
/* Generated by fastpath/csrc/gen_platform.py from emu/platform.py, emu/hypercall.py and
 * emu/devices.py: do not edit.  The platform's numbers and the hypercall ABI, written once (in
 * Python) for both languages.
 * Regenerate: .venv/bin/python fastpath/csrc/gen_platform.py > fastpath/csrc/platform_gen.h && make venv */
#ifndef XL_PLATFORM_GEN_H
#define XL_PLATFORM_GEN_H
"""


def render() -> str:
    """The header's text, exactly as checked in."""
    out = [HEADER]
    for title, consts in CONSTS:
        out.append(f"\n/* {title} */\n")
        for c in consts:
            text = str(c.value) if c.decimal else f"{c.value:#x}"
            out.append(f"#define XL_{c.name} {text}{c.suffix}  /* {c.doc} */\n")
    out.append("\n#endif\n")
    return "".join(out)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
