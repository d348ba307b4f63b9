"""Check a guest against the pv contract: dynamically (run it) and statically (disassemble it).

Dynamic: the guest runs exit-style through `ClassifyingPath`, which wraps the fast path. Every exit
inside a pv window is either *conforming* (the fast path took it) or a *violation*: the generic path
still handles it, so the run goes on, and the validator records RIP, bytes, disassembly and why.
"Conforming" is defined by the fast path itself, so the validator can never pass an instruction the
host would not fast-path (or the reverse).

Static: a linear sweep over the guest's code with Capstone lists every contract site (`66 89 02`)
and every near miss (a 16-bit store from AX, any store through RDX, the agreed bytes in 16-bit
code). A linear sweep cannot tell code from data, so these findings are heuristic and only fail
the run under `--strict`.

`explain` is the one place that turns instruction bytes into reasons; both parts use it.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import capstone
from capstone import x86 as cx

from emu.board import Board, default_board
from emu.cpu import Cpu, Outcome
from emu.elf import CodeUnit, ElfBinary, Location, Relocation
from emu.errors import EmulationError, ExitlabError
from emu.exits import MAX_INSN_LEN, ExitKind, ExitRecord
from emu.image import GuestImage
from emu.machine import Machine, MmioStyle, Stop
from fastpath.contract import CONTRACT_V1, LEGACY_PREFIX_BYTES, Contract
from fastpath.fast import FastPath

_CS_MODE = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
_ADDRESS_REGISTERS = ("rdx", "edx")  # EDX is RDX under 0x67 (flagged as a prefix, not a register)
_STORE_OPCODE = 0x89                  # mov r/m16/32/64, r16/32/64
_CONTRACT_MODRM = 0x02                # mod=00 reg=000 (AX) rm=010 ([rDX])
_MOD_RM_BITS = 0xC7                    # ModRM without its reg field (the data register is checked apart)


class Reason(enum.Enum):
    """Why an access in a pv window is not the contract (the issue's taxonomy, plus two)."""

    WRONG_OPCODE = "wrong opcode"
    WRONG_REGISTER = "wrong register"
    WRONG_ADDRESSING = "wrong addressing form"  # [rdx] spelled with a displacement or SIB
    WRONG_WIDTH = "wrong width"
    EXTRA_PREFIX = "extra prefix"
    READ = "read of a write-only window"
    WRONG_MODE = "wrong mode"
    OUTSIDE_WINDOW = "access leaves the pv window"  # right bytes, but straddling the window's end


@dataclass(frozen=True, slots=True)
class Finding:
    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Explained:
    """One instruction checked against the contract; no findings means it is the agreed one."""

    rip: int
    insn: bytes
    disasm: str
    findings: tuple[Finding, ...]

    @property
    def conforming(self) -> bool:
        return not self.findings

    @property
    def reason(self) -> str:
        return "; ".join(str(f) for f in self.findings) if self.findings else "conforming"


class Disassembler:
    """Capstone handles per mode, created on first use (owned by a caller, never module state)."""

    _CHUNK = 4096  # bytes decoded per Capstone call by `walk`

    def __init__(self) -> None:
        self._cs: dict[int, capstone.Cs] = {}
        self._light: dict[int, capstone.Cs] = {}

    def one(self, code: bytes, mode: int, rip: int) -> Any:
        """The first instruction of `code` at `rip`, or None if it does not decode."""
        cs = self._cs.get(mode)
        if cs is None:
            cs = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODE[mode])
            cs.detail = True
            self._cs[mode] = cs
        return next(cs.disasm(code, rip, 1), None)

    def walk(self, code: bytes, mode: int, addr: int) -> Iterator[tuple[int, Any]]:
        """Linear sweep of `code` (at `addr`) without operand detail: (offset, insn) pairs, and
        (offset, None) for each byte that starts no valid instruction. Capstone decodes a chunk per
        call, and an instruction cut by a chunk's end is decoded again from the next chunk, so the
        result is the same as decoding one instruction at a time, only faster."""
        cs = self._light.get(mode)
        if cs is None:
            cs = self._light[mode] = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODE[mode])
        off, n = 0, len(code)
        while off < n:
            end = min(n, off + self._CHUNK)
            for insn in cs.disasm(code[off:end], addr + off):
                yield off, insn
                off += insn.size
            if off >= n or (end < n and end - off < MAX_INSN_LEN):
                continue
            yield off, None
            off += 1


