"""Shrink a failing case while it still shows the same disagreement (same oracle and class).

Bytes first (fewest bytes: cut the tail past the instruction, then delete bytes one at a time
until nothing more can go), then registers (fewest nonzero registers: zero each, then the XMM
values, RFLAGS and the device answer). Greedy and deterministic; bounded by `budget` checks,
because each check runs Unicorn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from exitlab.tools.fuzz.case import Case
from exitlab.tools.fuzz.oracles import Checker, Finding


def still_fails(checker: Checker, finding: Finding) -> Callable[[Case], bool]:
    def pred(case: Case) -> bool:
        try:
            result = checker.check(case)
        except Exception:  # noqa: BLE001 - a variant that crashes the checker is not the same bug
            return False
        return any(
            f.oracle == finding.oracle and f.cls == finding.cls and f.explained is None
            for f in result.findings
        )

    return pred


def minimize(case: Case, pred: Callable[[Case], bool], budget: int = 300) -> Case:
    """The smallest case found that still satisfies `pred` (which `case` must satisfy)."""
    left = [budget]

    def attempt(candidate: Case) -> bool:
        if left[0] <= 0 or candidate == case:
            return False
        left[0] -= 1
        return pred(candidate)

    # 1. bytes: shortest prefix, then single-byte deletions to a fixpoint
    for n in range(1, len(case.code)):
        cand = replace(case, code=case.code[:n])
        if attempt(cand):
            case = cand
            break
    changed = True
    while changed and left[0] > 0:
        changed = False
        for i in range(len(case.code)):
            if len(case.code) <= 1:
                break
            cand = replace(case, code=case.code[:i] + case.code[i + 1 :])
            if attempt(cand):
                case, changed = cand, True
                break
    # 2. registers: zero each one; then the rest of the state
    for name, _ in case.regs:
        regs = dict(case.regs)
        if name == "rflags":
            regs[name] = 0x2
        else:
            regs.pop(name)
        cand = case.with_regs(regs)
        if attempt(cand):
            case = cand
    if case.xmm:
        cand = replace(case, xmm=())
        if attempt(cand):
            case = cand
    for i, _ in case.xmm:
        cand = replace(case, xmm=tuple(x for x in case.xmm if x[0] != i))
        if attempt(cand):
            case = cand
    for value in (0, 0xFFFFFFFFFFFFFFFF):
        if case.read_value != value:
            cand = replace(case, read_value=value)
            if attempt(cand):
                case = cand
                break
    return case
