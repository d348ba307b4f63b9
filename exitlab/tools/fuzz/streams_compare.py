"""Compare every configuration's Outcome with the independent reference, field by field.

Per program and configuration the verdict is one of:
- `agree`: every compared field equals the reference's;
- `decline`: the configuration stopped with `emulation_error` at an instruction the reference
  executed (and did not fault on), and its whole state (registers, devices, console, RAM) equals the
  reference's state just before one execution of that instruction: a clean refusal (SEMANTICS
  rule 5), not a failure. An `emulation_error` where the reference faults (`unmapped` ...) is a
  disagreement (`unmapped->emulation_error`): the architecture gives a fault there, not a refusal;
- `n/a`: the comparison does not apply (wildcard paths on a program whose notify-window accesses
  are not all plain stores; KVM on a program with a budget or a hypercall; see docs);
- `disagree`: anything else. Its *class* is the configuration, the stop transition and the groups
  of fields that differ; `tier` says how the in-place Python path stands (3-way reporting):
  `ref!=path` (in place agrees with the reference), `ref!=path=inplace` (in place is wrong the
  same way), `ref!=path!=inplace`, and `ref!=inplace` for the in-place path itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from emu.assemble import GuestImage
from emu.platform import NOTIFY_MMIO
from exitlab.tools.fuzz.streams_gen import Program
from exitlab.tools.fuzz.streams_ref import Reference, reference
from exitlab.tools.fuzz.streams_run import KVM_CONFIG, WILDCARD, Outcome, Runner, norm_kicks

MAX_DECLINE_ARRIVALS = 64
FAULTS = ("unmapped", "invalid_insn", "triple_fault")
INPLACE = "py-inplace"


@dataclass(frozen=True, slots=True)
class Verdict:
    config: str
    kind: str  # agree, decline, n/a, disagree
    cls: str = ""  # disagreement class (without the tier)
    tier: str = ""
    diff: tuple[tuple[str, Any, Any], ...] = ()  # (field, reference, configuration)

    @property
    def signature(self) -> str:
        return f"{self.config}|{self.cls}"


@dataclass
class ProgramResult:
    program: Program
    reference: Outcome
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    error: str = ""  # the program did not assemble (generator bug) or the reference failed


def _group(name: str) -> str:
    if name == "reg.rflags":
        return "flags"
    if name.startswith("reg."):
        return "regs"
    if name.startswith("xmm"):
        return "xmm"
    if name.startswith("dev.notify"):
        return "notify"
    if name in ("dev.regs.reads", "dev.regs.writes"):
        return "regs-dev-count"
    return name


def diff_fields(ref: Outcome, got: Outcome, skip_stop: bool = False) -> list[tuple[str, Any, Any]]:
    a, b = ref.fields(), got.fields()
    out = []
    for k, v in a.items():
        if k not in b:  # e.g. XMM on KVM
            continue
        if skip_stop and k == "stop":
            continue
        if b[k] != v:
            out.append((k, v, b[k]))
    return out


def classify(ref: Outcome, got: Outcome, diff: list[tuple[str, Any, Any]]) -> str:
    groups = sorted({_group(k) for k, _, _ in diff if k != "stop"})
    stop = (
        f"{ref.stop}->{got.stop}"
        if ref.stop != got.stop
        else (f"{ref.stop}@rip" if ref.rip != got.rip else ref.stop)
    )
    return stop + (":" + ",".join(groups) if groups else "")


def wildcard_expected(ref: Outcome, refrun: Reference) -> Outcome:
    """What an address-only notify path must show: every MMIO-instruction write into the notify
    window is a kick of the queue registered at its offset (4*q), or unmatched; no data."""
    kicks: dict[int, int] = dict(refrun.board.notify.kicks)
    unmatched = ref.devices.get("notify.unmatched", 0)
    for source, write, gpa, _size, value in refrun.log:
        if source != "mmio" or not write or not (NOTIFY_MMIO <= gpa < NOTIFY_MMIO + 0x1000):
            continue
        kicks[value] = kicks.get(value, 0) - 1  # the data-carrying kick the reference counted
        off = gpa - NOTIFY_MMIO
        if off % 4 == 0 and off // 4 < 16:
            kicks[off // 4] = kicks.get(off // 4, 0) + 1
        else:
            unmatched += 1
    devices = dict(ref.devices)
    devices["notify.kicks"] = norm_kicks({q: n for q, n in kicks.items() if n})
    devices["notify.unmatched"] = unmatched
    return replace(ref, devices=devices)


def applies(config: str, program: Program) -> bool:
    if config in WILDCARD and not program.wildcard_ok:
        return False
    if config == KVM_CONFIG:
        has_hc = any(ln.split("#")[0].strip() in ("vmcall", "vmmcall") for ln in program.lines)
        return program.max_insns is None and not has_hc
    return True


class Comparator:
    """Runs the reference and the configurations of one program and gives verdicts."""

    def __init__(self, runners: dict[str, Runner], aliases: dict[str, str] | None = None) -> None:
        self.runners = runners
        self.aliases = aliases or {}  # config -> an earlier config that runs exactly the same thing
        self._at: dict[tuple[int, int, bool], Outcome] = {}  # (rip, n, wildcard) -> reference state

    def check(
        self, program: Program, image: GuestImage, configs: tuple[str, ...] | None = None
    ) -> ProgramResult:
        ref, refrun = reference(image, program.max_insns)
        self._at = {}
        result = ProgramResult(program, ref)
        names = configs or tuple(self.runners)
        for name in names:
            if not applies(name, program):
                result.verdicts[name] = Verdict(name, "n/a")
                continue
            same = self.aliases.get(name)
            if same is not None and same in result.outcomes:
                got: Outcome | None = replace(result.outcomes[same], config=name)
                result.outcomes[name] = got  # type: ignore[assignment]
                result.verdicts[name] = replace(result.verdicts[same], config=name)
                continue
            try:
                got = self.runners[name](image, program.max_insns)
            except Exception as exc:  # noqa: BLE001 - a crash of a path is a disagreement
                got = Outcome(name, "exception", 0, f"{type(exc).__name__}: {exc}")
            if got is None:
                result.verdicts[name] = Verdict(name, "n/a")
                continue
            if got.stop == "interrupted":
                # the engine's SIGINT watchdog turned Ctrl-C into a stop reason (SEMANTICS rule 10):
                # the user wants the campaign to end, not a disagreement
                raise KeyboardInterrupt
            result.outcomes[name] = got
            expected = wildcard_expected(ref, refrun) if name in WILDCARD else ref
            result.verdicts[name] = self.verdict(name, image, program, expected, got)
        self._tiers(result)
        return result

    def verdict(self, name: str, image: GuestImage, program: Program, ref: Outcome, got: Outcome) -> Verdict:
        diff = diff_fields(ref, got)
        if not diff:
            return Verdict(name, "agree")
        if got.stop == "emulation_error" and ref.stop in FAULTS and ref.rip == got.rip:
            # the instruction faults architecturally (e.g. runs off the window): the right answer is
            # the fault, not a refusal, even when the state is the same
            return Verdict(name, "disagree", classify(ref, got, diff), diff=tuple(diff))
        if got.stop == "emulation_error" and ref.stop != "emulation_error":
            why = self._decline(image, program, got, wildcard=name in WILDCARD)
            if why is None:
                return Verdict(name, "decline")
            groups = sorted({_group(k) for k, _, _ in why[1] if k != "stop"})
            return Verdict(name, "disagree", f"bad-decline-{why[0]}:" + ",".join(groups), diff=tuple(why[1]))
        return Verdict(name, "disagree", classify(ref, got, diff), diff=tuple(diff))

    def _decline(
        self, image: GuestImage, program: Program, got: Outcome, wildcard: bool = False
    ) -> tuple[str, list[Any]] | None:
        """None when the decline is clean; else (reason, the closest state difference)."""
        best: list[Any] | None = None
        for n in range(1, MAX_DECLINE_ARRIVALS + 1):
            key = (got.rip, n, wildcard)
            at = self._at.get(key)
            if at is None:
                at, run = reference(image, program.max_insns, stop_at=(got.rip, n))
                if wildcard:
                    at = wildcard_expected(at, run)
                self._at[key] = at
            if at.stop != "stop_at":
                break
            diff = diff_fields(at, got, skip_stop=True)
            if not diff:
                return None
            if best is None or len(diff) < len(best):
                best = diff
        if best is None:
            return "not-reached", [("stop", "(reference never executes this rip)", (got.stop, got.rip))]
        return "state", best

    @staticmethod
    def _tiers(result: ProgramResult) -> None:
        inplace = result.outcomes.get(INPLACE)
        inplace_ok = result.verdicts.get(INPLACE, Verdict(INPLACE, "n/a")).kind in ("agree", "n/a")
        for name, v in list(result.verdicts.items()):
            if v.kind != "disagree":
                continue
            if name == INPLACE:
                tier = "ref!=inplace"
            elif inplace_ok or inplace is None:
                tier = "ref!=path"
            else:
                got = result.outcomes[name]
                same = not diff_fields(inplace, got)
                tier = "ref!=path=inplace" if same else "ref!=path!=inplace"
            result.verdicts[name] = replace(v, tier=tier)