def split_prefixes(code: bytes, mode: int) -> tuple[bytes, int]:
    """Leading prefix bytes (legacy, and REX in 64-bit mode) and the offset of the opcode.

    Done on raw bytes rather than from Capstone's detail because Capstone folds repeated prefixes
    and hides some (`f3 66 89 02` prints as a plain `mov`), and the contract is about bytes.
    """
    i = 0
    while i < min(len(code), MAX_INSN_LEN - 1) and (
        code[i] in LEGACY_PREFIX_BYTES or (mode == 64 and 0x40 <= code[i] <= 0x4F)
    ):
        i += 1
    return code[:i], i


def _prefix_finding(prefixes: bytes, contract: Contract) -> Finding | None:
    names: list[str] = []
    seen_66 = False
    for b in prefixes:
        if b == 0x66 and not seen_66:
            seen_66 = True
            continue
        if 0x40 <= b <= 0x4F:
            bits = "".join(c for c, m in zip("WRXB", (8, 4, 2, 1), strict=True) if b & m)
            names.append(f"REX {b:02x}" + (f" ({bits})" if bits else " (empty)"))
        else:
            p = contract.prefix(b)
            names.append(f"{p.name if p else 'prefix'} ({b:02x})")
    if not names:
        return None
    return Finding(Reason.EXTRA_PREFIX, ", ".join(names) + "; the contract allows only one 66")


def _text(insn: Any) -> str:
    return f"{insn.mnemonic} {insn.op_str}".strip()


def explain(
    code: bytes,
    mode: int,
    write: bool = True,
    rip: int = 0,
    contract: Contract = CONTRACT_V1,
    dis: Disassembler | None = None,
) -> Explained:
    """Check the instruction at the start of `code` against the contract: why it is not the agreed
    notify, or no findings if it is. `write` says whether the access was a write."""
    dis = dis or Disassembler()
    insn = dis.one(code, mode, rip)
    raw = bytes(insn.bytes) if insn is not None else code[: contract.length]
    disasm = _text(insn) if insn is not None else "(undecodable)"
    findings: list[Finding] = []
    if not contract.applies_to(mode):
        modes = " and ".join(str(m) for m in sorted(contract.modes))
        detail = f"{mode}-bit code; the contract applies to {modes}-bit code only"
        why = contract.excluded_why(mode)
        if raw[: contract.length] == contract.encoding and why:
            detail += f" ({why})"
        findings.append(Finding(Reason.WRONG_MODE, detail))
        if not write:
            findings.append(Finding(Reason.READ, f"`{disasm}` reads the window"))
        return Explained(rip, raw, disasm, tuple(findings))
    if not write:
        return Explained(rip, raw, disasm, (Finding(Reason.READ, f"`{disasm}` reads the window"),))
    if insn is None:
        undecodable = Finding(Reason.WRONG_OPCODE, f"bytes do not decode in {mode}-bit mode")
        return Explained(rip, raw, disasm, (undecodable,))
    prefixes, at = split_prefixes(raw, mode)
    pf = _prefix_finding(prefixes, contract)
    if pf is not None:
        findings.append(pf)
    opcode = raw[at] if at < len(raw) else -1
    if opcode != _STORE_OPCODE:
        op = raw[at : at + (2 if opcode == 0x0F else 1)].hex(" ")
        detail = f"opcode {op} (`{insn.mnemonic}`), not 89 (mov r/m16, r16)"
        findings.append(Finding(Reason.WRONG_OPCODE, detail))
    mem = next((op for op in insn.operands if op.type == cx.X86_OP_MEM), None)
    regs = [insn.reg_name(op.reg) for op in insn.operands if op.type == cx.X86_OP_REG]
    if mem is not None and mem.size != contract.size:
        findings.append(Finding(Reason.WRONG_WIDTH, f"{mem.size}-byte access, not {contract.size}"))
    if regs and regs[-1] != contract.data_register:
        detail = f"data register {regs[-1]}, not {contract.data_register}"
        findings.append(Finding(Reason.WRONG_REGISTER, detail))
    if mem is None:
        findings.append(Finding(Reason.WRONG_OPCODE, "no explicit memory operand"))
    else:
        want = contract.form(mode).address_register
        base = insn.reg_name(mem.mem.base) if mem.mem.base else None
        index = insn.reg_name(mem.mem.index) if mem.mem.index else None
        if base not in _ADDRESS_REGISTERS:
            findings.append(Finding(Reason.WRONG_REGISTER, f"address register {base or 'none'}, not {want}"))
        elif index is not None or mem.mem.disp or insn.modrm & _MOD_RM_BITS != _CONTRACT_MODRM:
            parts = [f"ModRM {insn.modrm:02x}"] + (["SIB"] if index is not None else [])
            parts += ([f"displacement {mem.mem.disp:#x}"] if mem.mem.disp or insn.modrm >> 6 else [])
            findings.append(Finding(Reason.WRONG_ADDRESSING,
                                    f"{' + '.join(parts)}; the contract's form is ModRM 02 ([{want}])"))
    if not findings and raw != contract.encoding:
        findings.append(Finding(Reason.WRONG_OPCODE, f"not the agreed encoding {contract.encoding.hex(' ')}"))
    return Explained(rip, raw, disasm, tuple(findings))


