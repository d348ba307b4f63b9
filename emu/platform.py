"""The default platform: memory map, ports and the symbols every snippet sees.

One table (`DEFAULT_SYMBOLS`) is the source of truth: the assembler predefines these names with
`--defsym`, the machine maps the regions, and the README documents them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAGE = 0x1000

RAM_BASE = 0x1000  # page 0 left unmapped so a null-pointer access is a reported stop
RAM_SIZE = 0x400000 - 0x1000  # RAM ends at 4 MiB
LOAD_ADDR = 0x8000  # reachable from real mode with CS=0
STACK_TOP = 0x8000  # grows down, below the code

NOTIFY_MMIO = 0xFEB00000  # notify device MMIO window; also its pv-notify window (contract v1)
NOTIFY_MMIO_SIZE = 0x1000
NOTIFY_PORT = 0xC000  # legacy I/O notify port (2 bytes), `out dx, ax`
NOTIFY_PORT_SIZE = 2
REGS_MMIO = 0xFEB01000  # register device
REGS_MMIO_SIZE = 0x1000
CONSOLE_PORT = 0x3F8  # 16550-style: THR at +0, LSR at +5
CONSOLE_PORT_SIZE = 8
HC_MMIO_WRITE = 0x100  # hypercall: MMIO write on the guest's behalf (rbx=gpa, rcx=size, rdx=value)

# PCI (boards built by emu.pciboard; see docs/pci.md). Configuration mechanism #1 ports:
PCI_CONFIG_ADDRESS = 0xCF8  # CONFIG_ADDRESS, latched only by 32-bit accesses
PCI_CONFIG_DATA = 0xCFC  # CONFIG_DATA, byte lanes 0xCFC-0xCFF
PCI_MMIO_BASE = 0xE0000000  # root port k's memory window is PCI_MMIO_BASE + k * PCI_MMIO_WINDOW
PCI_MMIO_WINDOW = 0x100000  # PCI-to-PCI bridge memory windows are 1 MiB-granular
ASSIGNED_PORT_BASE = 0x8000  # reserved I/O range for option 3; device i's notify port is base + 2*i
ASSIGNED_PORT_SIZE = 0x1000  # one bridge window's worth: 2048 two-byte ports

# KVM hypercall return codes (include/uapi/linux/kvm_para.h), negated in RAX.
KVM_ENOSYS = 1000
KVM_EFAULT = 14
KVM_EINVAL = 22

DEFAULT_SYMBOLS: dict[str, int] = {
    "RAM_BASE": RAM_BASE,
    "RAM_END": RAM_BASE + RAM_SIZE,
    "LOAD_ADDR": LOAD_ADDR,
    "STACK_TOP": STACK_TOP,
    "NOTIFY_MMIO": NOTIFY_MMIO,
    "NOTIFY_PORT": NOTIFY_PORT,
    "REGS_MMIO": REGS_MMIO,
    "CONSOLE_PORT": CONSOLE_PORT,
    "HC_MMIO_WRITE": HC_MMIO_WRITE,
    "PCI_CONFIG_ADDRESS": PCI_CONFIG_ADDRESS,
    "PCI_CONFIG_DATA": PCI_CONFIG_DATA,
}


@dataclass(frozen=True, slots=True)
class Region:
    """A named guest-physical (or port) range."""

    name: str
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, addr: int, size: int = 1) -> bool:
        return self.base <= addr and addr + size <= self.end


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    """What a machine maps; `symbols` are handed to the assembler."""

    ram: Region = Region("ram", RAM_BASE, RAM_SIZE)
    load_addr: int = LOAD_ADDR
    stack_top: int = STACK_TOP
    symbols: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SYMBOLS))


MEMORY_MAP_DOC = [
    ("RAM", RAM_BASE, RAM_BASE + RAM_SIZE, "guest RAM, host buffer mapped with mem_map_ptr"),
    ("LOAD_ADDR", LOAD_ADDR, None, "where a snippet is loaded and starts"),
    ("STACK_TOP", STACK_TOP, None, "initial RSP/ESP/SP (grows down)"),
    ("NOTIFY_MMIO", NOTIFY_MMIO, NOTIFY_MMIO + NOTIFY_MMIO_SIZE, "notify device MMIO window = pv window"),
    ("REGS_MMIO", REGS_MMIO, REGS_MMIO + REGS_MMIO_SIZE, "register device"),
    ("NOTIFY_PORT", NOTIFY_PORT, NOTIFY_PORT + NOTIFY_PORT_SIZE, "notify device legacy I/O port"),
    ("CONSOLE_PORT", CONSOLE_PORT, CONSOLE_PORT + CONSOLE_PORT_SIZE, "console (THR +0, LSR +5)"),
]
