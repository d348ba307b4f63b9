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
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import capstone
from capstone import x86 as cx

from emu.assemble import GuestImage
from emu.board import Board, default_board
from emu.cpu import Cpu, Outcome
from emu.errors import ExitlabError
from emu.exits import MAX_INSN_LEN, ExitKind, ExitRecord
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

    def __init__(self) -> None:
        self._cs: dict[int, capstone.Cs] = {}

    def one(self, code: bytes, mode: int, rip: int) -> Any:
        """The first instruction of `code` at `rip`, or None if it does not decode."""
        cs = self._cs.get(mode)
        if cs is None:
            cs = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODE[mode])
            cs.detail = True
            self._cs[mode] = cs
        return next(cs.disasm(code, rip, 1), None)


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

    @property
    def reason(self) -> str:
        return "; ".join(str(f) for f in self.findings)

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(f.reason for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"rip": self.rip, "bytes": self.insn.hex(" "), "disasm": self.disasm, "reason": self.reason,
                "count": self.count}


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
            from emu.errors import EmulationError

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
    return DynamicResult(path.conforming, path.violations, result.stop, result.devices, result.regs)


# -- static ----------------------------------------------------------------------------------------


class SiteKind(enum.Enum):
    CONTRACT_SITE = "contract_site"
    NEAR_MISS = "near_miss"


@dataclass(frozen=True, slots=True)
class StaticSite:
    """A candidate notify store found by disassembly. Always heuristic: a sweep may hit data."""

    rip: int
    insn: bytes
    disasm: str
    kind: SiteKind
    reason: str
    heuristic: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"rip": self.rip, "bytes": self.insn.hex(" "), "disasm": self.disasm, "kind": self.kind.value,
                "reason": self.reason, "heuristic": self.heuristic}


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


def scan_static(
    image: GuestImage, contract: Contract = CONTRACT_V1, deadline: float | None = None
) -> tuple[StaticSite, ...]:
    """Linear sweep over `image.code` from `image.load_addr`; undecodable bytes are skipped one at a
    time. Lists contract sites and near misses with the reason `explain` gives. Past `deadline`
    (a time.monotonic() value: what is left of --timeout) the sweep stops with an ExitlabError."""
    dis = Disassembler()
    code, base, mode = image.code, image.load_addr, image.mode
    sites: list[StaticSite] = []
    off = 0
    steps = 0
    while off < len(code):
        steps += 1
        if deadline is not None and steps % 1024 == 0 and time.monotonic() > deadline:
            raise ExitlabError(f"the static sweep hit the --timeout after {off:#x} of {len(code):#x} bytes")
        rip = base + off
        insn = dis.one(code[off : off + MAX_INSN_LEN], mode, rip)
        if insn is None:
            off += 1
            continue
        raw = bytes(insn.bytes)
        off += len(raw)
        looks = "agreed bytes" if raw == contract.encoding else _candidate(insn)
        if looks is None:
            continue
        ex = explain(raw, mode, True, rip, contract, dis)
        if ex.conforming:
            why = "agreed encoding " + raw.hex(" ")
            sites.append(StaticSite(rip, raw, ex.disasm, SiteKind.CONTRACT_SITE, why))
        else:
            sites.append(StaticSite(rip, raw, ex.disasm, SiteKind.NEAR_MISS, f"{looks}: {ex.reason}"))
    return tuple(sites)


# -- report ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """Everything `exitlab validate` says about one guest."""

    guest: str
    mode: int
    conforming: int
    violations: tuple[Violation, ...]
    static: tuple[StaticSite, ...]
    stop: Stop | None

    @property
    def near_misses(self) -> tuple[StaticSite, ...]:
        return tuple(s for s in self.static if s.kind is SiteKind.NEAR_MISS)

    @property
    def run_completed(self) -> bool:
        return self.stop is None or not self.stop.is_error

    def passed(self, strict: bool = False) -> bool:
        """No dynamic violation and the run reached hlt; with `strict`, no static near miss either."""
        return not self.violations and self.run_completed and not (strict and self.near_misses)

    def to_json(self) -> dict[str, Any]:
        return {
            "conforming": self.conforming,
            "violations": [v.to_json() for v in self.violations],
            "static": [s.to_json() for s in self.static],
        }


def validate(
    image: GuestImage,
    board: Board | None = None,
    max_insns: int | None = None,
    timeout: float | None = 10.0,
    contract: Contract = CONTRACT_V1,
) -> Report:
    deadline = None if timeout is None else time.monotonic() + timeout  # one limit for both phases
    dyn = validate_dynamic(image, board, max_insns, timeout, contract)
    static = scan_static(image, contract, deadline)
    return Report(image.name, image.mode, dyn.conforming, dyn.violations, static, dyn.stop)


def format_text(report: Report, strict: bool = False) -> str:
    """One line per finding: `rip  bytes  disasm  reason`, grouped under dynamic and static."""
    exits = sum(v.count for v in report.violations)
    lines = [f"{report.guest} ({report.mode}-bit), pv contract v{CONTRACT_V1.version}",
             f"dynamic: {report.conforming} conforming exits, {exits} violating exits at "
             f"{len(report.violations)} sites"]
    if report.stop is not None:
        stop = report.stop
        lines.append(f"  run stopped: {stop.reason.value} at rip={stop.rip:#x}: {stop.message}")
    for v in report.violations:
        lines.append(f"  {v.rip:#x}  {v.insn.hex(' ')}  {v.disasm}  {v.reason}  (x{v.count})")
    sites = sum(1 for s in report.static if s.kind is SiteKind.CONTRACT_SITE)
    misses = len(report.near_misses)
    lines.append(f"static (heuristic linear sweep): {sites} contract sites, {misses} near misses")
    for s in report.static:
        lines.append(f"  {s.rip:#x}  {s.insn.hex(' ')}  {s.disasm}  {s.kind.value}: {s.reason}")
    verdict = "PASS" if report.passed(strict) else "FAIL"
    lines.append(f"verdict: {verdict}" + (" (strict: near misses fail)" if strict else ""))
    return "\n".join(lines)