# -- dynamic ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Violation:
    """A site that broke the contract at run time; `count` is how many exits it caused."""

    rip: int
    insn: bytes
    disasm: str
    findings: tuple[Finding, ...]
    count: int = 1
    where: Location | None = None  # symbol, offset, file:line when the guest is an ELF with symbols

    @property
    def reason(self) -> str:
        return "; ".join(str(f) for f in self.findings)

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(f.reason for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"rip": self.rip, "bytes": self.insn.hex(" "), "disasm": self.disasm, "reason": self.reason,
                "count": self.count, **_where_json(self.where)}


class ClassifyingPath:
    """The fast path with a ledger: every exit inside a pv window is counted as conforming (the fast
    path took it) or recorded as a violation and handed to the generic path, so the run goes on.
    Exits outside pv windows go straight to the generic path and are not judged."""

    name = "validate"

    def __init__(
        self,
        windows: Iterable[tuple[int, int]] | None = None,
        fast: FastPath | None = None,
        contract: Contract = CONTRACT_V1,
    ) -> None:
        self.fast = fast or FastPath(windows)
        self.contract = contract
        self.conforming = 0
        self._sites: dict[tuple[int, bytes, tuple[Finding, ...]], list[Any]] = {}
        self._dis = Disassembler()

    def in_pv_window(self, gpa: int) -> bool:
        return self.fast.in_window(gpa, 1)

    def handle(self, exit: ExitRecord, cpu: Cpu) -> Outcome:
        if exit.kind not in (ExitKind.MMIO_READ, ExitKind.MMIO_WRITE) or not self.in_pv_window(exit.addr):
            return self.fast.handle(exit, cpu)
        outcome = self.fast.try_fast(exit, cpu)
        if outcome is not None:
            self.fast.fast_hits += 1
            self.conforming += 1
            return outcome
        code = cpu.read_mem(exit.rip, MAX_INSN_LEN)
        ex = explain(code, exit.mode, exit.kind is ExitKind.MMIO_WRITE, exit.rip, self.contract, self._dis)
        outside = f"{self.contract.size}-byte write at {exit.addr:#x} is not inside one pv window"
        findings = ex.findings or (Finding(Reason.OUTSIDE_WINDOW, outside),)
        key = (exit.rip, ex.insn, findings)
        if key in self._sites:
            self._sites[key][1] += 1
        else:
            self._sites[key] = [ex.disasm, 1]
        self.fast.fallbacks += 1
        handled = self.fast.fallback.handle(exit, cpu)
        if handled is None:
            raise EmulationError("the generic path declined a pv-window exit", exit.rip, ex.insn)
        return handled

    @property
    def violations(self) -> tuple[Violation, ...]:
        return tuple(Violation(rip, insn, d, f, n) for (rip, insn, f), (d, n) in self._sites.items())


