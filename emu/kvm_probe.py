"""What instruction made a KVM exit, and does the architecture fault it? (SEMANTICS rules 4 and 6.)

KVM's instruction emulator does not fault an access that leaves its MMIO window: it splits the
access into fragments, one per page, and hands them to userspace one exit at a time (the part
beyond the window has no memslot, so to KVM it is "MMIO" too). By then part of the access has
reached a device, and for a write the kernel has already written the registers back
(`x86_emulate_instruction`: `writeback` is cleared only for MMIO *reads*), so the exit shows RIP
after the instruction, or, for a REP STOS/MOVS iteration (even the last), on it with RCX/RSI/RDI
already advanced.

exitlab's contract is a precise fault before any part of the access (rule 6), so at such an exit
the KVM engine asks this module, *before* touching a device:

- `probe_at(...)`: with the state the exit shows for a read (RIP on the instruction, registers as
  before it), run one execution (one REP iteration) of the instruction through the generic path's
  emulator on a `ProbeCpu` that only looks: windows are devices that record and answer 0, RAM is
  read but never written, everything else is unmapped. An `UnmappedAccess` is the fault the
  architecture gives, with its first unmapped byte.
- `identify_write(...)`: for a write exit, find the instruction from the post-instruction state:
  the REP string instruction at RIP (an unfinished iteration) or an instruction ending at RIP; a
  candidate's pre-state is the post-state with the instruction's register effects undone, and it is
  accepted only if emulating it from that pre-state (everything outside RAM a recording device)
  gives back exactly KVM's registers and its first non-RAM access is this write at this address.
  Ties are broken by `instruction_ends` (a linear sweep of the code).
- `flags_before_iteration(...)`: the RFLAGS a REP CMPS/SCAS's previous iteration left, which KVM
  has not written back yet at a later iteration's exit.

All use emu.decode/emu.emulate, the generic path the streams reference agrees with, so the fault
address and order (MOVS: source, then destination) are the generic path's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import capstone

from emu.access import Access, AccessKind, Op
from emu.cpu import DeviceAccess
from emu.decode import decode
from emu.emulate import execute
from emu.errors import EmulationError, GuestFault, UnmappedAccess
from emu.exits import MAX_INSN_LEN
from emu.semantics.core import DF

ReadRam = Callable[[int, int], bytes]  # GuestRam.read: short where RAM ends, empty outside RAM
_MASK64 = (1 << 64) - 1


class ProbeCpu:
    """An `emu.cpu.Cpu` that changes nothing: registers in a dict, RAM read-only, devices recorded.

    `strict`: only `windows` are devices and other non-RAM addresses are unmapped (the fault
    check). Not strict: every non-RAM address is a device (to replay a write whose target KVM
    reported, wherever it is). XMM registers read as 0: a store's value never decides a fault.
    """

    def __init__(self, mode: int, regs: dict[str, int], read_ram: ReadRam, in_window: Callable[[int], bool],
                 strict: bool, answers: dict[tuple[int, int], int] | None = None) -> None:
        self.mode = mode
        self.regs = dict(regs)
        self._read_ram = read_ram
        self._in_window = in_window
        self._strict = strict
        self._answers = answers  # (gpa, size) -> the value a device read returned, when replaying
        self.unanswered = False
        self.accesses: list[DeviceAccess] = []

    def get(self, name: str) -> int:
        return self.regs.get(name, 0)

    def set(self, name: str, value: int) -> None:
        self.regs[name] = value & _MASK64

    def get_xmm(self, index: int) -> int:
        return 0

    def set_xmm(self, index: int, value: int) -> None:
        pass

    def read_mem(self, addr: int, size: int) -> bytes:
        return self._read_ram(addr, size)

    def write_mem(self, addr: int, data: bytes) -> None:
        pass

    def is_mmio(self, gpa: int) -> bool:
        if self._strict:
            return self._in_window(gpa)
        return not self._read_ram(gpa, 1)

    def mmio_read(self, gpa: int, size: int) -> int:
        value = 0
        if self._answers is not None:
            if (gpa, size) in self._answers:
                value = self._answers[(gpa, size)]
            else:
                self.unanswered = True
        self.accesses.append(DeviceAccess(gpa, size, False, value))
        return value

    def mmio_write(self, gpa: int, size: int, value: int) -> None:
        self.accesses.append(DeviceAccess(gpa, size, True, value))

    # the probe replays memory instructions only: port I/O never reaches it
    def pio_read(self, port: int, size: int) -> int:
        raise EmulationError(f"the MMIO probe does no port I/O (port {port:#x})")

    def pio_write(self, port: int, size: int, value: int) -> None:
        raise EmulationError(f"the MMIO probe does no port I/O (port {port:#x})")


@dataclass(frozen=True, slots=True)
class Found:
    """The instruction behind an exit: where it starts, its decoded form, the state before it."""

    rip: int
    access: Access
    regs: dict[str, int]  # REG_NAMES -> value before the instruction (REP: before this iteration)


_DECODED: dict[tuple[int, int, bytes], Access | None] = {}
_DECODED_MAX = 4096


def _decode_at(read_ram: ReadRam, mode: int, rip: int) -> Access | None:
    """The generic path's decode of the bytes at `rip`, None if it has none; cached by the bytes
    (a guest's exits come from a few instructions, and a decode costs far more than the lookup)."""
    code = read_ram(rip, MAX_INSN_LEN)
    if not code:
        return None
    key = (mode, rip, code)
    if key in _DECODED:
        return _DECODED[key]
    try:
        access: Access | None = decode(code, mode, rip)
    except EmulationError:
        access = None
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[key] = access
    return access


def may_touch_another_place(rip: int, mode: int, read_ram: ReadRam) -> bool:
    """Whether the instruction at `rip` accesses memory other than its one operand (MOVS/CMPS's
    second string operand, the stack), or cannot be decoded here (then it is not probed at all)."""
    access = _decode_at(read_ram, mode, rip)
    return access is not None and (access.src_mem is not None or access.kind is AccessKind.STACK)


def fault_of(
    found: Found, mode: int, read_ram: ReadRam, in_window: Callable[[int], bool]
) -> UnmappedAccess | None:
    """The rule-6 fault of one execution (one REP iteration) of `found`, or None if it has none.

    None also when the generic emulator cannot run the instruction (a decline or another fault):
    then the engine has nothing better than KVM's own answer.
    """
    cpu = ProbeCpu(mode, found.regs, read_ram, in_window, strict=True)
    try:
        execute(found.access, cpu, found.rip, mode, max_iterations=1)
    except UnmappedAccess as exc:
        return exc
    except (EmulationError, GuestFault, ValueError, KeyError):
        return None
    return None


def probe_at(rip: int, regs: dict[str, int], mode: int, read_ram: ReadRam,
             in_window: Callable[[int], bool]) -> tuple[Found, UnmappedAccess | None] | None:
    """Decode the instruction at `rip` (state `regs` is before it) and check it for a fault."""
    access = _decode_at(read_ram, mode, rip)
    if access is None:
        return None
    found = Found(rip, access, dict(regs, rip=rip))
    return found, fault_of(found, mode, read_ram, in_window)


def _undo_guesses(access: Access, post: dict[str, int], start: int, mode: int) -> Iterable[dict[str, int]]:
    """Pre-states that `access` (at `start`) may have left as `post`: its register effects undone.

    Only string stores and stack operations change registers other than RIP without reading a
    device first (a device read would have exited with the state before the instruction); wrong
    guesses are harmless, `identify_write` verifies each by emulating it.
    """
    pre = dict(post, rip=start)
    yield pre
    if access.kind is AccessKind.STRING and access.op in (Op.STOS, Op.MOVS):
        asz = access.mem.addr_size
        amask = (1 << (8 * asz)) - 1
        step = -access.size if post.get("rflags", 0) & DF else access.size

        def back(name: str, delta: int) -> int:
            v = post.get(name, 0)
            return (v & ~amask & _MASK64) | ((v - delta) & amask) if asz < 8 else (v - delta) & _MASK64

        guess = dict(pre, rdi=back("rdi", step))
        if access.op is Op.MOVS:
            guess["rsi"] = back("rsi", step)
        if access.rep:
            guess["rcx"] = back("rcx", -1)
        yield guess
    elif access.op in (Op.PUSH, Op.POP):
        sp_size = 8 if mode == 64 else 4
        for size in {access.size, sp_size}:
            delta = size if access.op is Op.PUSH else -size
            yield dict(pre, rsp=(post.get("rsp", 0) + delta) & (_MASK64 if mode == 64 else 0xFFFFFFFF))


def _replays(found: Found, mode: int, read_ram: ReadRam, post: dict[str, int], gpa: int,
             compare: tuple[str, ...]) -> bool:
    """True if emulating `found` gives exactly `post` and starts its device accesses with a write at `gpa`."""
    cpu = ProbeCpu(mode, found.regs, read_ram, lambda a: True, strict=False)
    try:
        out = execute(found.access, cpu, found.rip, mode, max_iterations=1)
    except (EmulationError, GuestFault, ValueError, KeyError):
        return False
    if not cpu.accesses or not cpu.accesses[0].write or cpu.accesses[0].gpa != gpa:
        return False
    next_rip = out.next_rip
    if found.access.rep and post.get("rip") == found.rip and next_rip == found.rip + found.access.length:
        # KVM leaves RIP on a REP string instruction after its last iteration too (emulate.c's
        # string_insn_completed is only about REPE/REPNE); the guest re-runs it with RCX = 0
        next_rip = found.rip
    after = dict(cpu.regs, rip=next_rip)
    m = _MASK64 if mode == 64 else 0xFFFFFFFF
    return all(after.get(n, 0) & m == post.get(n, 0) & m for n in compare)


def flags_before_iteration(found: Found, mode: int, read_ram: ReadRam,
                           answers: dict[tuple[int, int], int]) -> int | None:
    """RFLAGS as a REP CMPS/SCAS's previous iteration left them, or None if not applicable.

    KVM's emulator runs the iterations of a REP string instruction over MMIO in a restart loop:
    it writes the GPRs back to the vCPU each iteration but RFLAGS only when the instruction ends,
    so at the read exit of a later iteration KVM_GET_REGS shows RCX/RSI/RDI advanced and RFLAGS
    from before the instruction. The previous iteration is replayed here from the values its
    device reads returned (`answers`); None when one is missing.
    """
    a = found.access
    if not (a.rep and a.op in (Op.CMPS, Op.SCAS)):
        return None
    asz = a.mem.addr_size
    amask = (1 << (8 * asz)) - 1
    step = -a.size if found.regs.get("rflags", 0) & DF else a.size

    def back(name: str, delta: int) -> int:
        v = found.regs.get(name, 0)
        return (v & ~amask & _MASK64) | ((v - delta) & amask)

    prev = dict(found.regs, rdi=back("rdi", step), rcx=back("rcx", -1))
    if a.op is Op.CMPS:
        prev["rsi"] = back("rsi", step)
    cpu = ProbeCpu(mode, prev, read_ram, lambda g: True, strict=False, answers=answers)
    try:
        execute(a, cpu, found.rip, mode, max_iterations=1)
    except (EmulationError, GuestFault, ValueError, KeyError):
        return None
    if cpu.unanswered or not any(not acc.write for acc in cpu.accesses):
        return None
    return cpu.regs["rflags"]


def instruction_ends(code: bytes, addr: int, mode: int) -> dict[int, int]:
    """Linear sweep of `code` (loaded at `addr`): next-instruction address -> instruction start.

    The tie-breaker of `identify_write`: bytes before an instruction can decode as part of it
    (`4e 48 ab` is a valid STOSQ with two REX prefixes when 0x4e is the last immediate byte of
    the previous instruction), so the start the program's own instruction stream gives wins.
    The sweep stops at the first byte Capstone cannot decode (data after the code).
    """
    if mode not in (32, 64):
        return {}
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64 if mode == 64 else capstone.CS_MODE_32)
    return {start + size: start for start, size, _m, _o in cs.disasm_lite(code, addr)}


