"""Port I/O, hypercalls and engine-decoded MMIO as paths: `PioPath` ("pio"), `HypercallPath`
("hypercall") and `InplacePath` ("inplace").

They are paths like the MMIO ones (`name`, `handle(exit, cpu) -> Outcome | None`): the device is
reached only through the `Cpu` seam (`pio_read`/`pio_write`, `mmio_write`), never through a Bus of
their own, so the same objects serve the live Unicorn engine, KVM and a trace replay.

- Port I/O needs no decode: hardware reports port, size, direction and (for OUT) the data with
  the exit (`ExitRecord.addr`, `truth_size`, `truth_value`, which for PIO *are* what the exit
  carries). IN returns the value read in its `DeviceAccess`; the backend puts it into AL/AX/EAX
  (or the string element) itself, as KVM's userspace fills `kvm_run.io` and the kernel completes
  the instruction. `next_rip` is the RIP after the instruction (legacy prefixes, REX, opcode and
  imm8 counted); a string form moves one element per exit and its engine repeats it.
- Hypercalls use the KVM ABI: number in RAX, arguments in RBX, RCX, RDX, RSI, result in RAX, and
  resume at RIP+3 (SEMANTICS rule 3: the backend restarts there, it never writes RIP and goes on).
  HC_MMIO_WRITE is the seed's option 1: the guest asks the host to perform an MMIO write, so the
  host learns address, size and value from registers and never decodes an instruction.
"""

from __future__ import annotations

from emu.cpu import Cpu, DeviceAccess, Outcome
from emu.errors import EmulationError
from emu.exits import ExitKind, ExitRecord
from emu.hypercall import HYPERCALL_LEN, is_hypercall
from emu.platform import HC_MMIO_WRITE, KVM_EFAULT, KVM_EINVAL, KVM_ENOSYS

_M64 = (1 << 64) - 1
_M32 = 0xFFFFFFFF
_PREFIXES = frozenset(b"\x66\x67\xf2\xf3\x2e\x36\x3e\x26\x64\x65\xf0")
_PORT_IMM8 = frozenset(b"\xe4\xe5\xe6\xe7")  # IN/OUT with the port in an imm8
_PORT_DX = frozenset(b"\xec\xed\xee\xef\x6c\x6d\x6e\x6f")  # IN/OUT/INS/OUTS with the port in DX
_ONE_BYTE = frozenset(bytes([b]) for b in _PORT_DX)
_PIO_OUT, _PIO_IN = ExitKind.PIO_OUT, ExitKind.PIO_IN


def _rip_mask(mode: int) -> int:
    """Outside 64-bit mode RIP wraps at 32 bits, as in the other paths, the C engine and KVM's
    skip_emulated_instruction (`rip = (u32)rip`)."""
    return _M64 if mode == 64 else _M32


def pio_length(insn: bytes, mode: int) -> int:
    """Length of the port I/O instruction at the start of `insn`, 0 when it is none (or cut short).
    Legacy prefixes and, in 64-bit mode, REX prefixes may precede the opcode (an extra REX is
    ignored by the CPU, not an error)."""
    if insn[:1] in _ONE_BYTE:
        return 1  # the common `in al, dx` / `out dx, ax` ... with no prefix
    i, n = 0, min(len(insn), 15)
    while i < n and (insn[i] in _PREFIXES or (mode == 64 and 0x40 <= insn[i] <= 0x4F)):
        i += 1
    if i >= n:
        return 0
    if insn[i] in _PORT_DX:
        return i + 1
    if insn[i] in _PORT_IMM8 and i + 1 < n:
        return i + 2
    return 0