@dataclass(frozen=True, slots=True)
class DynamicResult:
    conforming: int
    violations: tuple[Violation, ...]
    stop: Stop
    devices: dict[str, Any] = field(default_factory=dict)
    regs: dict[str, int] = field(default_factory=dict)
    windows: tuple[tuple[int, int], ...] = ()  # the pv windows the run classified exits in


def validate_dynamic(
    image: GuestImage,
    board: Board | None = None,
    max_insns: int | None = None,
    timeout: float | None = 10.0,
    contract: Contract = CONTRACT_V1,
) -> DynamicResult:
    """Run the guest exit-style and classify every exit inside the board's pv windows."""
    board = board or default_board()
    path = ClassifyingPath(board.pv_windows, contract=contract)
    machine = Machine(image, board=board, mmio_style=MmioStyle.EXIT, path=path)
    result = machine.run(max_insns=max_insns, timeout=timeout)
    violations = path.violations
    if image.elf is not None:
        violations = tuple(replace(v, where=image.elf.locate(v.rip)) for v in violations)
    return DynamicResult(path.conforming, violations, result.stop, result.devices, result.regs,
                         tuple(board.pv_windows))


# -- static ----------------------------------------------------------------------------------------


class SiteKind(enum.Enum):
    CONTRACT_SITE = "contract_site"
    NEAR_MISS = "near_miss"
    NOTIFY_LIKE = "notify_like"  # any store whose address (a constant) lies in a pv window the run saw


@dataclass(frozen=True, slots=True)
class StaticSite:
    """A candidate notify store found by disassembly. Always heuristic: a sweep may hit data.

    `where` names it (`func+0xoff`, `file:line`, section) when the code came from an ELF with
    symbols; `relocation` says which relocation patches its bytes in an object file, in which case
    the relocated displacement or immediate is not judged."""

    rip: int
    insn: bytes
    disasm: str
    kind: SiteKind
    reason: str
    heuristic: bool = True
    where: Location | None = None
    relocation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rip": self.rip, "bytes": self.insn.hex(" "), "disasm": self.disasm, "kind": self.kind.value,
                "reason": self.reason, "heuristic": self.heuristic, **_where_json(self.where),
                "relocation": self.relocation}


@dataclass(frozen=True, slots=True)
class Unswept:
    """Bytes inside an executable section but outside every function symbol that are not padding:
    data in the text section, or code without a symbol size. Not decoded, but never silently."""

    where: Location
    size: int

    def describe(self) -> str:
        return f"{self.size} bytes at {self.where.label()} lie outside every function symbol: not swept"

    def to_json(self) -> dict[str, Any]:
        return {"rip": self.where.rip, "size": self.size, **_where_json(self.where)}


@dataclass(frozen=True, slots=True)
class StaticScan:
    """What one sweep found, and what it covered (units swept, bytes decoded)."""

    sites: tuple[StaticSite, ...]
    unswept: tuple[Unswept, ...] = ()
    units: int = 0
    swept_bytes: int = 0
    warnings: tuple[str, ...] = ()


def _where_json(where: Location | None) -> dict[str, Any]:
    return (where or Location()).to_json()


