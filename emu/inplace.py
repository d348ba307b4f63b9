"""In-place MMIO (the `inplace` style): the device sees each guest access inside Unicorn's hook.

`mmio_map` maps each window and a `UC_HOOK_MEM_READ|WRITE` hook on the same range sees the whole
access, with an exact RIP, before Unicorn performs it; the device acts in the hook, once, and the
`mmio_map` callbacks only hand Unicorn the bytes of that one access. The exit model asks more than
Unicorn gives, so this class also:
- gives no device an access that leaves its window into unmapped space (rule 6: Unicorn faults
  right after the hook), including the low half of a 16-byte access, which Unicorn splits;
- splits an access that crosses from one device's range into the next (rule 4, as KVM);
- drops QEMU's dummy store before each INS element, and the first load of a MOVS/CMPS iteration
  whose other access faults (the reference, KVM and the exit-style paths touch no device there);
- cuts the aligned pieces Unicorn reads around a misaligned access from the one device read.
"""

from __future__ import annotations

from typing import Any

import capstone
from unicorn import UC_MEM_WRITE, Uc

from emu.bus import Space
from emu.decode import effective_address, mem_operand
from emu.exits import MAX_INSN_LEN, ExitKind
from emu.stop import StopReason

_LEGACY_PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3))


class InplaceMmio:
    """The in-place hook and `mmio_map` callbacks of one machine."""

    def __init__(self, machine: Any) -> None:  # emu.machine.Machine, which imports this module
        self.m = machine
        # (gpa, size, value) of the last device read: mmio_map pieces are cut from it
        self.read_stash: tuple[int, int, int] = (0, 0, 0)
        self.ins_store_to = -1  # where the pending INS element will be stored (see _ins_dummy)
        self.string_ops: dict[int, int] = {}  # address -> string opcode or 0; see forget_code
        self.lock_negs: dict[int, bool] = {}  # address -> the instruction there is LOCK NEG m
        self.reread_ok = False  # the last device access was a read of read_stash by a LOCK NEG
        # an IDIV r/m32 with the dividend Unicorn's helper cannot divide by -1 reads its divisor here:
        # Unicorn gets 0 for a -1 so that QEMU raises #DE itself (emu/divguard.py, device_divisor)
        self.de_at = -1

    def forget_code(self) -> None:
        """A code page was written: the per-address cache is stale."""
        self.string_ops.clear()
        self.lock_negs.clear()

    def note_port_read(self, rip: int) -> None:
        """Called by the IN hook: an INS element's real store follows, at [rDI]."""
        if self.is_ins(rip):
            rdi = self.m.regfile.get("rdi")
            self.ins_store_to = rdi if self.m.mode == 64 else rdi & 0xFFFFFFFF

    def on_access(self, uc: Uc, access: int, addr: int, size: int, value: int, _ud: object) -> None:
        """The whole guest access, before Unicorn performs it: the device sees it here, once.

        An access that runs off its window into unmapped space reaches no device (rule 6): Unicorn
        faults on the unmapped part right after this hook. One that crosses from one device's
        range into the next is one device access per piece, low part first (rule 4, as KVM)."""
        try:
            rip = self.m._rip()
            m = self.m.board.bus.find(Space.MMIO, addr)
            if m is not None and addr + size <= m.end and size != 8 and self.string_op(rip) == 0:
                self._simple(access, rip, m, addr, size, value)  # the common case, fast
                return
            if not self._mapped(addr, size) or self._wide_half_leaves_window(addr, size, rip):
                return
            if access == UC_MEM_WRITE:
                self.reread_ok = False
                if (value == 0 or self.ins_store_to == addr) and self._ins_dummy(rip, addr):
                    return
                for gpa, n, off in self._pieces(addr, size):
                    piece = (value >> (8 * off)) & ((1 << (8 * n)) - 1)
                    if self.m.device_access(ExitKind.MMIO_WRITE, rip, gpa, n, piece) is None:
                        return  # the run ends here (device error): no later piece
            else:
                if self._movs_store_faults(rip):
                    return  # the iteration faults on its store: its load reaches no device either
                if self.reread_ok and self.read_stash[:2] == (addr, size):
                    self.reread_ok = False  # LOCK NEG's second load (see _simple)
                    return
                got = 0
                for gpa, n, off in self._pieces(addr, size):
                    piece = self.m.device_access(ExitKind.MMIO_READ, rip, gpa, n, 0)
                    if piece is None:
                        return
                    got |= piece << (8 * off)
                self.read_stash = (addr, size, self._divisor(rip, size, got))
                self.reread_ok = self.lock_neg(rip)
        except Exception as exc:  # noqa: BLE001 - reported as a stop, never a traceback
            self.m._halt(StopReason.DEVICE_ERROR, self.m._rip(), f"device error on MMIO {addr:#x}: {exc}")

    def _simple(self, access: int, rip: int, m: Any, addr: int, size: int, value: int) -> None:
        """One device, access inside it, not a string instruction, not a wide SSE half."""
        if access == UC_MEM_WRITE:
            self.reread_ok = False
            self.m.device_access(ExitKind.MMIO_WRITE, rip, addr, size, value)
        else:
            if self.reread_ok and self.read_stash[:2] == (addr, size):
                # QEMU runs LOCK NEG as a load and then an atomic cmpxchg that loads again; the
                # guest's one access was the first load (KVM, the generic path): answered from it
                self.reread_ok = False
                return
            got = self.m.device_access(ExitKind.MMIO_READ, rip, addr, size, 0)
            if got is None:
                return
            self.read_stash = (addr, size, self._divisor(rip, size, got))
            self.reread_ok = self.lock_neg(rip)

    def _divisor(self, rip: int, size: int, got: int) -> int:
        """The value Unicorn gets for a device read: `got`, unless the IDIV guard armed `de_at`."""
        return got if rip != self.de_at else self.m.divguard.device_divisor(rip, size, got)

    def _past_prefixes(self, rip: int) -> tuple[bytes, int]:
        """The bytes at `rip` and the index of the opcode after legacy prefixes (and REX in 64-bit)."""
        code = self.m.read_ram(rip, MAX_INSN_LEN)
        i = 0
        rex = range(0x40, 0x50) if self.m.mode == 64 else range(0)
        while i < len(code) and (code[i] in _LEGACY_PREFIXES or code[i] in rex):
            i += 1
        return code, i

    def lock_neg(self, rip: int) -> bool:
        """The instruction at `rip` is LOCK NEG m (F0 ... F6/F7 /3), cached like string_op."""
        hit = self.lock_negs.get(rip)
        if hit is None:
            code, i = self._past_prefixes(rip)
            hit = (0xF0 in code[:i] and i + 1 < len(code) and code[i] in (0xF6, 0xF7)
                   and (code[i + 1] >> 3) & 7 == 3 and code[i + 1] >> 6 != 3)
            self.lock_negs[rip] = hit
        return hit

    def string_op(self, rip: int) -> int:
        """The opcode byte of the instruction at `rip` if it is INS/MOVS/CMPS (the string
        instructions whose accesses the in-place hook treats specially), else 0. Cached per
        address until a code page is written (the budget hook's cache is cleared then too)."""
        op = self.string_ops.get(rip)
        if op is None:
            code, i = self._past_prefixes(rip)
            op = code[i] if i < len(code) and code[i] in (0x6C, 0x6D, 0xA4, 0xA5, 0xA6, 0xA7) else 0
            self.string_ops[rip] = op
        return op

    def _mapped(self, addr: int, size: int) -> bool:
        """Every byte of [addr, addr+size) is in an MMIO window (windows are merged spans)."""
        window = self.m.mmio_window(addr)
        return window is not None and addr + size <= window[0] + window[1]

    def _pieces(self, addr: int, size: int) -> list[tuple[int, int, int]]:
        """(gpa, size, offset in the access) per device range the access touches, low first."""
        bus = self.m.board.bus
        m = bus.find(Space.MMIO, addr)
        if m is not None and addr + size <= m.end:
            return [(addr, size, 0)]
        pieces, off = [], 0
        bounds = sorted({b for mp in bus.mappings(Space.MMIO) for b in (mp.base, mp.end)})
        while off < size:
            gpa = addr + off
            end = next((b for b in bounds if b > gpa), addr + size)
            n = min(addr + size, end) - gpa
            pieces.append((gpa, n, off))
            off += n
        return pieces

    def _movs_store_faults(self, rip: int) -> bool:
        """True when the instruction at `rip` is MOVS or CMPS and one of its accesses will hit
        unmapped space.

        QEMU performs MOVS's load before its store, and CMPS's [rDI] load before its [rSI] load;
        when the other access then faults (rule 6: registers as before the faulting iteration), the
        reference, KVM and the exit-style paths leave the device untouched, so the in-place load is
        not given to the device either."""
        if self.m.mode == 16 or self.string_op(rip) not in (0xA4, 0xA5, 0xA6, 0xA7):
            return False  # (in 16-bit code ES may have a base: not judged there)
        code = self.m.read_ram(rip, MAX_INSN_LEN)
        i, opsize, adsize, rex_w = 0, False, False, False
        while i < len(code):
            b = code[i]
            if b in _LEGACY_PREFIXES:
                opsize |= b == 0x66
                adsize |= b == 0x67
                rex_w = False
            elif self.m.mode == 64 and 0x40 <= b <= 0x4F:
                rex_w = bool(b & 8)
            else:
                break
            i += 1
        if i >= len(code) or code[i] not in (0xA4, 0xA5, 0xA6, 0xA7):
            return False
        if code[i] in (0xA4, 0xA6):
            size = 1
        elif rex_w:
            size = 8
        else:
            size = 2 if opsize != (self.m.mode == 16) else 4
        bits = {64: 32 if adsize else 64, 32: 16 if adsize else 32, 16: 32 if adsize else 16}[self.m.mode]
        mask = (1 << bits) - 1
        # MOVS: the store to [rDI]; CMPS: QEMU loads [rDI] before [rSI], either may be the fault.
        ends = [self.m.regfile.get("rdi") & mask]
        if code[i] in (0xA6, 0xA7):
            ends.append(self.m.regfile.get("rsi") & mask)
        return not all(self._mapped_byte(a) and self._mapped_byte(a + size - 1) for a in ends)

    def _mapped_byte(self, addr: int) -> bool:
        m = self.m
        return m.ram_base <= addr < m.ram_base + m.ram_size or m.mmio_window(addr) is not None

    def _ins_dummy(self, rip: int, addr: int) -> bool:
        """QEMU's INS stores a dummy 0 before each port read (to be restartable); that store is no
        guest access. True for it: the instruction is INS and no port read of it is waiting to be
        stored at `addr` (the IN hook notes the destination, see _on_in)."""
        if not self.is_ins(rip):
            return False
        if self.ins_store_to == addr:
            self.ins_store_to = -1
            return False
        return True

    def is_ins(self, rip: int) -> bool:
        return self.string_op(rip) in (0x6C, 0x6D)

    def _wide_half_leaves_window(self, addr: int, size: int, rip: int) -> bool:
        """Unicorn gives a 16-byte access to the hook as two 8-byte halves, low first. When the whole
        access leaves its window (rule 6) neither half may reach the device. Judged from the whole
        operand's address, not from `addr`: the high half of an access that ends inside the window
        may itself start less than 16 bytes before the window end (`movups [end-0x12], xmm2`)."""
        if size != 8:
            return False
        window = self.m.mmio_window(addr)
        if window is None or addr + 16 <= window[0] + window[1]:
            return False
        insn = next(self.m._cs.disasm(self.m.read_ram(rip, MAX_INSN_LEN), rip, 1), None)
        if insn is None:
            return False
        mem = capstone.x86.X86_OP_MEM
        wide = next((op for op in insn.operands if op.type == mem and op.size >= 16), None)
        if wide is None:
            return False
        start = effective_address(mem_operand(insn, wide), self.m.regfile.get, rip + insn.size, self.m.mode)
        return start + wide.size > window[0] + window[1]

    def map_read(self, window_base: int) -> Any:
        def read(uc: Uc, offset: int, size: int, _ud: object) -> int:
            # Unicorn reads a misaligned access as the aligned pieces around it (a 4-byte read at
            # +0xb arrives as pieces at +0x8 and +0xc) and keeps only the bytes the guest asked for:
            # each byte of a piece comes from the one device access by its own offset.
            gpa = window_base + offset
            base, length, value = self.read_stash
            if base <= gpa and gpa + size <= base + length:
                return (value >> (8 * (gpa - base))) & ((1 << (8 * size)) - 1)
            piece = 0
            for i in range(size):
                k = gpa + i - base
                if 0 <= k < length:
                    piece |= ((value >> (8 * k)) & 0xFF) << (8 * i)
            return piece

        return read

    @staticmethod
    def map_write(uc: Uc, offset: int, size: int, value: int, _ud: object) -> None:
        return None  # the MEM_WRITE hook already delivered the whole access to the device

