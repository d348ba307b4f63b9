"""String INS (and OUTS) under KVM, element by element (SEMANTICS rules 4 and 6; docs/kvm.md).

KVM's emulator (`pio_in_emulated`) reads INS elements from the port ahead: one `KVM_EXIT_IO` asks
userspace for up to `count` elements (RCX, capped by a page measured in *bytes* against a count of
*elements*, so a word/dword batch can cross the page end). Then:

- DF = 0: all the elements are stored with *one* memory access (`OP_MEM_STR`): into a window that
  is one MMIO write of count*size bytes, handed out in pieces of at most 8 bytes;
- DF = 1: one element is stored per emulation; a store into a window exits to userspace, and the
  rest of the read-ahead is thrown away (the next iteration exits for the port again), so each
  port element would be read 1 + the remaining count times.

The exit model wants one port read and one device write per element, and a precise fault at the
first element whose store leaves RAM and the windows, before its port read. `InsBatch.plan` says,
at the port exit, how many elements to really read from the port (the others are filled with
`FILLER` and must never be stored) and whether the batch ends in a fault; `InsBatch.store` turns
the MMIO pieces of the batched store back into element writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

INS_OPCODES = (0x6C, 0x6D)
OUTS_OPCODES = (0x6E, 0x6F)
_LEGACY_PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3))
_DF = 0x400
FILLER = 0xFF  # port data the engine did not read; KVM must discard it (checked in `store`)


def _prefixed_opcode(code: bytes, mode: int) -> tuple[int, int, bool, bool]:
    """(opcode index, address size, REP seen, 66 seen) after the legacy prefixes and REX."""
    i, asz, rep, opsize = 0, mode // 8, False, False
    rex = range(0x40, 0x50) if mode == 64 else range(0)
    while i < len(code) and (code[i] in _LEGACY_PREFIXES or code[i] in rex):
        if code[i] == 0x67:  # address size: 64 -> 32, 32 -> 16, 16 -> 32
            asz = 4 if mode in (64, 16) else 2
        rep = rep or code[i] in (0xF2, 0xF3)
        opsize = opsize or code[i] == 0x66
        i += 1
    return i, asz, rep, opsize


def outs_fault(code: bytes, mode: int, regs: dict[str, int], is_mapped: Callable[[int], bool]) -> int | None:
    """For OUTS at a memory-read exit (the state before this element): the first byte of the
    element's source that is neither RAM nor a window, else None (also when not OUTS). The generic
    path does not decode OUTS; one element is one read of DS:[RSI] of the operand size."""
    i, asz, _rep, opsize = _prefixed_opcode(code, mode)
    if i >= len(code) or code[i] not in OUTS_OPCODES:
        return None
    size = 1 if code[i] == 0x6E else (4 if opsize == (mode == 16) else 2)
    src = regs.get("rsi", 0) & ((1 << (8 * asz)) - 1)
    return next((b for b in range(src, src + size) if not is_mapped(b)), None)


@dataclass
class InsBatch:
    """The elements of the current INS port exit that are still to be stored.

    `pending`: (address, size) of real elements whose store goes to a window, in store order.
    `filler`: addresses of elements filled with FILLER (never read from the port).
    `fault`: set when element `done` of the batch faults: (first unmapped byte, elements done).
    """

    pending: list[tuple[int, int]] = field(default_factory=list)
    filler: list[tuple[int, int]] = field(default_factory=list)
    fault: tuple[int, int] | None = None
    rip: int = 0
    regs: dict[str, int] = field(default_factory=dict)  # before the batch
    rep: bool = False
    addr_size: int = 8
    step: int = 0

    def clear(self) -> None:
        self.pending, self.filler, self.fault = [], [], None

    @property
    def active(self) -> bool:
        return bool(self.pending or self.filler or self.fault)

    def plan(self, code: bytes, mode: int, regs: dict[str, int], size: int, count: int,
             in_window: Callable[[int], bool], is_mapped: Callable[[int], bool]) -> int | None:
        """At a port-input exit: None if the instruction (`code` at RIP) is not INS, else how many
        of the `count` elements to read from the port (0: the first element faults; `fault` says
        where). `regs` is the state before this batch (KVM writes nothing back before the data)."""
        self.clear()
        i, asz, rep, _opsize = _prefixed_opcode(code, mode)
        if i >= len(code) or code[i] not in INS_OPCODES:
            return None
        self.rep, self.addr_size, self.rip, self.regs = rep, asz, regs.get("rip", 0), dict(regs)
        amask = (1 << (8 * asz)) - 1
        self.step = -size if regs.get("rflags", 0) & _DF else size
        dst = regs.get("rdi", 0) & amask
        real = count
        for k in range(count):
            addr = (dst + k * self.step) & amask
            bad = next((b for b in range(addr, addr + size) if not is_mapped(b)), None)
            if bad is not None:
                self.fault, real = (bad, k), k
                break
            if in_window(addr):
                self.pending.append((addr, size))
                if self.step < 0:
                    real = k + 1  # DF = 1: KVM stores this one, exits, and drops the read-ahead
                    break
        for k in range(real, count):
            self.filler.append(((dst + k * self.step) & amask, size))
        self.pending = self.pending[:real]
        return real

    def store(self, gpa: int, length: int, data: bytes) -> tuple[list[tuple[int, int, int]], bool]:
        """A piece of KVM's store of this batch: (element writes for the device, stop now?).

        `stop now` when the batch's faulting element is reached (every earlier element stored)
        or when KVM stores data the engine never read (FILLER: raises ValueError)."""
        out: list[tuple[int, int, int]] = []
        while self.pending and gpa <= self.pending[0][0] and sum(self.pending[0]) <= gpa + length:
            addr, n = self.pending.pop(0)
            off = addr - gpa
            out.append((addr, n, int.from_bytes(data[off : off + n], "little")))
        if self.fault is not None:
            return out, not self.pending
        if any(addr < gpa + length and gpa < addr + n for addr, n in self.filler):
            raise ValueError(
                f"KVM stored INS data at {gpa:#x} that the engine filled in without reading the port"
            )
        return out, False

    def registers_at_fault(self) -> dict[str, int]:
        """The state before the faulting element: the earlier elements stored, RDI/RCX advanced."""
        assert self.fault is not None
        done = self.fault[1]
        amask = (1 << (8 * self.addr_size)) - 1
        out = dict(self.regs)

        def advance(name: str, delta: int) -> int:
            v = self.regs.get(name, 0)
            new = (v + delta) & amask
            return (v & ~amask & ((1 << 64) - 1)) | new if self.addr_size == 2 else new

        out["rdi"] = advance("rdi", done * self.step)
        if self.rep:
            out["rcx"] = advance("rcx", -done)
        return out