def _candidate(insn: Any) -> str | None:
    """Why this instruction looks like a notify store (None: it does not)."""
    stores = [op for op in insn.operands if op.type == cx.X86_OP_MEM and op.access & capstone.CS_AC_WRITE]
    why: list[str] = []
    if any(op.mem.base and insn.reg_name(op.mem.base) in _ADDRESS_REGISTERS for op in stores):
        why.append("store through RDX")
    regs = [insn.reg_name(op.reg) for op in insn.operands if op.type == cx.X86_OP_REG]
    if any(op.size == 2 for op in stores) and "ax" in regs:
        why.append("16-bit store from AX")
    return " and ".join(why) or None


_GPR_FAMILY = {
    name: fam
    for fam, names in {
        "rax": "eax ax al ah", "rbx": "ebx bx bl bh", "rcx": "ecx cx cl ch", "rdx": "edx dx dl dh",
        "rsi": "esi si sil", "rdi": "edi di dil", "rbp": "ebp bp bpl", "rsp": "esp sp spl",
        **{f"r{n}": f"r{n}d r{n}w r{n}b" for n in range(8, 16)},
    }.items()
    for name in [fam, *names.split()]
}
_WRITE = capstone.CS_AC_WRITE
_BRANCH_GROUPS = (capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET, capstone.CS_GRP_INT)


class _Constants:
    """Registers known to hold a constant, from `mov reg, imm` within straight-line code: enough to
    see that `mov edi, 0xfeb00004; mov [rdi], cx` stores into a pv window. Forgotten at any branch
    (a jump target may be reached with other values), undecodable byte, or other write."""

    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.values: dict[str, int] = {}

    def target(self, insn: Any, mem: Any, relocated: bool) -> int | None:
        """The constant address a memory operand names, or None (unknown or relocated)."""
        if relocated or mem.mem.index:
            return None
        base = insn.reg_name(mem.mem.base) if mem.mem.base else None
        mask = (1 << self.mode) - 1
        if base is None:
            return mem.mem.disp & mask
        if base in ("rip", "eip"):
            return (insn.address + insn.size + mem.mem.disp) & mask
        value = self.values.get(_GPR_FAMILY.get(base, base))
        return None if value is None else (value + mem.mem.disp) & mask

    def update(self, insn: Any, relocated: bool) -> None:
        if any(insn.group(g) for g in _BRANCH_GROUPS):
            self.values.clear()
            return
        _read, written = insn.regs_access()
        names = {_GPR_FAMILY.get(insn.reg_name(r), "") for r in written} - {""}
        ops = insn.operands
        if (insn.mnemonic in ("mov", "movabs") and len(ops) == 2 and ops[0].type == cx.X86_OP_REG
                and ops[1].type == cx.X86_OP_IMM and not relocated
                and ops[0].size in (4, 8)):
            reg = _GPR_FAMILY.get(insn.reg_name(ops[0].reg))
            if reg is not None:
                self.values[reg] = ops[1].imm & ((1 << (8 * ops[0].size)) - 1)
                return
        for name in names:
            self.values.pop(name, None)


def _relocation_note(insn: Any, reloc: Relocation) -> str:
    at = reloc.addr - insn.address
    what = "displacement" if at == insn.disp_offset else "immediate" if at == insn.imm_offset else "bytes"
    return (f"the {what} at +{at} is patched by relocation {reloc.describe()}: its value is fixed at link "
            f"time, so the contract does not judge it")


def _is_padding(code: bytes, mode: int, addr: int, dis: Disassembler) -> bool:
    """Alignment filler between functions: zero bytes, nop (any length) and int3 only."""
    off = 0
    while off < len(code):
        if code[off] == 0:
            off += 1
            continue
        insn = dis.one(code[off : off + MAX_INSN_LEN], mode, addr + off)
        if insn is None or insn.mnemonic not in ("nop", "int3"):
            return False
        off += insn.size
    return True


