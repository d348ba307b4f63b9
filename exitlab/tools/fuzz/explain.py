"""Known deviations of the *third-party* oracles, as an allow-list of precise predicates.

A disagreement is "explained" only when one of these predicates matches it exactly — never a
whole class (a wrong flag elsewhere is still a bug). Each rule names where it is documented:
DESIGN.md ("Known deviations of unicorn 2.1.4") and docs/known-discrepancies.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import iced_x86 as iced

from emu.access import Access, MemOperand, Op
from emu.batchcpu import BatchCpu, default_ram_regions
from emu.cpu import DeviceAccess
from emu.decode import decode, effective_address
from emu.emulate import DF, PF, SF, STATUS, ZF, execute
from emu.errors import EmulationError, UnmappedAccess
from exitlab.tools.fuzz.case import Case

_PREFIXES = frozenset((0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67))


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a rule may look at: the case, the generic decode (if any) and the two sides."""

    case: Case
    oracle: str
    cls: str
    access: Access | None
    truth_regs: dict[str, int]
    truth_fault: str | None
    ours_regs: dict[str, int]
    error: str
    truth_accesses: tuple[DeviceAccess, ...] = ()
    ours_accesses: tuple[DeviceAccess, ...] = ()


def _cmpxchg32_rax(e: Evidence) -> bool:
    """unicorn 2.1.4: a successful 32-bit CMPXCHG zero-extends RAX (the SDM leaves the accumulator
    untouched; upstream unicorn issue #2332). Only RAX may differ, only in its upper half."""
    a = e.access
    if a is None or a.op is not Op.CMPXCHG or a.size != 4 or e.case.mode != 64 or e.cls != "register":
        return False
    if not e.truth_regs.get("rflags", 0) & ZF:
        return False
    diff = {k for k in e.truth_regs if k != "rip" and e.truth_regs[k] != e.ours_regs.get(k)}
    start = e.case.reg_dict().get("rax", 0)
    return diff == {"rax"} and e.ours_regs["rax"] == start and e.truth_regs["rax"] == start & 0xFFFFFFFF


def _unaligned_sse(e: Evidence) -> bool:
    """unicorn 2.1.4 does not raise #GP for a misaligned MOVDQA/MOVAPS/MOVAPD/MOVNT* operand;
    the generic path does, as the SDM says."""
    a = e.access
    return (
        a is not None
        and a.align16
        and e.truth_fault is None
        and e.cls == "faulted-but-should-run"
        and "misaligned 16-byte operand" in e.error
    )


def _unicorn_rex_r_group(e: Evidence) -> bool:
    """unicorn 2.1.4 raises #UD for C6 /0 and C7 /0 (MOV r/m, imm) when REX.R is set: it reads the
    opcode-extension field with REX.R folded in (/8). Hardware ignores REX.R there; Capstone,
    iced-x86 and the SDM decode a MOV. Matched only for that opcode, that REX bit and that fault."""
    a = e.access
    if a is None or a.op is not Op.MOV or a.imm is None or e.cls != "accepted-but-should-fault":
        return False
    if e.case.mode != 64 or e.truth_fault is None or "INSN_INVALID" not in e.truth_fault:
        return False
    raw = a.raw
    i, rex = 0, 0
    while i < len(raw) and (raw[i] in _PREFIXES or 0x40 <= raw[i] <= 0x4F):
        rex = raw[i] if 0x40 <= raw[i] <= 0x4F else 0  # only a REX right before the opcode counts
        i += 1
    return i < len(raw) and rex & 0x4 != 0 and raw[i] in (0xC6, 0xC7)


def _unicorn_misses_page_crossing_piece(e: Evidence) -> bool:
    """unicorn 2.1.4 does not report to the MMIO hooks the MMIO part of an access that crosses from
    a RAM page into the MMIO window (the split slow path bypasses them): the truth lacks exactly
    the pieces we sent to the device at the window's first byte, and nothing else differs."""
    if e.cls not in ("access-size", "address") or e.truth_fault is not None or e.access is None:
        return False
    base = e.case.mmio[0]
    ours = [x for x in e.ours_accesses if not (x.gpa == base and x.size < max(e.access.size, 1))]
    return len(ours) < len(e.ours_accesses) and tuple(ours) == tuple(e.truth_accesses)


def _unicorn_reports_whole_access_leaving_window(e: Evidence) -> bool:
    """The mirror image: an access that starts in the MMIO window and runs past its end into RAM
    reaches unicorn 2.1.4's hook whole; the generic path splits it at the page edge as KVM does
    (the device sees only the bytes inside the window, the rest goes to RAM). Each of our accesses
    must be the truth's, cut at the window's end, and nothing else may differ."""
    if e.cls != "access-size" or e.truth_fault is not None:
        return False
    if any(e.ours_regs.get(k) != v for k, v in e.truth_regs.items() if k != "rip"):
        return False
    if len(e.ours_accesses) != len(e.truth_accesses) or not e.truth_accesses:
        return False
    end = e.case.mmio[0] + e.case.mmio[1]
    # a MOVBE store's hook value is unicorn's garbage (_unicorn_movbe_hook_value): only its values
    movbe = e.access is not None and e.access.op is Op.MOVBE and e.access.mem_is_dest
    cut = False
    for ours, truth in zip(e.ours_accesses, e.truth_accesses, strict=True):
        if (ours.gpa, ours.write) != (truth.gpa, truth.write):
            return False
        if truth.gpa + truth.size > end:
            keep = end - truth.gpa
            low = (1 << (8 * keep)) - 1
            if ours.size != keep or (ours.write and not movbe and ours.value != truth.value & low):
                return False
            cut = True
        elif ours != truth and not (movbe and ours.write and (ours.gpa, ours.size) == (truth.gpa,
                                                                                      truth.size)):
            return False
    return cut


