"""Delta-debugging of a stream program that shows a disagreement (issue 11).

Deletes chunks of items (halving chunk sizes down to single items), then single lines of items that
are not atomic, then simplifies the budget: deleting instructions moves where a budget stops, so
every candidate is also tried without the budget and, at the end, the smallest budget that still
shows the same disagreement is searched. A candidate counts only if it assembles and the *same*
disagreement class (configuration + class) reappears; the final `hlt` item is never deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from exitlab.tools.fuzz.streams_gen import Item, Program

Predicate = Callable[[Program], bool]


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def minimize(program: Program, fails: Predicate, limit: int = 300) -> Program:
    """The smallest program found (within `limit` predicate calls) for which `fails` holds."""
    budget = _Budget(limit)

    def test(p: Program) -> bool:
        return budget.take() and fails(p)

    best = program
    if best.max_insns is not None:
        cand = replace(best, max_insns=None)
        if test(cand):
            best = cand
    best = _items(best, test, budget)
    best = _lines(best, test, budget)
    if best.max_insns is not None:
        best = _shrink_budget(best, test)
    return best


def _accept(cand: Program, test: Predicate, removed: int = 0) -> Program | None:
    """The candidate as is, with its budget lowered by the instructions deleted (right when they ran
    once before the stop), or without its budget (deleting instructions moved the stop)."""
    if test(cand):
        return cand
    if cand.max_insns is not None:
        if 0 < removed < cand.max_insns:
            shifted = replace(cand, max_insns=cand.max_insns - removed)
            if test(shifted):
                return shifted
        unbounded = replace(cand, max_insns=None)
        if test(unbounded):
            return unbounded
    return None


def _items(p: Program, test: Predicate, budget: _Budget) -> Program:
    chunk = max(1, (len(p.items) - 1) // 2)
    while chunk >= 1 and budget.left > 0:
        i = 0
        changed = False
        while i < len(p.items) - 1 and budget.left > 0:  # the last item (hlt) stays
            items = list(p.items)
            cut = items[i : min(i + chunk, len(items) - 1)]
            cand_items = items[:i] + items[min(i + chunk, len(items) - 1) :]
            removed = sum(len(it.lines) for it in cut if not any(ln.endswith(":") for ln in it.lines))
            got = _accept(p.with_items(cand_items), test, removed) if cut else None
            if got is not None:
                p = got
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return p


def _lines(p: Program, test: Predicate, budget: _Budget) -> Program:
    items = list(p.items)
    i = 0
    while i < len(items) - 1 and budget.left > 0:
        it = items[i]
        if "atomic" in it.tags or len(it.lines) < 2:
            i += 1
            continue
        j = 0
        lines = list(it.lines)
        while j < len(lines) and len(lines) > 1 and budget.left > 0:
            cand_lines = lines[:j] + lines[j + 1 :]
            cand = p.with_items(items[:i] + [Item(tuple(cand_lines), it.tags)] + items[i + 1 :])
            got = _accept(cand, test, 1)
            if got is not None:
                lines = cand_lines
                items[i] = Item(tuple(lines), it.tags)
                p = got
            else:
                j += 1
        i += 1
    return p.with_items(items)


def _shrink_budget(p: Program, test: Predicate) -> Program:
    assert p.max_insns is not None
    lo, hi = 1, p.max_insns  # hi fails
    while lo < hi:
        mid = (lo + hi) // 2
        if test(replace(p, max_insns=mid)):
            hi = mid
        else:
            lo = mid + 1
    return replace(p, max_insns=hi)