_MOV_IMM = re.compile(r"^\w+, (?:0x[0-9a-f]+|\d+)$")
_CONSTANT_ADDRESS = re.compile(r"(?:^|[ ,])(?:\w+ ptr )?\[(?:rip|eip|0x|\d)")  # [rip + d], [abs]; not fs:[…]


def _worth_detail(insn: Any, raw: bytes, contract: Contract, windows: bool, known: _Constants) -> bool:
    """A cheap text filter over the detail-free decode: can this instruction be a finding, or change
    a tracked constant? (Operand detail from Capstone is the sweep's main cost.)"""
    ops = insn.op_str
    if raw == contract.encoding or "dx" in ops or ("word ptr" in ops and "ax" in ops):
        return True
    if not windows:
        return False
    if known.values or _CONSTANT_ADDRESS.search(ops):
        return True
    return insn.mnemonic in ("mov", "movabs") and bool(_MOV_IMM.match(ops))


def _sweep_unit(
    unit: CodeUnit,
    mode: int,
    contract: Contract,
    dis: Disassembler,
    windows: Sequence[tuple[int, int]],
    locate: Callable[[int], Location] | None,
    deadline: float | None = None,
) -> tuple[list[StaticSite], int]:
    """Linear sweep of one unit's bytes; nothing is decoded beyond them (an instruction that would
    run past the unit's end does not decode and is skipped a byte at a time, like any junk)."""
    code, sites, known = unit.data, [], _Constants(mode)
    relocs, next_reloc = unit.relocations, 0
    for steps, (off, light) in enumerate(dis.walk(code, mode, unit.addr)):
        if deadline is not None and steps % 1024 == 1023 and time.monotonic() > deadline:
            raise ExitlabError(f"the static sweep hit the --timeout at {unit.addr + off:#x}")
        if light is None:
            known.values.clear()
            continue
        rip, raw = unit.addr + off, bytes(light.bytes)
        while next_reloc < len(relocs) and relocs[next_reloc].addr + relocs[next_reloc].size <= rip:
            next_reloc += 1
        pending = relocs[next_reloc] if next_reloc < len(relocs) else None
        reloc = pending if pending is not None and pending.addr < rip + len(raw) else None
        if not _worth_detail(light, raw, contract, bool(windows), known):
            continue
        insn = dis.one(raw, mode, rip)
        targets: list[int] = []
        if windows:
            mem = [op for op in insn.operands if op.type == cx.X86_OP_MEM and op.access & _WRITE]
            targets = [t for op in mem if (t := known.target(insn, op, reloc is not None)) is not None]
            known.update(insn, reloc is not None)
        window = next((t for t in targets for lo, n in windows if lo <= t < lo + n), None)
        looks = "agreed bytes" if raw == contract.encoding else _candidate(insn)
        if looks is None and window is None:
            continue
        where = locate(rip) if locate is not None else None
        shown = where.rip if where is not None and where.rip is not None else rip
        note = _relocation_note(insn, reloc) if reloc is not None else None
        ex = explain(raw, mode, True, rip, contract, dis)
        if ex.conforming and reloc is None:
            why = "agreed encoding " + raw.hex(" ")
            sites.append(StaticSite(shown, raw, ex.disasm, SiteKind.CONTRACT_SITE, why, where=where))
            continue
        reason = ex.reason if not ex.conforming else "the agreed bytes are patched by a relocation"
        if note is not None:
            reason = re.sub(r" \+ displacement -?0x[0-9a-f]+", " + a relocated displacement", reason)
            reason += f" ({note})"
        if looks is None:
            kind, looks = SiteKind.NOTIFY_LIKE, f"store to {window:#x}, inside a pv window the run used"
        else:
            kind = SiteKind.NEAR_MISS
            if window is not None:
                looks += f" to {window:#x} (inside a pv window the run used)"
        sites.append(StaticSite(shown, raw, ex.disasm, kind, f"{looks}: {reason}", where=where,
                                relocation=reloc.describe() if reloc is not None else None))
    return sites, len(code)