def _cut_at_window_end(accesses: list[DeviceAccess], end: int) -> list[DeviceAccess]:
    """The accesses as the generic path makes them where unicorn reports an access leaving the
    window whole (_unicorn_reports_whole_access_leaving_window): each cut at the window's end (the
    device's answer, or the value written, for the bytes inside it)."""
    out = []
    for t in accesses:
        if t.gpa < end < t.gpa + t.size:
            keep = end - t.gpa
            t = DeviceAccess(t.gpa, keep, t.write, t.value & ((1 << (8 * keep)) - 1))
        out.append(t)
    return out


def _halves_match(c: Case, a: Access, got: list[DeviceAccess], truth: list[DeviceAccess]) -> bool:
    """Whether `truth` is what unicorn reports of our pieces `got` of a 16-byte SSE access crossing
    from RAM into the window (_unicorn_sse_halves_into_window): its 8-byte halves wholly inside the
    window, with our bytes where written (a read's value is the device's answer to that half)."""
    if a.vex or a.op not in (Op.SSE_LOAD, Op.SSE_STORE) or a.size != 16 or not got:
        return False
    regs = c.reg_dict()
    ea = effective_address(a.mem, lambda n: regs.get(n, 0), c.rip + a.length, c.mode)
    base, size = c.mmio
    if not ea < base < ea + 16 <= base + size:
        return False
    write = a.op is Op.SSE_STORE
    if [(g.gpa, g.size, g.write) for g in got] != [(p, min(8, ea + 16 - p), write)
                                                  for p in range(base, ea + 16, 8)]:
        return False
    if [(t.gpa, t.size, t.write) for t in truth] != [(h, 8, write) for h in (ea, ea + 8) if h >= base]:
        return False
    byte = {g.gpa + i: (g.value >> (8 * i)) & 0xFF for g in got for i in range(g.size)}
    return not write or all(byte[t.gpa + i] == (t.value >> (8 * i)) & 0xFF for t in truth for i in range(8))


def _unicorn_sse_halves_into_window(e: Evidence) -> bool:
    """A 16-byte SSE access crossing from a RAM page into the window: unicorn 2.1.4 does it as two
    8-byte halves (QEMU gen_ldo/gen_sto) and misses the half that crosses (as in
    _unicorn_misses_page_crossing_piece), reporting only the half inside the window; the generic
    path sends the device every byte inside the window in 8-byte pieces from its first byte, as
    KVM does. Matched only when the truth is exactly those whole halves, ours exactly those pieces,
    every byte both report written agrees, and the registers are the same."""
    a = e.access
    if a is None or a.vex or a.op not in (Op.SSE_LOAD, Op.SSE_STORE) or a.size != 16:
        return False
    if e.cls not in ("access-size", "address") or e.truth_fault is not None:
        return False
    if any(e.ours_regs.get(k) != v for k, v in e.truth_regs.items() if k != "rip"):
        return False
    regs = e.case.reg_dict()
    ea = effective_address(a.mem, lambda n: regs.get(n, 0), e.case.rip + a.length, e.case.mode)
    base, size = e.case.mmio
    if not ea < base < ea + 16 <= base + size:
        return False
    write = a.op is Op.SSE_STORE
    halves = [(h, 8, write) for h in (ea, ea + 8) if h >= base]
    pieces = [(p, min(8, ea + 16 - p), write) for p in range(base, ea + 16, 8)]
    if [(t.gpa, t.size, t.write) for t in e.truth_accesses] != halves:
        return False
    if [(o.gpa, o.size, o.write) for o in e.ours_accesses] != pieces:
        return False
    if not write:
        return True
    ours = {o.gpa + i: (o.value >> (8 * i)) & 0xFF for o in e.ours_accesses for i in range(o.size)}
    return all(ours[t.gpa + i] == (t.value >> (8 * i)) & 0xFF
               for t in e.truth_accesses for i in range(t.size))


_NONCANONICAL = re.compile(r"non-canonical address (0x[0-9a-f]+)")


def _unicorn_noncanonical_wraps(e: Evidence) -> bool:
    """unicorn 2.1.4 does not raise #GP for a non-canonical linear address in 64-bit mode: it drops
    the high bits and accesses the 48-bit address. The generic path raises #GP (SDM vol. 3 6.15).
    Matched only when every access of the truth is our address cut to 48 bits."""
    m = _NONCANONICAL.search(e.error)
    if m is None or e.cls != "faulted-but-should-run" or e.case.mode != 64 or e.truth_fault is not None:
        return False
    low = int(m[1], 16) & ((1 << 48) - 1)
    if e.truth_accesses:
        return all(low <= t.gpa < low + 16 for t in e.truth_accesses)
    # the 48-bit address is RAM (`64 d7`, XLAT through FS: the byte came from the code page): our path
    # run on that address gives exactly the truth
    a = e.access
    if a is None or a.src_mem is not None or a.mem.base not in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi",
                                                                   "rbp", "rsp") or a.mem.addr_size != 8:
        return False
    # run it with the base register moved so that the same formula lands on the 48-bit address
    regs = e.case.reg_dict()
    old = regs.get(a.mem.base, 0)
    if e.truth_regs.get(a.mem.base) != old:
        return False
    moved = (old - (int(m[1], 16) - low)) & ((1 << 64) - 1)
    e2 = replace(e, case=e.case.with_regs({**dict(e.case.regs), a.mem.base: moved}),
                 truth_regs={**e.truth_regs, a.mem.base: moved})
    return _rerun_gives_truth(e2, a)