class PioPath:
    """One IN/OUT (or one INS/OUTS element) to the device at the exit's port.

    `completed=True`: the engine reports the exit with RIP already past the instruction and
    completes it itself (KVM's KVM_EXIT_IO), so `next_rip` is the exit's RIP and the bytes there
    are not checked. Otherwise the exit's RIP is on the instruction, which must be port I/O."""

    name = "pio"

    def __init__(self, completed: bool = False) -> None:
        self.completed = completed

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None:
        kind = exit.kind
        if kind is not _PIO_OUT and kind is not _PIO_IN:
            return None
        if self.completed:
            length = 0
        else:
            insn = exit.insn
            if insn[:1] in _ONE_BYTE:
                length = 1
            elif insn[:1] == b"\x66" and insn[1:2] in _ONE_BYTE:
                length = 2  # `out dx, ax` / `in ax, dx`: the other common one
            else:
                length = pio_length(insn, exit.mode)
            if not length:  # before any device access (rule 5)
                raise EmulationError("no port I/O instruction", exit.rip, exit.insn)
        size, port = exit.truth_size, exit.addr
        mask = (1 << (8 * size)) - 1
        if kind is _PIO_OUT:
            value = exit.truth_value & mask
            cpu.pio_write(port, size, value)
            access = DeviceAccess(port, size, True, value, True)
        else:
            value = cpu.pio_read(port, size) & mask
            access = DeviceAccess(port, size, False, value, True)
        return Outcome((exit.rip + length) & (_M64 if exit.mode == 64 else _M32), (access,))


def _neg(code: int, mode: int) -> int:
    return (-code) & (_M64 if mode == 64 else _M32)


class HypercallPath:
    """`vmcall`/`vmmcall` with the KVM ABI; sets RAX to 0 or a negated KVM error code."""

    name = "hypercall"

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None:
        if exit.kind is not ExitKind.HYPERCALL or not is_hypercall(exit.insn):
            return None
        accesses: list[DeviceAccess] = []
        rax = self._call(cpu, exit.mode, accesses)
        cpu.set("rax", rax)
        return Outcome((exit.rip + HYPERCALL_LEN) & _rip_mask(exit.mode), tuple(accesses))

    @staticmethod
    def _call(cpu: Cpu, mode: int, accesses: list[DeviceAccess]) -> int:
        """Perform hypercall RAX; returns the value for RAX, appends the device accesses made.
        Outside 64-bit mode the number and arguments are 32 bits (KVM's kvm_emulate_hypercall)."""
        wm = _M64 if mode == 64 else _M32
        nr = cpu.get("rax") & wm
        if nr != HC_MMIO_WRITE:
            return _neg(KVM_ENOSYS, mode)
        gpa, size, value = cpu.get("rbx") & wm, cpu.get("rcx") & wm, cpu.get("rdx") & wm
        if size not in (1, 2, 4, 8) or (size == 8 and mode != 64):
            return _neg(KVM_EINVAL, mode)
        claims = getattr(cpu, "mmio_claims", None) or cpu.is_mmio
        region_of = getattr(cpu, "mmio_region", None)
        if region_of is None and not claims(gpa + size - 1):  # then one piece: its last byte too
            return _neg(KVM_EFAULT, mode)
        # One device write per device range the access touches, low part first (SEMANTICS rule 4,
        # as KVM splits an access that crosses from one MMIO region into the next). Every piece is
        # checked before the first write: -KVM_EFAULT means no device saw any of it.
        pieces: list[tuple[int, int]] = []
        off = 0
        while off < size:
            a = gpa + off
            if not claims(a):
                return _neg(KVM_EFAULT, mode)
            region = region_of(a) if region_of is not None else None
            n = size - off if region is None else min(size - off, region[0] + region[1] - a)
            pieces.append((a, n))
            off += n
        value &= (1 << (8 * size)) - 1
        for a, n in pieces:
            piece = (value >> (8 * (a - gpa))) & ((1 << (8 * n)) - 1)
            cpu.mmio_write(a, n, piece)
            accesses.append(DeviceAccess(a, n, True, piece))
        return 0


class InplacePath:
    """An MMIO access the engine decoded and completes itself ("inplace": Unicorn's in-place hook,
    KVM's KVM_EXIT_MMIO). Size and data come with the exit (`truth_size`, `truth_value`: here they
    are what the engine reports, as for port I/O); the device is reached through the Cpu. A read
    returns its value in the DeviceAccess for the engine to complete the instruction with; the
    engine moves RIP itself, so `next_rip` is the exit's own RIP."""

    name = "inplace"

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome | None:
        size = exit.truth_size
        mask = (1 << (8 * size)) - 1
        if exit.kind is ExitKind.MMIO_WRITE:
            value = exit.truth_value & mask
            cpu.mmio_write(exit.addr, size, value)
            return Outcome(exit.rip, (DeviceAccess(exit.addr, size, True, value),))
        if exit.kind is ExitKind.MMIO_READ:
            value = cpu.mmio_read(exit.addr, size) & mask
            return Outcome(exit.rip, (DeviceAccess(exit.addr, size, False, value),))
        return None