def identify_write(post: dict[str, int], gpa: int, mode: int, read_ram: ReadRam,
                   compare: tuple[str, ...], ends: dict[int, int] | None = None) -> Found | None:
    """The instruction whose write KVM reports at `gpa` with registers `post` (written back).

    Candidates: the REP STOS/MOVS at RIP (an unfinished iteration leaves RIP on it), then every
    instruction that ends exactly at RIP, longest first. Ties: the REP at RIP wins (a string store
    just before an identical REP store to the same address cannot be told apart from the state);
    then the instruction the linear sweep `ends` (instruction_ends) puts before RIP, then the
    longest (`48 89 1e` ends where its REX-less tail `89 1e` ends, both writing at the same
    address; a straddling access's first fragment does not show the size). None when no
    candidate replays exactly. `compare` names the registers to check (the mode's GPRs, RIP, RFLAGS).
    """
    mask = _MASK64 if mode == 64 else 0xFFFFFFFF
    rip = post["rip"] & mask
    here = _decode_at(read_ram, mode, rip)
    if here is not None and here.rep and here.op in (Op.STOS, Op.MOVS):
        for pre in _undo_guesses(here, post, rip, mode):
            cand = Found(rip, here, pre)
            if _replays(cand, mode, read_ram, post, gpa, compare):
                return cand
    starts = [(rip - k) & mask for k in range(MAX_INSN_LEN, 0, -1)]
    swept = (ends or {}).get(rip)
    if swept is not None and swept in starts:
        starts.remove(swept)
        starts.insert(0, swept)
    for start in starts:
        k = (rip - start) & mask
        access = _decode_at(read_ram, mode, start)
        if access is None or access.length != k:
            continue
        for pre in _undo_guesses(access, post, start, mode):
            cand = Found(start, access, pre)
            if _replays(cand, mode, read_ram, post, gpa, compare):
                return cand
    return None