def _unicorn_66_beats_f3_on_0f7e(e: Evidence) -> bool:
    """With both 66 and F3 in front of 0F 7E, F3 selects the instruction (MOVQ xmm, m64, a load;
    iced-x86, Capstone and the generic path agree); unicorn 2.1.4 lets 66 win and executes
    MOVD r/m32, xmm, a store. Matched only for that opcode and exactly that pair of accesses."""
    a = e.access
    if a is None or e.cls not in ("address", "access-size") or e.truth_fault is not None:
        return False
    raw, i = a.raw, 0
    pfx = set()
    while i < len(raw) and (raw[i] in _PREFIXES or (e.case.mode == 64 and 0x40 <= raw[i] <= 0x4F)):
        pfx.add(raw[i])
        i += 1
    if not ({0x66, 0xF3} <= pfx and raw[i : i + 2] == b"\x0f\x7e"):
        return False
    if len(e.ours_accesses) != 1 or len(e.truth_accesses) != 1:
        return False
    ours, truth = e.ours_accesses[0], e.truth_accesses[0]
    return (
        ours.gpa == truth.gpa and not ours.write and ours.size == 8 and truth.write and truth.size in (4, 8)
    )


def _sse_prefixes(e: Evidence) -> tuple[list[int], bytes]:
    """(the legacy prefix bytes in order, the opcode bytes after them and REX) of a legacy SSE move."""
    raw, i, pfx = e.access.raw if e.access else b"", 0, []
    while i < len(raw) and (raw[i] in _PREFIXES or (e.case.mode == 64 and 0x40 <= raw[i] <= 0x4F)):
        if raw[i] in _PREFIXES:
            pfx.append(raw[i])
        i += 1
    return pfx, raw[i:i + 2]


def _unicorn_66_beats_f2_f3_on_0f_10_11(e: Evidence) -> bool:
    """With 66 and F2/F3 in front of 0F 10/11, F2/F3 select MOVSD/MOVSS (4 or 8 bytes; iced-x86,
    Capstone and the generic path agree); unicorn 2.1.4 (QEMU's gen_sse tests 66 first) executes
    MOVUPD, a 16-byte access at the same address -- or faults where those 16 bytes leave the window.
    Matched on that opcode, prefix mix and access shape only."""
    a = e.access
    if a is None or a.vex or a.op not in (Op.SSE_LOAD, Op.SSE_STORE) or a.size not in (4, 8):
        return False
    pfx, opcode = _sse_prefixes(e)
    if 0x66 not in pfx or not {0xF2, 0xF3} & set(pfx) or opcode not in (b"\x0f\x10", b"\x0f\x11"):
        return False
    if not e.truth_accesses:
        return False
    if e.cls == "access-size" and e.truth_fault is None:
        return (bool(e.ours_accesses) and e.ours_accesses[0].gpa == e.truth_accesses[0].gpa
                and sum(t.size for t in e.truth_accesses) == 16
                and sum(o.size for o in e.ours_accesses) == a.size)
    if e.cls != "accepted-but-should-fault" or "UNMAPPED" not in (e.truth_fault or ""):
        return False
    regs = e.case.reg_dict()
    ea = effective_address(a.mem, lambda n: regs.get(n, 0), e.case.rip + a.length, e.case.mode)
    return e.truth_accesses[0].gpa == ea


def _unicorn_f3_beats_f2_on_sse(e: Evidence) -> bool:
    """With both F2 and F3 in front of an SSE move the last one is the mandatory prefix (the generic
    path, as KVM's decoder for REP prefixes); unicorn 2.1.4 tests F3 first, so F3 F2 0F F0 (LDDQU)
    becomes the undefined F3 0F F0: #UD. Matched when the last of them is F2 and unicorn raised #UD."""
    a = e.access
    if a is None or a.vex or a.op not in (Op.SSE_LOAD, Op.SSE_STORE) or e.cls != "accepted-but-should-fault":
        return False
    pfx, _ = _sse_prefixes(e)
    last = [b for b in pfx if b in (0xF2, 0xF3)]
    return {0xF2, 0xF3} <= set(last) and last[-1] == 0xF2 and "INSN_INVALID" in (e.truth_fault or "")


def _unicorn_ud_test_alias(e: Evidence) -> bool:
    """unicorn 2.1.4 raises #UD for F6 /1 and F7 /1, the undocumented alias of TEST r/m, imm that
    hardware executes (and Capstone, iced-x86 and KVM's emulator decode as TEST)."""
    a = e.access
    if a is None or a.op is not Op.TEST or a.imm is None or e.cls != "accepted-but-should-fault":
        return False
    if e.truth_fault is None or "INSN_INVALID" not in e.truth_fault:
        return False
    raw = a.raw
    i = 0
    while i < len(raw) and (raw[i] in _PREFIXES or (e.case.mode == 64 and 0x40 <= raw[i] <= 0x4F)):
        i += 1
    return i + 1 < len(raw) and raw[i] in (0xF6, 0xF7) and (raw[i + 1] >> 3) & 7 == 1


