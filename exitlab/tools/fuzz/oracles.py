"""Run one case through the ground truth and every exitlab path; classify each disagreement.

The truth is Unicorn executing the instruction once with an MMIO window (emu.oracle.run_one):
the device accesses, the registers, the next RIP, or the fault. Against it:

- `generic`   the Python generic path (Capstone decode + emulate) on a BatchCpu;
- `c-subset` / `c-capstone` / `c-pv-fast`  the C paths replaying the exit the truth produced;
- `c-subset-decoder`  the C subset decoder alone (what it accepts must be what runs, at that length);
- `fast`      the Python pv fast path (it may accept only the contract encoding, and then must
              equal the truth);
- `length`    the C length function against iced-x86; `unicorn-vs-iced` cross-checks the two
              third-party tools (their disagreements are documented, never ours to fix).

"The emulator does not support this instruction" is an outcome, counted, not a bug. Everything
else that differs becomes a `Finding` of one class (CLASSES) unless explain.py has a precise
predicate for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import iced_x86 as iced

from emu.access import SUBREGS, Access, AccessKind, MemOperand, Op
from emu.batchcpu import BatchCpu, default_ram_regions
from emu.cpu import Cpu, DeviceAccess, Outcome
from emu.decode import decode, effective_address
from emu.emulate import DF, STATUS, execute
from emu.errors import EmulationError, GuestFault, UnmappedAccess
from emu.exits import GPR_NAMES, MAX_INSN_LEN, REG_NAMES, ExitKind, ExitRecord
from emu.generic import emulate_at
from emu.opmap import C_OPS
from emu.oracle import OracleResult, run_one
from exitlab.tools.fuzz.case import Case
from exitlab.tools.fuzz.explain import Evidence, explain
from exitlab.tools.fuzz.state import (
    NOTIFY_WINDOW,
    REGS_WINDOW,
    c_device_read,
    decode_iced,
    may_modify_own_code,
    rep_too_long,
    unicorn_would_abort,
)
from fastpath.fast import FastPath

# What the C capstone path emulates on a replay record: the ops with a C table in the opcode map
# (emu/x86-opcode-map.txt: paths.c MOV family + sem*.c), a C refusal of the Python generic path's
# other families is a coverage gap, not a finding.  Not SSE_LOAD/SSE_STORE or SMSW: a replay record
# carries no vector registers and no CR0, so there the C path refuses them by design (SEMANTICS
# rule 5); they are checked on full guest states by tests/emulate/test_c_families.py and live.
C_CAPSTONE_OPS = C_OPS - {Op.SSE_LOAD, Op.SSE_STORE, Op.SMSW}

CLASSES = (
    "length",
    "access-size",
    "address",
    "value",
    "register",
    "flags",
    "accepted-but-should-fault",
    "faulted-but-should-run",
    "crash",
)
ORACLES = (
    "generic",
    "c-subset",
    "c-capstone",
    "c-pv-fast",
    "c-subset-decoder",
    "fast",
    "length",
    "unicorn-vs-iced",
)
THIRD_PARTY = frozenset({"unicorn-vs-iced"})

_CODE_NAME: dict[int, str] = {v: k for k, v in vars(iced.Code).items() if isinstance(v, int)}
# Refusals that claim the CPU would fault: wrong when Unicorn ran the instruction.
_FAULT_WORDS = ("(#GP)", "(#UD)", "unmapped memory")

GenericFn = Callable[[Cpu, int, int], Outcome]
# the memory map of a (rip, window): computed page by page (~1 ms), and a campaign has a handful
_ram_regions = functools.lru_cache(maxsize=64)(default_ram_regions)


def _run_one(case: Case) -> OracleResult:
    """The truth by emu.oracle.run_one (a fresh engine per case): without the C extension."""
    ram = _ram_regions(case.rip, case.mmio)
    return run_one(case.code, case.mode, case.rip, case.reg_dict(), case.mmio, case.read_value, ram,
                   case.xmm_dict())


def _movsx_zero_extends(cpu: Cpu, rip: int, mode: int) -> Outcome:
    """PLANTED BUG (tests only): MOVSX/MOVSXD zero-extend instead of sign-extending."""
    access = decode(cpu.read_mem(rip, MAX_INSN_LEN), mode, rip)
    if access.op is Op.MOVSX:
        access = replace(access, op=Op.MOVZX, kind=AccessKind.READ_ZX)
    return execute(access, cpu, rip, mode)


# Test-only wrong generic paths, chosen by name through an explicit parameter (never a global).
PLANTS: dict[str, GenericFn] = {"movsx-zero-extends": _movsx_zero_extends}


@dataclass(frozen=True, slots=True)
class Finding:
    """One disagreement: which oracle, which class, what was expected (the truth) and what we got."""

    oracle: str
    cls: str
    detail: str
    form: str
    expected: Mapping[str, Any] = field(default_factory=dict)
    got: Mapping[str, Any] = field(default_factory=dict)
    explained: str | None = None

    @property
    def signature(self) -> str:
        """Distinct-disagreement key: the same oracle, class and instruction form is one finding --
        and the same explanation: an unexplained disagreement is never folded into an explained one
        of the same form that came first (a campaign reported "clean" over such disagreements)."""
        key = f"{self.oracle}|{self.cls}|{self.form}"
        return key if self.explained is None else f"{key}|{self.explained}"


@dataclass(frozen=True, slots=True)
class CaseResult:
    outcomes: tuple[tuple[str, str], ...]
    findings: tuple[Finding, ...]
    form: str
    touched_mmio: bool


def fault_kind(fault: str | None) -> str | None:
    if fault is None:
        return None
    if "INSN_INVALID" in fault:
        return "ud"
    if fault.startswith("cpu exception"):
        return "exception"
    if "UNMAPPED" in fault or "FETCH" in fault:
        return "unmapped"
    return "other"


def _acc_json(accs: tuple[DeviceAccess, ...] | list[DeviceAccess]) -> list[dict[str, Any]]:
    return [{"gpa": hex(a.gpa), "size": a.size, "write": a.write, "value": hex(a.value)} for a in accs]


def _classify_accesses(want: tuple[DeviceAccess, ...], got: tuple[DeviceAccess, ...]) -> str | None:
    for w, g in zip(want, got, strict=False):
        if w.gpa != g.gpa or w.write != g.write:
            return "address"
        if w.size != g.size:
            return "access-size"
        if w.value != g.value:
            return "value"
    if len(want) != len(got):
        return "access-size"
    return None


class Checker:
    """Holds what is expensive to create (C context, Capstone handles) across many cases."""

    def __init__(self, plant: str | None = None, use_c: bool = True, c_truth: bool = True) -> None:
        if plant is not None and plant not in PLANTS:
            raise ValueError(f"unknown plant {plant!r} (known: {', '.join(PLANTS)})")
        self.plant = plant
        self.generic: GenericFn = PLANTS[plant] if plant else emulate_at
        self.c: Any = None
        self.ctx: Any = None
        self.c_status = "disabled" if not use_c else "ok"
        if use_c:
            try:
                from fastpath import cengine

                self.ctx = cengine.CContext()
                self.ctx.open_capstone()
                self.c = cengine
            except Exception as exc:  # noqa: BLE001 - any import/build failure just skips the C oracles
                self.c_status = f"skipped: C extension not importable ({type(exc).__name__}: {exc})"
        # the truth: run_one's answer, from one reused engine per layout when the C core is there
        self.truth: Callable[[Case], OracleResult] = _run_one
        if use_c and c_truth and self.c is not None:
            from exitlab.tools.fuzz.ctruth import CTruth

            self.truth = CTruth().run

    # ------------------------------------------------------------------------------------------
    def check(self, case: Case, python: bool = True) -> CaseResult:
        """All oracles on one case; `python=False` leaves out the two Python paths (generic, fast),
        which are most of the time once the truth runs in C (fastrun checks them every Nth case)."""
        if may_modify_own_code(case):
            return CaseResult((("truth", "skipped-self-modifying"),), (), "self-modifying", False)
        if rep_too_long(case):
            return CaseResult((("truth", "skipped-long-rep"),), (), "long-rep", False)
        if unicorn_would_abort(case):
            return CaseResult((("truth", "skipped-unicorn-aborts"),), (), "lock-no-memory", False)
        truth = self.truth(case)
        ins = decode_iced(case.code, case.mode, case.rip)
        executed = decode_iced(case.code, case.mode, case.rip, padded=True)  # what the CPU fetches
        form = _CODE_NAME.get(executed.code, "invalid") if executed.code != iced.Code.INVALID else "invalid"
        run = _Run(self, case, truth, ins, form)
        run.length()
        if python:
            run.generic()
        if self.c is not None:
            run.c_decoder()
            run.c_paths()
        if python:
            run.fast()
        return CaseResult(tuple(run.outcomes), tuple(run.findings), form, bool(truth.accesses))


class _Run:
    """One case being checked: the truth, and the outcomes and findings collected so far."""

    def __init__(
        self,
        chk: Checker,
        case: Case,
        truth: OracleResult,
        ins: iced.Instruction,
        form: str,
    ) -> None:
        self.chk, self.case, self.truth, self.ins, self.form = chk, case, truth, ins, form
        self.fault = fault_kind(truth.fault)
        self.wmask = (1 << case.mode) - 1
        self.truth_regs = dict(truth.regs)
        self.outcomes: list[tuple[str, str]] = []
        self.findings: list[Finding] = []
        self._access: Access | None = None
        self._decoded = False

    @property
    def ram(self) -> tuple[tuple[int, int], ...]:
        return _ram_regions(self.case.rip, self.case.mmio)

    @property
    def access(self) -> Access | None:
        """The generic decode of what the CPU fetches (None: it refuses); decoded on first use."""
        if not self._decoded:
            self._decoded = True
            try:
                self._access = decode(self.case.code + bytes(MAX_INSN_LEN), self.case.mode, self.case.rip)
            except EmulationError:
                self._access = None
        return self._access

    def out(self, oracle: str, outcome: str) -> None:
        self.outcomes.append((oracle, outcome))

    def truth_json(self) -> dict[str, Any]:
        return {
            "accesses": _acc_json(self.truth.accesses),
            "next_rip": hex(self.truth.next_rip),
            "fault": self.truth.fault,
            "regs": {k: hex(v) for k, v in self.truth.regs if k != "rip"},
        }

    def find(
        self,
        oracle: str,
        cls: str,
        detail: str,
        got: Mapping[str, Any],
        ours_regs: Mapping[str, int] | None = None,
        error: str = "",
        ours_accesses: tuple[DeviceAccess, ...] = (),
    ) -> None:
        explained = None
        if oracle in THIRD_PARTY:
            explained = "third-party: unicorn and iced-x86 disagree (docs/known-discrepancies.md)"
        else:
            explained = explain(
                Evidence(
                    self.case,
                    oracle,
                    cls,
                    self.access,
                    self.truth_regs,
                    self.truth.fault,
                    dict(ours_regs or {}),
                    error,
                    self.truth.accesses,
                    ours_accesses,
                )
            )
        self.findings.append(Finding(oracle, cls, detail, self.form, self.truth_json(), dict(got), explained))
        self.out(oracle, f"explained:{explained}" if explained else f"disagree:{cls}")

    def crash(self, oracle: str, exc: BaseException) -> None:
        self.find(
            oracle, "crash", f"{type(exc).__name__}: {exc}", {"exception": f"{type(exc).__name__}: {exc}"}
        )

    # ------------------------------------------------------------------------------ length
    def length(self) -> None:
        ins, c = self.ins, self.chk.c
        iced_len = ins.len if ins.code != iced.Code.INVALID else None
        if c is not None:
            try:
                n = c.insn_length(self.case.code, self.case.mode)
            except Exception as exc:  # noqa: BLE001 - a crash of the C side is a finding
                self.crash("length", exc)
            else:
                if n < 0:
                    self.out("length", "both-invalid" if iced_len is None else "unknown")
                elif iced_len is None:
                    self.find(
                        "length",
                        "length",
                        f"C length {n} for bytes iced-x86 rejects",
                        {"c_length": n, "iced": "invalid"},
                    )
                elif n != iced_len:
                    self.find(
                        "length",
                        "length",
                        f"C length {n} != iced-x86 {iced_len}",
                        {"c_length": n, "iced_length": iced_len},
                    )
                else:
                    self.out("length", "agree")
        t = self.truth
        if (
            t.fault is None
            and iced_len is not None
            and ins.flow_control == iced.FlowControl.NEXT
            and not (ins.has_rep_prefix or ins.has_repne_prefix)
        ):
            if t.next_rip - self.case.rip != iced_len:
                self.find(
                    "unicorn-vs-iced",
                    "length",
                    f"unicorn advanced {t.next_rip - self.case.rip}, iced-x86 says {iced_len}",
                    {"iced_length": iced_len},
                )
            else:
                self.out("unicorn-vs-iced", "agree")
        elif (
            t.fault is not None
            and iced_len is not None
            and self.fault == "ud"
            and ins.code != iced.Code.INVALID
        ):
            self.out("unicorn-vs-iced", "unicorn-ud")

    # ------------------------------------------------------------------------------ generic
    def _cpu(self) -> BatchCpu:
        c = self.case
        cpu = BatchCpu(c.mode, {**c.reg_dict(), "rip": c.rip}, c.mmio, c.read_value, self.ram, c.xmm_dict())
        cpu.write_mem(c.rip, c.code)
        return cpu

    def generic(self) -> None:
        cpu = self._cpu()
        t = self.truth
        try:
            out = self.chk.generic(cpu, self.case.rip, self.case.mode)
        except EmulationError as exc:
            msg = str(exc)
            if t.fault is not None:
                self.out("generic", "both-fault")
            elif isinstance(exc, (GuestFault, UnmappedAccess)) or any(w in msg for w in _FAULT_WORDS):
                self.find(
                    "generic",
                    "faulted-but-should-run",
                    f"generic path refused: {msg}",
                    {"error": msg},
                    error=msg,
                )
            else:
                self.out("generic", "unsupported")
            return
        except Exception as exc:  # noqa: BLE001 - anything but EmulationError is a crash of the path
            self.crash("generic", exc)
            return
        ours = {
            n: cpu.get(n) & (self.wmask if n in GPR_NAMES else (1 << 64) - 1)
            for n in self.truth_regs
            if n != "rip"
        }
        got = {
            "accesses": _acc_json(out.accesses),
            "next_rip": hex(out.next_rip),
            "regs": {k: hex(v) for k, v in ours.items()},
        }
        if t.fault is not None:
            self.find(
                "generic",
                "accepted-but-should-fault",
                f"unicorn faulted ({t.fault}), generic emulated",
                got,
                ours,
            )
            return
        cls = _classify_accesses(t.accesses, out.accesses)
        if cls:
            self.find("generic", cls, "device accesses differ", got, ours, ours_accesses=out.accesses)
            return
        if out.next_rip != t.next_rip:
            self.find("generic", "length", f"next rip {out.next_rip:#x} != {t.next_rip:#x}", got, ours)
            return
        diff = [n for n in ours if n != "rflags" and ours[n] != self.truth_regs[n]]
        if diff:
            self.find("generic", "register", f"registers differ: {', '.join(diff)}", got, ours)
            return
        fm = STATUS | DF
        if ours["rflags"] & fm != self.truth_regs["rflags"] & fm:
            self.find(
                "generic", "flags", f"rflags {ours['rflags']:#x} != {self.truth_regs['rflags']:#x}", got, ours
            )
            return
        xdiff = [i for i, v in enumerate(t.xmm) if cpu.get_xmm(i) != v]
        if xdiff:
            self.find("generic", "register", f"xmm{xdiff[0]} differs", got, ours)
            return
        self.out("generic", "agree")

    # ------------------------------------------------------------------------------ C
    def c_decoder(self) -> None:
        c = self.chk.c
        try:
            d = c.decode_subset(self.case.code, self.case.mode)
        except Exception as exc:  # noqa: BLE001
            self.crash("c-subset-decoder", exc)
            return
        if d is None:
            self.out("c-subset-decoder", "declined")
            return
        got = {"length": d.length, "size": d.size, "kind": d.kind}
        if self.fault == "ud":
            self.find(
                "c-subset-decoder",
                "accepted-but-should-fault",
                f"subset decoder accepted bytes Unicorn treats as invalid ({self.truth.fault})",
                got,
            )
            return
        if self.ins.code != iced.Code.INVALID and d.length != self.ins.len:
            self.find(
                "c-subset-decoder", "length", f"subset length {d.length} != iced-x86 {self.ins.len}", got
            )
            return
        a = self.access
        if a is not None and d.kind not in ("movs", "stos") and d.size != a.size:
            self.find(
                "c-subset-decoder", "access-size", f"subset size {d.size} != generic decode {a.size}", got
            )
            return
        self.out("c-subset-decoder", "agree" if a is not None else "accepted")

    def _exit(self) -> ExitRecord | None:
        t = self.truth
        if not t.accesses:
            return None
        first = t.accesses[0]
        regs = self.case.reg_dict()
        values = tuple(self.case.rip if n == "rip" else regs.get(n, 0) for n in REG_NAMES)
        kind = ExitKind.MMIO_WRITE if first.write else ExitKind.MMIO_READ
        return ExitRecord(
            kind, self.case.rip, self.case.mode, first.gpa, self.case.code[:MAX_INSN_LEN], values
        )

    def _c_world_differs(self) -> bool:
        """True when the operands reach beyond the case's window into a device the C model has there.

        The C extension models the default board (notify and register devices side by side); the
        truth maps only the case's window. Where an operand crosses into the other device, the
        two worlds differ and neither side is wrong, so the C paths are not compared.
        """
        a = self.access
        if a is None:
            return True
        base, window = self.case.mmio
        get = self.case.reg_dict().get
        spans = []
        for mem in (a.mem, a.src_mem):
            if mem is not None:
                mem = _bt_moved(a, mem, get)
                ea = effective_address(mem, lambda n: get(n, 0), self.case.rip + a.length, self.case.mode)
                size = max(a.size, 1)
                count = get("rcx", 0) & ((1 << (8 * mem.addr_size)) - 1) if a.rep else 1
                if count > 1:  # REP: every element, down when DF is set (the truth stops at the edge)
                    if get("rflags", 0) & DF:
                        ea -= (count - 1) * size
                    size *= count
                spans.append((ea, size))
        spans += self._implicit_spans(a, get)
        # the C world has no unmapped physical addresses: whatever no device claims is an exit
        # too (reads all-ones, writes dropped), so a byte outside the window is a difference
        return any(not base <= addr < base + window for ea, n in spans for addr in (ea, ea + n - 1))

    def _implicit_spans(self, a: Access, get: Callable[[str, int], int]) -> list[tuple[int, int]]:
        """The operands besides `mem`: the stack slot of PUSH/POP/CALL/RET (and RBP's of LEAVE,
        ENTER's frame), MOVDIR64B's ES:[reg] (issue 14's stack and atomic families)."""
        mode, m = self.case.mode, (1 << self.case.mode) - 1
        width = 8 if mode == 64 else 4
        sp = get("rsp", 0) & m
        if a.op in (Op.PUSH, Op.CALL):
            return [((sp - width) & m, width)]
        if a.op in (Op.POP, Op.RET):
            return [(sp, width)]
        if a.op is Op.ENTER:
            return [((sp - 32 * width) & m, 32 * width), ((get("rbp", 0) - 32 * width) & m, 32 * width)]
        if a.op is Op.LEAVE:
            return [(get("rbp", 0) & m, width)]
        if a.op is Op.MOVDIR64B and a.reg2:
            dst = replace(a.mem, base=a.reg2, index=None, disp=0, segment=None, rip_relative=False)
            return [(effective_address(dst, lambda n: get(n, 0), self.case.rip + a.length, mode), 64)]
        return []

    def c_paths(self) -> None:
        rec = self._exit()
        if rec is None:
            return
        # unmapped in the truth, or RAM beyond the window there (an RMW then reads RAM bytes the C
        # world answers as an unclaimed device): the worlds differ either way
        if self._c_world_differs() and (self.fault == "unmapped" or self.access is not None):
            for path in ("c-subset", "c-capstone"):
                self.out(path, "skipped:c-world-differs")
            return
        c, ctx = self.chk.c, self.chk.ctx
        device = c_device_read(self.case)
        has_reads = any(not a.write for a in self.truth.accesses)
        values_known = device is not None or not has_reads
        paths = ["subset", "capstone"]
        if self.case.mmio[0] == NOTIFY_WINDOW.base and rec.kind is ExitKind.MMIO_WRITE:
            paths.append("pv-fast")
        for path in paths:
            oracle = f"c-{path}"
            if self.case.mmio[0] == REGS_WINDOW.base:
                ctx.set_regs_mem(bytes([self.case.read_value & 0xFF]) * REGS_WINDOW.size)
            try:
                res, regs_after = c.handle_one(rec, path, ctx)
            except Exception as exc:  # noqa: BLE001
                self.crash(oracle, exc)
                continue
            handled_by = res.path
            if path != "capstone" and handled_by != path:
                self.out(oracle, "declined")
                continue
            if res.status == "de" and path == "capstone":
                # #DE (DIV/IDIV) is a stop of the C path, as the generic path's GuestFault: it agrees
                # when Unicorn raised the divide error too (after the same divisor read); whether the
                # divide faults depends on the divisor, so only where the C device answers as Unicorn's
                if not values_known:
                    self.out(oracle, "skipped:c-world-differs")
                elif self.truth.fault == "cpu exception 0":
                    self.out(oracle, "agree")
                else:
                    self.find(oracle, "faulted-but-should-run", "C path raised #DE where Unicorn ran",
                              {"status": res.status})
                continue
            if not res.ok:
                if path == "capstone" and self._c_should_have_run(res.status):
                    self.find(oracle, "faulted-but-should-run",
                              f"C path refused ({res.status}) what Unicorn and the generic path run",
                              {"status": res.status})
                    continue
                self.out(oracle, f"status:{res.status}")
                continue
            self._compare_c(oracle, res, regs_after, values_known)

    def _c_should_have_run(self, status: str) -> bool:
        """The C capstone path covers the generic path's older forms (C_CAPSTONE_OPS): a refusal there,
        where the generic path agreed with Unicorn, is a finding -- except SSE (a record carries no
        XMM registers), "nomem" (no RAM for a REP string's later elements) and bytes shorter than the
        instruction (the generic path and Unicorn read the rest from RAM; a record has only the
        case's bytes)."""
        a = self.access
        return (
            ("generic", "agree") in self.outcomes
            and a is not None
            and a.op in C_CAPSTONE_OPS
            and a.length <= len(self.case.code)
            and status != "nomem"
        )

    def _generic_accesses_like(self, res: Any, values_known: bool) -> tuple[DeviceAccess, ...]:
        """The generic path's device accesses when they are provably the C path's (the same hash; when
        the C device answers otherwise than the case, the same count and first access), so a
        difference can be judged access by access (unicorn-movbe-hook-value, -movsxd-r16-...); else ()."""
        try:
            out = self.chk.generic(self._cpu(), self.case.rip, self.case.mode)
        except EmulationError:
            return ()
        acc = out.accesses
        if values_known:
            return acc if self.chk.c.access_hash(acc) == res.acc_hash else ()
        same = len(acc) == res.n_acc and bool(acc) and (acc[0].gpa, acc[0].size, acc[0].write) == (
            res.gpa, res.size, bool(res.write))
        return acc if same else ()

    def _compare_c(self, oracle: str, res: Any, regs_after: Mapping[str, int], values_known: bool) -> None:
        t = self.truth
        got = {
            "n_acc": res.n_acc,
            "first": {"gpa": hex(res.gpa), "size": res.size, "write": res.write, "value": hex(res.value)},
            "next_rip": hex(res.next_rip),
            "regs": {k: hex(v & self.wmask) for k, v in regs_after.items() if k in self.truth_regs},
        }
        if t.fault == "cpu exception 0" and not values_known:
            self.out(oracle, "skipped:c-world-differs")  # #DE on a divisor the C device does not answer
            return
        if t.fault is not None:
            ours_regs = {n: v & (self.wmask if n in GPR_NAMES else (1 << 64) - 1)
                         for n, v in regs_after.items() if n in self.truth_regs and n != "rip"}
            self.find(
                oracle,
                "accepted-but-should-fault",
                f"unicorn faulted ({t.fault}), C path {res.path} emulated",
                got,
                ours_regs,  # the explanations compare registers (oracle-fetch-fault-after-branch)
            )
            return
        a = self.access
        if a is not None and a.op in (Op.CMPS, Op.SCAS) and a.rep and not values_known:
            # how far REPE/REPNE runs depends on the values, which the C device answers otherwise
            self.out(oracle, "skipped:c-world-differs")
            return
        first = t.accesses[0]
        if res.gpa != first.gpa or res.write != first.write:
            # CMPS: hand over the truth with each pair's reads swapped when the C result proves to
            # be exactly that (explain.py unicorn-cmps-reads-rdi-first judges it)
            pairs = list(t.accesses)
            swapped = (tuple(pairs[i + 1 - 2 * (i % 2)] for i in range(len(pairs)))
                       if len(pairs) % 2 == 0 else ())
            same = bool(swapped) and a is not None and a.op is Op.CMPS and res.n_acc == len(swapped) and (
                res.gpa, res.size, res.write) == (swapped[0].gpa, swapped[0].size, swapped[0].write)
            if same and values_known:
                same = res.acc_hash == self.chk.c.access_hash(swapped)
            self.find(oracle, "address", "first device access differs", got,
                      ours_accesses=swapped if same else ())
            return
        if res.size != first.size or res.n_acc != len(t.accesses):
            # The C result names its first access and hashes all: when that proves they are the
            # truth's minus its first read, hand them over (unicorn re-reads for LOCK RMW, explain.py).
            rest = t.accesses[1:]
            same = bool(rest) and res.n_acc == len(rest) and (res.gpa, res.size, res.write) == (
                rest[0].gpa, rest[0].size, rest[0].write)
            if same and values_known:
                same = res.acc_hash == self.chk.c.access_hash(rest)
            ours_acc = rest if same else self._generic_accesses_like(res, values_known)
            self.find(oracle, "access-size", "device access size/count differs", got, ours_accesses=ours_acc)
            return
        if values_known and res.acc_hash != self.chk.c.access_hash(t.accesses):
            self.find(oracle, "value", "device access values differ", got,
                      ours_accesses=self._generic_accesses_like(res, values_known))
            return
        if res.next_rip != t.next_rip and (values_known or self.access is None or
                                           self.access.op not in (Op.JMP, Op.CALL, Op.RET)):
            # (a branch through memory goes where the read value says: only comparable when the C
            # device answers what the case's device does)
            self.find(oracle, "length", f"next rip {res.next_rip:#x} != {t.next_rip:#x}", got)
            return
        if values_known:
            diff = [
                n
                for n in GPR_NAMES
                if n in self.truth_regs and regs_after[n] & self.wmask != self.truth_regs[n]
            ]
            ours = {n: v & self.wmask for n, v in regs_after.items() if n in self.truth_regs}
            if diff:
                self.find(oracle, "register", f"registers differ: {', '.join(diff)}", got, ours)
                return
            fm = STATUS | DF
            if oracle == "c-capstone" and ours["rflags"] & fm != self.truth_regs["rflags"] & fm:
                why = f"rflags {ours['rflags']:#x} != {self.truth_regs['rflags']:#x}"
                self.find(oracle, "flags", why, got, ours)
                return
        self.out(oracle, "agree")

    # ------------------------------------------------------------------------------ fast path
    def fast(self) -> None:
        rec = self._exit()
        if rec is None or rec.kind is not ExitKind.MMIO_WRITE:
            return
        cpu = self._cpu()
        try:
            out = FastPath(windows=[self.case.mmio]).try_fast(rec, cpu)
        except Exception as exc:  # noqa: BLE001
            self.crash("fast", exc)
            return
        if out is None:
            self.out("fast", "declined")
            return
        t = self.truth
        got = {"accesses": _acc_json(out.accesses), "next_rip": hex(out.next_rip)}
        if t.fault is not None:
            self.find(
                "fast", "accepted-but-should-fault", f"unicorn faulted ({t.fault}), fast path accepted", got
            )
            return
        cls = _classify_accesses(t.accesses, out.accesses)
        if cls:
            self.find("fast", cls, "fast path accesses differ from the truth", got)
            return
        if out.next_rip != t.next_rip:
            self.find("fast", "length", f"next rip {out.next_rip:#x} != {t.next_rip:#x}", got)
            return
        start = self.case.reg_dict()
        diff = [
            n
            for n in GPR_NAMES
            if n in self.truth_regs and start.get(n, 0) & self.wmask != self.truth_regs[n]
        ]
        if diff:
            self.find(
                "fast", "register", f"instruction writes {', '.join(diff)}; the fast path wrote none", got
            )
            return
        self.out("fast", "agree")


def _bt_moved(a: Access, mem: MemOperand, get: Callable[[str, int], int]) -> MemOperand:
    """BT/BTS/BTR/BTC with a register bit offset address the operand moved by (signed offset >>
    log2(bits)) operands (emu/semantics/bit.py); the C-world check must look where they access
    (found by `exitlab fuzz --seed 8`: `0f b3 57 02` with EDX = 36 runs off the window)."""
    if a.op not in (Op.BT, Op.BTS, Op.BTR, Op.BTC) or a.imm is not None or a.reg not in SUBREGS:
        return mem
    full, shift, nbytes = SUBREGS[a.reg]
    bits = 8 * a.size
    off = (get(full, 0) >> shift) & ((1 << (8 * nbytes)) - 1)
    if off >> (bits - 1):
        off -= 1 << bits
    return replace(mem, disp=mem.disp + (off >> (bits.bit_length() - 1)) * a.size)
