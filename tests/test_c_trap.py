"""The C engine's trap modes (live.h enum xl_trap; `exitlab bench --trap`): the same guest trapped
"mixed" (PIO in its hook, hypercalls stop the engine), "exit" (PIO stops the engine too) or "hook"
(hypercalls handled inside their hook, MMIO in place) must end in exactly the same state, and each
mode must trap the way it says (counted in uc_emu_start segments). No timing here: speed is in
bench/bench_trap.py."""

from __future__ import annotations

import functools

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.machine import Machine
from fastpath import cengine as c

# every port I/O kind, data in and out; the last OUT shares its translated block with a HLT that
# must stop the run (exit mode: Unicorn stops only after the block, the loop must see the HLT ran)
PIO = """
    mov dx, CONSOLE_PORT
    mov al, 'h'
    out dx, al
    add dx, 5
    in al, dx
    mov bl, al
    mov dx, NOTIFY_PORT
    mov ax, 2
    out dx, ax
    in ax, dx
    mov r9w, ax
    mov ecx, 5
1:  mov dx, NOTIFY_PORT
    mov ax, cx
    and ax, 3
    out dx, ax
    dec ecx
    jnz 1b
    mov dx, 0x80
    out dx, al
    inc r10d
    hlt
    inc r10d
    hlt
"""

# a jump right past a HLT after the OUT: the HLT is not run, the run goes on at the target
JUMP_OVER_HLT = """
    mov dx, 0x80
    out dx, al
    jmp 1f
    hlt
1:  inc r10d
    mov dx, 0x80
    out dx, al
    inc r10d
    jnz 2f
    hlt
2:  inc r10d
    hlt
"""

# a branch not taken ends the block before the HLT after it; string and imm8 port I/O
MORE_PIO = """
    mov dx, 0x80
    out dx, al
    cmp eax, eax
    jne 1f
    inc r10d
    hlt
1:  hlt
"""
STRING_PIO = """
    lea rsi, [rip + msg]
    mov dx, CONSOLE_PORT
    mov ecx, 5
    rep outsb
    in al, 0x80
    out 0x80, al
    mov r11d, ecx
    inc r10d
    hlt
msg: .ascii "hello"
"""

# hypercalls: a good MMIO write, an unknown number, a bad size, then the same MMIO write by pv MMIO
HYPERCALLS = """
    mov eax, HC_MMIO_WRITE
    mov rbx, NOTIFY_MMIO + 8
    mov ecx, 2
    mov edx, 2
    vmcall
    mov r9, rax
    mov eax, 0x7777
    vmcall
    mov r10, rax
    mov eax, HC_MMIO_WRITE
    mov ecx, 3
    vmcall
    mov r11, rax
    mov ecx, 6
    mov r12d, 1
    mov r8, NOTIFY_MMIO
1:  mov eax, HC_MMIO_WRITE
    lea rbx, [r8 + r12*4]
    mov edx, r12d
    push rcx
    mov ecx, 2
    vmmcall
    pop rcx
    dec ecx
    jnz 1b
    mov rdx, NOTIFY_MMIO + 12
    mov ax, 3
    mov word ptr [rdx], ax
    hlt
"""

REGS = ("rax", "rbx", "rcx", "rdx", "rsp", "r9", "r10", "r11", "r12", "rip", "rflags")
STYLE = {"mixed": "exit", "exit": "exit", "hook": "inplace"}


@functools.cache
def _image(src: str):  # noqa: ANN202 - a GuestImage
    return assemble(src, mode=64)


def _run(src: str, trap: str, path: str = "pv-fast", **kw) -> tuple[c.LiveResult, dict[str, int], c.CContext]:
    m = Machine(_image(src), board=default_board(), mmio_style=STYLE[trap])
    m.init_regs()
    ctx = c.CContext()
    res = c.run_live(m, path=path, style=STYLE[trap], ctx=ctx, start_rip=m.image.entry, trap=trap, **kw)
    regs = {r: int(m.regfile.get(r)) for r in REGS}
    return res, regs, ctx