def _unicorn_lock_on_mov(e: Evidence) -> bool:
    """unicorn 2.1.4 executes LOCK on instructions that do not allow it (e.g. LOCK MOV); the SDM
    says #UD, which the generic path raises."""
    a = e.access
    return (
        e.cls == "faulted-but-should-run"
        and e.truth_fault is None
        and "LOCK prefix not allowed" in e.error
        and (a is None or a.lock)
    )


def _unicorn_locked_rmw_rereads(e: Evidence) -> bool:
    """unicorn 2.1.4 runs a LOCK-prefixed read-modify-write on MMIO twice over: the first (atomic)
    attempt reads, gives up and the instruction is re-run exclusively, so the device sees the
    first read twice. Matched only when the truth is ours with that one read repeated."""
    a = e.access
    if a is None or not a.lock or e.cls not in ("address", "access-size") or e.truth_fault is not None:
        return False
    want, got = list(e.truth_accesses), list(e.ours_accesses)
    if len(want) == len(got) + 1 and bool(got) and not got[0].write and [got[0]] + got == want:
        return True
    # the same re-read of an access leaving the window, which unicorn reports whole (both rules)
    if len(want) != len(got) + 1 or len(want) < 2 or want[0] != want[1] or want[0].write:
        return False
    return _unicorn_reports_whole_access_leaving_window(replace(e, cls="access-size",
                                                                truth_accesses=tuple(want[1:])))


def _unicorn_lock_neg_flags(e: Evidence) -> bool:
    """unicorn 2.1.4 computes ZF/SF/PF of LOCK NEG wrongly (CF, AF and OF are right); only those
    three flags may differ, and nothing else."""
    a = e.access
    if a is None or not a.lock or a.op is not Op.NEG or e.cls != "flags" or e.truth_fault is not None:
        return False
    diff = (e.truth_regs.get("rflags", 0) ^ e.ours_regs.get("rflags", 0)) & (STATUS | DF)
    return diff != 0 and diff & ~(ZF | SF | PF) == 0


def _opcode(e: Evidence) -> tuple[set[int], bytes]:
    """(legacy prefixes + REX, the bytes from the opcode on) of the decoded instruction."""
    raw = e.access.raw if e.access is not None else e.case.code
    i, pfx = 0, set()
    while i < len(raw) and (raw[i] in _PREFIXES or (e.case.mode == 64 and 0x40 <= raw[i] <= 0x4F)):
        pfx.add(raw[i])
        i += 1
    return pfx, raw[i:]


def _unicorn_cmps_order(e: Evidence) -> bool:
    """unicorn 2.1.4 (QEMU gen_cmps) reads ES:[rdi] before DS:[rsi]; the SDM's operand order and
    KVM's emulator read [rsi] first, as the generic path does. Matched only when the truth is ours
    with each iteration's two reads swapped."""
    a = e.access
    if a is None or a.op is not Op.CMPS or e.cls not in ("address", "access-size") or e.truth_fault:
        return False
    ours, truth = list(e.ours_accesses), list(e.truth_accesses)
    if len(ours) == len(truth) and len(ours) % 2 == 0:
        swapped = [truth[i + 1 - 2 * (i % 2)] for i in range(len(truth))]
        if swapped == ours:
            return True
    # an iteration with an operand in RAM (unreported), or one leaving the window (reported whole
    # by unicorn: _unicorn_reports_whole_access_leaving_window): each iteration's reads reordered
    if any(e.ours_regs.get(k) != v for k, v in e.truth_regs.items() if k not in ("rip", "rflags")):
        return False
    start = e.case.reg_dict().get("rcx", 0)
    iterations = _iterations(a, start, e.ours_regs.get("rcx", start))
    order = _cmps_rdi_first(e.case, a, ours, iterations)
    end = e.case.mmio[0] + e.case.mmio[1]
    return order is not None and order != ours and order in (truth, _cut_at_window_end(truth, end))


def _iterations(a: Access, rcx_start: int, rcx_end: int) -> int:
    """How many elements a string instruction did: one without REP, else RCX's decrease."""
    if not a.rep:
        return 1
    m = (1 << (8 * a.mem.addr_size)) - 1
    return ((rcx_start & m) - (rcx_end & m)) & m


def _cmps_rdi_first(c: Case, a: Access, ours: list[DeviceAccess],
                    iterations: int) -> list[DeviceAccess] | None:
    """Our CMPS device accesses in unicorn's order: per element, ES:[rdi]'s then [rsi]'s, without the
    window-start pieces unicorn never reports (_unicorn_misses_page_crossing_piece). Each access is
    matched to the element whose operand it starts (None when one matches none)."""
    if a.src_mem is None or iterations > 4096:
        return None
    step = -a.size if c.reg_dict().get("rflags", 0) & DF else a.size
    regs = c.reg_dict()
    nxt = c.rip + a.length

    def at(mem: MemOperand, k: int) -> int:
        moved = replace(mem, disp=mem.disp + k * step)
        return effective_address(moved, lambda n: regs.get(n, 0), nxt, c.mode)

    # Each (element, operand) takes one access, [rsi] before ES:[rdi] as we read them: with a
    # distance of one element between RSI and RDI the same address is ES:[rdi] of one element and
    # [rsi] of the next (`f2 a7`, rsi 0x9ff9, rdi 0x9ffd; fuzz --family string --seed 77).
    tagged: list[tuple[int, int, int, DeviceAccess]] = []
    used: set[tuple[int, int]] = set()
    k = 0
    for i, acc in enumerate(ours):
        if acc.gpa == c.mmio[0] and acc.size < a.size:
            continue  # the MMIO piece of an element crossing into the window: unicorn misses it
        while k < iterations:
            if acc.gpa == at(a.src_mem, k) and (k, 1) not in used:
                slot = (k, 1)
                break
            if acc.gpa == at(a.mem, k) and (k, 0) not in used:
                slot = (k, 0)
                break
            k += 1
        else:
            return None
        used.add(slot)
        tagged.append((*slot, i, acc))
    return [acc for *_, acc in sorted(tagged)]


