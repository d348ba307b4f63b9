"""Cost of the run loop's guards (emu/machine.py): the LOCK/system-instruction guard (identity TLB
with W^X pages, Unicorn exits) and the instruction-budget hook, on the Python Unicorn engine.

The guard runs only on TLB misses and page transitions, so a guest that never writes its code pages
should cost the same with and without it; `no-guard` is the same machine with the guard left out.

Run: pytest bench/bench_guard.py --benchmark-enable --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.machine import Machine

LOOP = "mov ecx, 2000000\nl: add eax, ecx\ndec ecx\njnz l\nhlt\n"  # 6 M instructions, no exit
HYPERCALLS = "mov ecx, 5000\nl: mov eax, 5\nvmcall\ndec ecx\njnz l\nhlt\n"  # 5000 restarts
# data on the code page:
SELF_DATA = "mov ecx, 200000\nl: mov [rip + d], ecx\ndec ecx\njnz l\nhlt\nd: .long 0\n"


class NoGuard(Machine):
    """The machine without the guard: for comparison only (LOCK BT* reg would abort it)."""

    def _install_guard(self) -> None:
        return None


def _run(cls: type[Machine], src: str, max_insns: int | None = None) -> None:
    result = cls(assemble(src), board=default_board()).run(max_insns=max_insns, timeout=600)
    assert result.stop.reason.value == "hlt"


@pytest.mark.parametrize("cls", [Machine, NoGuard], ids=["guard", "no-guard"])
@pytest.mark.parametrize("name", ["loop", "hypercalls", "self-data"])
def test_guard_cost(benchmark, cls: type[Machine], name: str) -> None:
    benchmark.group = f"guard-{name}"
    src = {"loop": LOOP, "hypercalls": HYPERCALLS, "self-data": SELF_DATA}[name]
    benchmark.pedantic(_run, args=(cls, src), rounds=3, iterations=1)


@pytest.mark.parametrize("budget", [None, 10**9], ids=["no-budget", "budget"])
def test_budget_hook_cost(benchmark, budget: int | None) -> None:
    benchmark.group = "budget-hook"
    src = "mov ecx, 100000\nl: add eax, ecx\ndec ecx\njnz l\nhlt\n"
    benchmark.pedantic(_run, args=(Machine, src, budget), rounds=3, iterations=1)