def _image_units(image: GuestImage) -> tuple[tuple[CodeUnit, ...], Callable[[int], Location] | None, Any]:
    """The code to sweep: an ELF guest's functions (via its symbols), else its code regions whole."""
    if image.elf is not None:
        return image.elf.code_units(), image.elf.locate, image.elf
    return tuple(CodeUnit(r.name, r.addr, r.data) for r in image.code_regions), None, None


def sweep(
    units: Iterable[CodeUnit],
    mode: int,
    contract: Contract = CONTRACT_V1,
    windows: Sequence[tuple[int, int]] = (),
    locate: Callable[[int], Location] | None = None,
    deadline: float | None = None,
) -> StaticScan:
    """Sweep every code unit (one function, or a whole code region) and nothing else. Gap units
    (between functions) are only checked for being padding; if not, they are listed as unswept.
    `windows` are the pv windows a dynamic run used: stores to constant addresses inside them are
    reported as notify-like even when they do not look like a notify. Past `deadline` (a
    time.monotonic() value: what is left of --timeout) the sweep stops with an ExitlabError."""
    dis = Disassembler()
    sites: list[StaticSite] = []
    unswept: list[Unswept] = []
    count = swept = 0
    for unit in units:
        if unit.gap:
            if not _is_padding(unit.data, mode, unit.addr, dis):
                where = locate(unit.addr) if locate is not None else Location(unit.section, unit.addr)
                unswept.append(Unswept(where, len(unit.data)))
            continue
        found, n = _sweep_unit(unit, mode, contract, dis, windows, locate, deadline)
        sites += found
        count, swept = count + 1, swept + n
    return StaticScan(tuple(sites), tuple(unswept), count, swept)


def scan_image(
    image: GuestImage,
    contract: Contract = CONTRACT_V1,
    windows: Sequence[tuple[int, int]] = (),
    deadline: float | None = None,
) -> StaticScan:
    """Sweep a guest image's code: an ELF's executable sections function by function, a snippet's
    or raw binary's whole image (it has no code/data distinction; see docs/contract.md)."""
    units, locate, elf = _image_units(image)
    scan = sweep(units, image.mode, contract, windows, locate, deadline)
    if elf is not None and elf.warnings:
        scan = replace(scan, warnings=tuple(elf.warnings))
    return scan


def scan_static(
    image: GuestImage, contract: Contract = CONTRACT_V1, deadline: float | None = None
) -> tuple[StaticSite, ...]:
    """Contract sites and near misses in `image`'s code, with the reason `explain` gives."""
    return scan_image(image, contract, deadline=deadline).sites


def scan_binary(binary: ElfBinary, contract: Contract = CONTRACT_V1) -> StaticScan:
    """`exitlab validate --static`: sweep an ELF executable, object or module without running it."""
    scan = sweep(binary.code_units(), binary.mode, contract, (), binary.locate)
    return replace(scan, warnings=tuple(binary.warnings))


# -- report ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """Everything `exitlab validate` says about one guest (`dynamic` False: `--static`, no run)."""

    guest: str
    mode: int
    conforming: int
    violations: tuple[Violation, ...]
    static: tuple[StaticSite, ...]
    stop: Stop | None
    unswept: tuple[Unswept, ...] = ()
    warnings: tuple[str, ...] = ()
    dynamic: bool = True
    swept: str = ""  # what the sweep covered, for the text report

    @property
    def near_misses(self) -> tuple[StaticSite, ...]:
        return tuple(s for s in self.static if s.kind is SiteKind.NEAR_MISS)

    @property
    def notify_like(self) -> tuple[StaticSite, ...]:
        return tuple(s for s in self.static if s.kind is SiteKind.NOTIFY_LIKE)

    @property
    def contract_sites(self) -> tuple[StaticSite, ...]:
        return tuple(s for s in self.static if s.kind is SiteKind.CONTRACT_SITE)

    @property
    def run_completed(self) -> bool:
        return self.stop is None or not self.stop.is_error

    def passed(self, strict: bool = False) -> bool:
        """No dynamic violation and the run reached hlt; with `strict`, no static near miss or
        notify-like store either."""
        flagged = self.near_misses or self.notify_like
        return not self.violations and self.run_completed and not (strict and flagged)

    def to_json(self) -> dict[str, Any]:
        return {
            "conforming": self.conforming if self.dynamic else None,
            "violations": [v.to_json() for v in self.violations] if self.dynamic else None,
            "static": [s.to_json() for s in self.static],
            "unswept": [u.to_json() for u in self.unswept],
        }