def _unicorn_movbe_hook_value(e: Evidence) -> bool:
    """unicorn 2.1.4's write hook reports a MOVBE store's value unswapped (garbage in 32-bit mode)
    while the device callback gets the swapped bytes. Only the values of writes may differ."""
    a = e.access
    if a is None or a.op is not Op.MOVBE or not a.mem_is_dest or e.cls != "value" or e.truth_fault:
        return False
    pairs = list(zip(e.ours_accesses, e.truth_accesses, strict=False))
    return len(e.ours_accesses) == len(e.truth_accesses) and all(
        (o.gpa, o.size, o.write) == (t.gpa, t.size, t.write) and o.write for o, t in pairs)


def _unicorn_ret_imm16_signed(e: Evidence) -> bool:
    """unicorn 2.1.4 sign-extends RET imm16 (QEMU x86_ldsw_code); the SDM adds it zero-extended.
    Only RSP may differ, by exactly 0x10000."""
    a = e.access
    if a is None or a.op is not Op.RET or a.imm is None or a.imm < 0x8000 or e.cls != "register":
        return False
    diff = {k for k in e.truth_regs if k not in ("rip", "rflags") and e.truth_regs[k] != e.ours_regs.get(k)}
    m = (1 << e.case.mode) - 1
    return diff == {"rsp"} and (e.ours_regs["rsp"] - e.truth_regs["rsp"]) & m == 0x10000


def _unicorn_writes_through_cs(e: Evidence) -> bool:
    """32-bit code: a write through a CS override is #GP (code segments are not writable; the
    platform's flat CS is execute/read); unicorn 2.1.4 performs the write."""
    return (e.cls == "faulted-but-should-run" and e.case.mode == 32 and e.truth_fault is None
            and "CS override" in e.error)


def _unicorn_movsxd_r16_reads_dword(e: Evidence) -> bool:
    """66 63 /r is MOVSXD r16, r/m16 (Intel SDM): a 2-byte read; unicorn 2.1.4 reads 4 bytes and keeps
    the low 2 (the register result is the same). Matched only on that access-size difference."""
    a = e.access
    if a is None or a.op is not Op.MOVSX or a.size != 2 or e.cls != "access-size" or e.truth_fault:
        return False
    if len(e.ours_accesses) != 1 or len(e.truth_accesses) != 1:
        return False
    o, t = e.ours_accesses[0], e.truth_accesses[0]
    return _opcode(e)[1][:1] == b"\x63" and o.gpa == t.gpa and o.size == 2 and t.size == 4


def _unicorn_movsxd_r16_dword_past_window(e: Evidence) -> bool:
    """The same 4-byte read of MOVSXD r16 running off the end of the window: unicorn faults on bytes
    the SDM's 2-byte read never touches (found by `exitlab fuzz --family misc`)."""
    a = e.access
    if a is None or a.op is not Op.MOVSX or a.size != 2 or e.cls != "accepted-but-should-fault":
        return False
    if "READ_UNMAPPED" not in (e.truth_fault or "") or _opcode(e)[1][:1] != b"\x63":
        return False
    regs = e.case.reg_dict()
    ea = effective_address(a.mem, lambda n: regs.get(n, 0), e.case.rip + a.length, e.case.mode)
    base, size = e.case.mmio
    return base <= ea and ea + 2 <= base + size < ea + 4


def _unicorn_has_no_avx_movdiri(e: Evidence) -> bool:
    """unicorn 2.1.4 (QEMU 5 TCG) has no AVX and no MOVDIRI/MOVDIR64B: #UD where the generic path
    emulates the SDM (a KVM host with those features executes them)."""
    a = e.access
    if a is None or e.cls != "accepted-but-should-fault" or "INSN_INVALID" not in (e.truth_fault or ""):
        return False
    return a.vex or a.op is Op.MOVDIR64B or _opcode(e)[1][:3] == b"\x0f\x38\xf9"


def _unicorn_branch_no_canonical_check(e: Evidence) -> bool:
    """A near branch to a non-canonical target is #GP on the branch (SDM); unicorn 2.1.4 jumps and
    faults fetching there. Matched on our message and unicorn's fetch fault."""
    return ("non-canonical branch target" in e.error and e.truth_fault is not None
            and "FETCH_UNMAPPED" in e.truth_fault)