def _same(a: tuple[c.LiveResult, dict[str, int], c.CContext], b: tuple[c.LiveResult, dict[str, int],
                                                                         c.CContext]) -> None:
    ra, ga, ca = a
    rb, gb, cb = b
    assert (ra.stop, ra.rip, ra.exits, ra.kind_counts) == (rb.stop, rb.rip, rb.exits, rb.kind_counts)
    assert ga == gb
    assert ca.state() == cb.state()


def test_pio_exit_mode_equals_mixed_and_stops_once_per_exit() -> None:
    mixed, ex = _run(PIO, "mixed"), _run(PIO, "exit")
    _same(mixed, ex)
    res, regs, ctx = ex
    assert res.stop == "hlt" and regs["r10"] == 1  # the HLT in the OUT's block ended the run
    assert ctx.console == b"h" and ctx.kicks == {0: 1, 1: 2, 2: 2, 3: 1}
    assert mixed[0].segments == 1  # mixed: every PIO exit in its hook, one uc_emu_start
    # exit: a stop and restart per translated block with port I/O (Unicorn stops between blocks, so
    # the 5 PIO exits of the first block share one): 1 + 4 loop iterations + the block with the HLT
    assert res.pio_exits == 10 and res.segments == 6


def test_pio_exit_mode_a_branch_past_a_hlt_is_not_a_halt() -> None:
    mixed, ex = _run(JUMP_OVER_HLT, "mixed"), _run(JUMP_OVER_HLT, "exit")
    _same(mixed, ex)
    assert ex[0].stop == "hlt" and ex[1]["r10"] == 3 and ex[0].segments == 3


@pytest.mark.parametrize("src", [MORE_PIO, STRING_PIO], ids=["branch-not-taken", "string-imm8"])
def test_pio_guests_end_alike_in_every_mode(src: str) -> None:
    runs = [_run(src, t) for t in ("mixed", "exit", "hook")]
    for other in runs[1:]:
        _same(runs[0], other)
    assert runs[0][0].stop == "hlt" and runs[0][1]["r10"] == 1


def test_hypercall_hook_mode_equals_exit_style() -> None:
    mixed, hook, ex = _run(HYPERCALLS, "mixed"), _run(HYPERCALLS, "hook"), _run(HYPERCALLS, "exit")
    _same(mixed, hook)
    _same(mixed, ex)
    res, regs, ctx = hook
    assert res.stop == "hlt" and res.hypercalls == 9 and res.mmio_exits == 1
    assert regs["r9"] == 0 and regs["r10"] == 2**64 - 1000 and regs["r11"] == 2**64 - 22
    assert ctx.kicks == {1: 6, 2: 1, 3: 1}
    assert mixed[0].segments == 11  # 9 hypercalls + 1 MMIO exit, each a stop and restart
    assert res.segments == 1  # hook: nothing left uc_emu_start


@pytest.mark.parametrize("budget", range(1, 48, 2))
def test_budget_stops_at_the_same_instruction_in_every_mode(budget: int) -> None:
    """With the budget's code hook installed, a PIO stop lands right after the IN/OUT, after the hook
    has counted the next instruction: counted once, the budget ends where the mixed run's does."""
    runs = [_run(HYPERCALLS, t, max_insns=budget) for t in ("mixed", "exit", "hook")]
    assert runs[0][0].stop == "budget"
    for other in runs[1:]:
        _same(runs[0], other)
    runs = [_run(PIO, t, max_insns=budget) for t in ("mixed", "exit", "hook")]
    for other in runs[1:]:
        _same(runs[0], other)


def test_unknown_trap_mode_is_refused() -> None:
    m = Machine(assemble("hlt", mode=64), board=default_board(), mmio_style="exit")
    m.init_regs()
    with pytest.raises(ValueError, match="trap must be one of mixed, exit, hook"):
        c.run_live(m, path="pv-fast", trap="sometimes")