def _swept(scan: StaticScan) -> str:
    return f"{scan.units} code units, {scan.swept_bytes} bytes"


def validate(
    image: GuestImage,
    board: Board | None = None,
    max_insns: int | None = None,
    timeout: float | None = 10.0,
    contract: Contract = CONTRACT_V1,
) -> Report:
    deadline = None if timeout is None else time.monotonic() + timeout  # one limit for both phases
    dyn = validate_dynamic(image, board, max_insns, timeout, contract)
    scan = scan_image(image, contract, dyn.windows, deadline)
    return Report(image.name, image.mode, dyn.conforming, dyn.violations, scan.sites, dyn.stop, scan.unswept,
                  scan.warnings, swept=_swept(scan))


def validate_static(image: GuestImage | None = None, binary: ElfBinary | None = None,
                    contract: Contract = CONTRACT_V1) -> Report:
    """`exitlab validate --static`: the sweep alone, on an ELF binary (any kind) or a guest image."""
    if binary is not None:
        scan, name, mode = scan_binary(binary, contract), f"{binary.name} [{binary.kind}]", binary.mode
    elif image is not None:
        scan, name, mode = scan_image(image, contract), image.name, image.mode
    else:
        raise ValueError("validate_static needs an image or a binary")
    return Report(name, mode, 0, (), scan.sites, None, scan.unswept, scan.warnings, dynamic=False,
                  swept=_swept(scan))


def _at(where: Location | None) -> str:
    label = where.label() if where is not None else ""
    return f"  at {label}" if label else ""


def format_text(report: Report, strict: bool = False) -> str:
    """One line per finding: `rip  bytes  disasm  reason`, grouped under dynamic and static; a finding
    in an ELF with symbols ends with `at func+0xoff file:line`."""
    lines = [f"{report.guest} ({report.mode}-bit), pv contract v{CONTRACT_V1.version}"]
    if report.dynamic:
        exits = sum(v.count for v in report.violations)
        lines.append(f"dynamic: {report.conforming} conforming exits, {exits} violating exits at "
                     f"{len(report.violations)} sites")
    else:
        lines.append("dynamic: not run (--static)")
    if report.stop is not None:
        stop = report.stop
        lines.append(f"  run stopped: {stop.reason.value} at rip={stop.rip:#x}: {stop.message}")
    for v in report.violations:
        lines.append(f"  {v.rip:#x}  {v.insn.hex(' ')}  {v.disasm}  {v.reason}  (x{v.count}){_at(v.where)}")
    summary = f"{len(report.contract_sites)} contract sites, {len(report.near_misses)} near misses"
    if report.dynamic:
        summary += f", {len(report.notify_like)} notify-like stores"
    covered = f" of {report.swept}" if report.swept else ""
    lines.append(f"static (heuristic linear sweep{covered}): {summary}")
    for s in report.static:
        lines.append(f"  {s.rip:#x}  {s.insn.hex(' ')}  {s.disasm}  {s.kind.value}: {s.reason}{_at(s.where)}")
    for u in report.unswept:
        lines.append(f"  note: {u.describe()}")
    for w in report.warnings:
        lines.append(f"  warning: {w}")
    verdict = "PASS" if report.passed(strict) else "FAIL"
    lines.append(f"verdict: {verdict}" + (" (strict: near misses fail)" if strict else ""))
    return "\n".join(lines)