def _oracle_fetch_after_branch(e: Evidence) -> bool:
    """The one-step oracle runs a branch, then fails to fetch at its unmapped target: the branch
    itself completed. Matched when only that fetch fault separates us (our registers are the truth's)."""
    a = e.access
    if a is None or a.op not in (Op.CALL, Op.JMP, Op.RET) or e.cls != "accepted-but-should-fault":
        return False
    if not e.truth_fault:
        return False
    # the fast runner's C truth (fuzzcore.c) sometimes reports that failed fetch as exception 1 (#DB)
    # after a branch to 0; with TF clear no #DB can be the instruction's (seen twice in 10^5 cases)
    no_tf = not e.case.reg_dict().get("rflags", 0) & 0x100
    if "FETCH_UNMAPPED" not in e.truth_fault and not (e.truth_fault == "cpu exception 1" and no_tf):
        return False
    diff = {k for k, v in e.truth_regs.items() if k not in ("rip", "rflags") and e.ours_regs.get(k) != v}
    if diff == {"rsp"} and a.op is Op.RET and a.imm is not None and a.imm >= 0x8000:
        # with unicorn's sign-extended RET imm16 too (_unicorn_ret_imm16_signed): RSP off by 0x10000
        m = (1 << e.case.mode) - 1
        return (e.ours_regs["rsp"] - e.truth_regs["rsp"]) & m == 0x10000
    return not diff


def _unicorn_cmpxchg8b_zero_extends(e: Evidence) -> bool:
    """unicorn 2.1.4 rewrites EAX/EDX after a successful CMPXCHG8B, zero-extending RAX/RDX in 64-bit
    mode; the SDM leaves them untouched. Only the upper halves of RAX/RDX may differ."""
    a = e.access
    if a is None or a.op is not Op.CMPXCHG8B or a.size != 8 or e.case.mode != 64 or e.cls != "register":
        return False
    diff = {k for k in e.truth_regs if k not in ("rip",) and e.truth_regs[k] != e.ours_regs.get(k)}
    return bool(diff) and diff <= {"rax", "rdx"} and all(
        e.ours_regs[k] & 0xFFFFFFFF == e.truth_regs[k] and e.truth_regs[k] >> 32 == 0 for k in diff)


def _unicorn_shld_riprel(e: Evidence) -> bool:
    """unicorn 2.1.4: SHLD/SHRD r/m, r, imm8 with a RIP-relative operand leave the imm8 out of the
    RIP-relative base, so every access is one byte lower (or faults below the window)."""
    a = e.access
    if a is None or a.op not in (Op.SHLD, Op.SHRD) or a.imm is None or not a.mem.rip_relative:
        return False
    if e.cls == "accepted-but-should-fault":
        return e.truth_fault is not None and "UNMAPPED" in e.truth_fault
    if e.cls not in ("address", "access-size", "value") or e.truth_fault is not None:
        return False
    return len(e.ours_accesses) == len(e.truth_accesses) > 0 and all(
        t.gpa + 1 == o.gpa for o, t in zip(e.ours_accesses, e.truth_accesses, strict=True))


def _rerun_gives_truth(e: Evidence, access: Access, swap_pairs: bool = False) -> bool:
    """Run the generic path's execute on the case with `access` instead of the decoded one; True when
    that gives exactly the truth: the device accesses (each pair swapped for CMPS's read order when
    `swap_pairs`), the GPRs, the status flags and DF, and the fault (an unmapped stop where Unicorn
    stopped on unmapped memory, with the same accesses before it)."""
    c = e.case
    cpu = BatchCpu(c.mode, {**c.reg_dict(), "rip": c.rip}, c.mmio, c.read_value,
                   default_ram_regions(c.rip, c.mmio), c.xmm_dict())
    cpu.write_mem(c.rip, c.code)  # the instruction's own bytes are RAM too (unicorn's world)
    try:
        got, faulted = list(execute(access, cpu, c.rip, c.mode).accesses), False
    except UnmappedAccess as exc:
        got, faulted = [a for a in exc.accesses if isinstance(a, DeviceAccess)], True
    except EmulationError:
        return False
    if faulted != (e.truth_fault is not None and "UNMAPPED" in e.truth_fault):
        return False
    if e.truth_fault is not None and not faulted:
        return False
    truth = list(e.truth_accesses)
    end = c.mmio[0] + c.mmio[1]
    if faulted and len(truth) == len(got) + 1 and truth[-1].gpa + truth[-1].size > end:
        truth = truth[:-1]  # unicorn-reports-whole-access-leaving-window: the faulting element's report
    cut = truth if faulted else _cut_at_window_end(truth, end)  # ours split at the window's end
    if swap_pairs:  # CMPS: unicorn reads ES:[rdi] first (_unicorn_cmps_order)
        m = (1 << c.mode) - 1
        iterations = _iterations(access, c.reg_dict().get("rcx", 0) & m, cpu.get("rcx") & m)
        got = _cmps_rdi_first(c, access, got, iterations) or got
    # the window-start piece of an element crossing from RAM into the window is not reported by
    # unicorn (_unicorn_misses_page_crossing_piece): `67 f2 f3 af`, di 0x9ff9 (fuzz --family string)
    unpieced = [x for x in got if not (x.gpa == c.mmio[0] and x.size < max(access.size, 1))]
    if got not in (truth, cut) and unpieced not in (truth, cut) and not _halves_match(c, access, got, truth):
        return False
    m = (1 << c.mode) - 1
    return all(cpu.get(k) & (m if k != "rflags" else STATUS | DF) == v & (m if k != "rflags" else STATUS | DF)
               for k, v in e.truth_regs.items() if k != "rip")


def _unicorn_popcnt_66_beats_rex_w(e: Evidence) -> bool:
    """unicorn 2.1.4 (QEMU 5 `case 0x1b8`) sizes POPCNT 16-bit whenever 66 is present, even with
    REX.W; the SDM (and Capstone, iced-x86, KVM) give REX.W precedence: a 64-bit POPCNT. Matched only
    when our path run as the 16-bit form gives exactly the truth."""
    a = e.access
    if a is None or a.op is not Op.POPCNT or a.size != 8 or 0x66 not in _opcode(e)[0] or a.reg is None:
        return False
    return _rerun_gives_truth(e, replace(a, size=2, reg=_REG16.get(a.reg, a.reg), reg_size=2))


_REG16 = {f"r{n}": f"r{n}w" for n in range(8, 16)} | {
    "rax": "ax", "rcx": "cx", "rdx": "dx", "rbx": "bx", "rsp": "sp", "rbp": "bp", "rsi": "si", "rdi": "di"}
_SCAN_AS_F3 = {Op.BSF: Op.TZCNT, Op.BSR: Op.LZCNT}


def _unicorn_f3_wins_on_bitscan(e: Evidence) -> bool:
    """F3 0F B8/BC/BD with an F2 prefix too (the SDM leaves the mix undefined): the generic path,
    Capstone and KVM's decoder take the last of F2/F3; unicorn 2.1.4 makes any F3 an LZCNT/TZCNT
    (so F3 F2 0F BD is LZCNT there, BSR here) and any F2 a #UD on POPCNT. Matched only for those
    opcodes with both prefixes, and only when the truth is the #UD or our path run as the F3 form."""
    a = e.access
    pfx, rest = _opcode(e)
    if a is None or not {0xF2, 0xF3} <= pfx or rest[:2] not in (b"\x0f\xb8", b"\x0f\xbc", b"\x0f\xbd"):
        return False
    if rest[:2] == b"\x0f\xb8":
        return (a.op is Op.POPCNT and e.cls == "accepted-but-should-fault" and e.truth_fault is not None
                and "INSN_INVALID" in e.truth_fault)
    if a.op not in _SCAN_AS_F3:
        return False
    return _rerun_gives_truth(e, replace(a, op=_SCAN_AS_F3[a.op]))


def _unicorn_f2_wins_over_f3(e: Evidence) -> bool:
    """CMPS/SCAS with both F2 and F3, F3 last: the generic path takes the last (REPE, as KVM's
    decoder does; the SDM calls the mix undefined); unicorn 2.1.4 lets F2 win (REPNE). Matched only
    when re-running our path as REPNE gives exactly the truth (up to CMPS's read order, above)."""
    a = e.access
    if a is None or a.op not in (Op.CMPS, Op.SCAS) or a.repne:
        return False
    if not {0xF2, 0xF3} <= _opcode(e)[0]:
        return False
    # (a REPNE that runs on into unmapped memory gives the same fault there)
    return _rerun_gives_truth(e, replace(a, repne=True), swap_pairs=a.op is Op.CMPS)


def _iced_invalid(code: bytes, mode: int) -> bool:
    """iced-x86 (the project's independent decoder) calls the first instruction of `code` invalid."""
    return iced.Decoder(mode, code).decode().code == iced.Code.INVALID


def _unicorn_sse_prefix_order(e: Evidence) -> bool:
    """With several of 66/F2/F3 in front of a legacy SSE move, the SDM (iced-x86, Capstone, the
    generic path) takes the last F2/F3 as the mandatory prefix, else 66; unicorn 2.1.4 (QEMU 5
    gen_sse: `if PREFIX_DATA b1 = 1; else if PREFIX_REPZ b1 = 2; else if PREFIX_REPNZ b1 = 3`)
    takes 66 if present, else F3, else F2, whatever the order. Matched only when the same bytes
    with the prefixes rewritten so that the SDM picks unicorn's prefix (every F2/F3 replaced by it,
    or by 66) give exactly the truth through our path -- or are invalid for iced-x86 where unicorn
    raised #UD (`66 f2 0f f0`: 66 0F F0 is undefined; `f3 f2 0f 11`: MOVSS, 4 bytes)."""
    a = e.access
    if a is None or a.vex or a.op not in (Op.SSE_LOAD, Op.SSE_STORE):
        return False
    code, mode = a.raw, e.case.mode  # the bytes as fetched (a case's bytes may stop short of the end)
    i, pfx = 0, []
    while i < len(code) and (code[i] in _PREFIXES or (mode == 64 and 0x40 <= code[i] <= 0x4F)):
        pfx.append(code[i])
        i += 1
    reps = [b for b in pfx if b in (0xF2, 0xF3)]
    sdm = reps[-1] if reps else (0x66 if 0x66 in pfx else 0)
    qemu = 0x66 if 0x66 in pfx else (0xF3 if 0xF3 in pfx else (0xF2 if 0xF2 in pfx else 0))
    if sdm == qemu:
        return False
    new = bytes(qemu if b in (0xF2, 0xF3) else b for b in code[:i]) + code[i:]
    try:
        other = decode(new, mode, e.case.rip)
    except EmulationError:
        return (e.cls == "accepted-but-should-fault" and "INSN_INVALID" in (e.truth_fault or "")
                and _iced_invalid(new, mode))
    if mode == 32 and other.mem_is_dest and other.mem.segment == "cs":
        # unicorn writes through a CS override too (_unicorn_writes_through_cs); the flat CS base is 0
        other = replace(other, mem=replace(other.mem, segment="ds"))
    return other.length == a.length and _rerun_gives_truth(e, other)


def _fetched(c: Case) -> bytes:
    """The bytes the paths fetch at RIP: the case's, then the zeroed RAM after them."""
    return (c.code + bytes(15))[:15]


def _unicorn_ignores_prefix_on_movnti(e: Evidence) -> bool:
    """MOVNTI (NP 0F C3) with a 66/F2/F3 prefix is #UD (SDM "NP"; iced-x86: invalid), as the generic
    path says; unicorn 2.1.4 (QEMU 5 `case 0x1c3` checks no prefix) executes the MOVNTI. Matched only
    when iced-x86 rejects the bytes and the same bytes without those prefixes (and without a LOCK)
    give exactly the truth through our path."""
    if e.cls != "faulted-but-should-run" or e.truth_fault is not None or "66/F2/F3 prefix" not in e.error:
        return False
    code, mode = _fetched(e.case), e.case.mode
    i = 0
    while i < len(code) and (code[i] in _PREFIXES or (mode == 64 and 0x40 <= code[i] <= 0x4F)):
        i += 1
    if code[i:i + 2] != b"\x0f\xc3" or not _iced_invalid(code, mode):
        return False
    # a LOCK too is dropped: unicorn ignores it on MOVNTI as on every non-lockable form
    # (unicorn-executes-lock-on-non-lockable); `f0 f3 4b 0f c3 2a` combines both (fuzz --seed 4)
    # and in 32-bit code a CS override: unicorn writes through it (unicorn-writes-through-cs-override),
    # the platform's CS, DS and SS are flat at base 0 (`66 2e 67 0f c3 00`, fuzz --seed 16)
    drop = (0x66, 0xF2, 0xF3, 0xF0) + ((0x2E,) if mode == 32 else ())
    kept = bytes(b for b in code[:i] if b not in drop)
    dropped = i - len(kept)
    try:
        other = decode(kept + code[i:], mode, e.case.rip + dropped)
    except EmulationError:
        return False
    return _rerun_gives_truth(e, replace(other, length=other.length + dropped))


RULES: tuple[tuple[str, Callable[[Evidence], bool]], ...] = (
    ("unicorn-f2-wins-over-f3-on-cmps-scas", _unicorn_f2_wins_over_f3),
    ("unicorn-popcnt-66-beats-rex-w", _unicorn_popcnt_66_beats_rex_w),
    ("unicorn-f3-wins-on-popcnt-lzcnt-tzcnt", _unicorn_f3_wins_on_bitscan),
    ("unicorn-shld-shrd-riprel-misses-imm8", _unicorn_shld_riprel),
    ("unicorn-cmps-reads-rdi-first", _unicorn_cmps_order),
    ("unicorn-movbe-hook-value", _unicorn_movbe_hook_value),
    ("unicorn-ret-imm16-sign-extended", _unicorn_ret_imm16_signed),
    ("unicorn-66-beats-f2-f3-on-0f-10-11", _unicorn_66_beats_f2_f3_on_0f_10_11),
    ("unicorn-f3-beats-f2-on-sse", _unicorn_f3_beats_f2_on_sse),
    ("unicorn-writes-through-cs-override", _unicorn_writes_through_cs),
    ("unicorn-movsxd-r16-reads-dword", _unicorn_movsxd_r16_reads_dword),
    ("unicorn-movsxd-r16-reads-dword", _unicorn_movsxd_r16_dword_past_window),
    ("unicorn-has-no-avx-movdiri", _unicorn_has_no_avx_movdiri),
    ("unicorn-no-gp-on-non-canonical-branch", _unicorn_branch_no_canonical_check),
    ("oracle-fetch-fault-after-branch", _oracle_fetch_after_branch),
    ("unicorn-cmpxchg8b-zero-extends-rax-rdx", _unicorn_cmpxchg8b_zero_extends),
    ("unicorn-cmpxchg32-zero-extends-rax", _cmpxchg32_rax),
    ("unicorn-no-gp-on-misaligned-sse", _unaligned_sse),
    ("unicorn-ud-on-rex-r-mov-imm", _unicorn_rex_r_group),
    ("unicorn-ud-on-test-alias-f6-f7-r1", _unicorn_ud_test_alias),
    ("unicorn-executes-lock-on-non-lockable", _unicorn_lock_on_mov),
    ("unicorn-locked-rmw-reads-twice", _unicorn_locked_rmw_rereads),
    ("unicorn-lock-neg-zf-sf-pf", _unicorn_lock_neg_flags),
    ("unicorn-misses-mmio-piece-of-page-crossing-access", _unicorn_misses_page_crossing_piece),
    ("unicorn-reports-whole-access-leaving-window", _unicorn_reports_whole_access_leaving_window),
    ("unicorn-noncanonical-address-wraps", _unicorn_noncanonical_wraps),
    ("unicorn-66-beats-f3-on-0f-7e", _unicorn_66_beats_f3_on_0f7e),
    ("unicorn-misses-mmio-piece-of-page-crossing-access", _unicorn_sse_halves_into_window),
    ("unicorn-sse-prefix-66-then-f3-then-f2", _unicorn_sse_prefix_order),
    ("unicorn-ignores-66-f2-f3-on-movnti", _unicorn_ignores_prefix_on_movnti),
)


def explain(e: Evidence) -> str | None:
    """The name of the rule that explains this disagreement, or None (a bug until shown otherwise)."""
    if e.oracle == "c-subset-decoder":
        return "unicorn-ud-on-rex-r-mov-imm" if _unicorn_rex_r_group(e) else None
    if e.oracle not in ("generic", "c-capstone"):  # c-capstone does the generic path's forms exactly
        return None
    for name, rule in RULES:
        if rule(e):
            return name
    return None
