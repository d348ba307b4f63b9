"""The exit model of the Python engine (SEMANTICS.md rules 1-3, 9, 12): each test runs the minimal
guest of one class of issue 11 / issue 13 on every Python path and checks the observable result."""

from __future__ import annotations

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.generic import GenericPath
from emu.machine import StopReason
from fastpath.fast import FastPath
from fastpath.hostpaths import WildcardPath
from fastpath.validate import validate
from tests.helpers import run_asm

STYLES = ["inplace", "generic", "fast", "wildcard"]


def run_on(style: str, src: str, **kw: object):  # type: ignore[no-untyped-def]
    """Run `src` on one Python configuration; returns (result, machine, board)."""
    board = default_board()
    path = {
        "inplace": None,
        "generic": GenericPath(),
        "fast": FastPath(),
        "wildcard": WildcardPath(board.bus),
    }[style]
    result, machine = run_asm(
        src, style="inplace" if style == "inplace" else "exit", path=path, board=board, **kw  # type: ignore[arg-type]
    )
    return result, machine, board


def kicks(board) -> int:  # type: ignore[no-untyped-def]
    return sum(board.notify.state()["kicks"].values())


# -- rule 3: every exit after a hypercall reports its own RIP (rows 0, 8, 9) ------------------------


@pytest.mark.parametrize("style", STYLES)
def test_mmio_exit_after_hypercall_is_handled_at_its_own_rip(style: str) -> None:
    """Row 0: the exit after a vmcall was reported at the stale RIP behind the vmcall."""
    src = """
        mov eax, HC_MMIO_WRITE
        mov rbx, NOTIFY_MMIO
        mov ecx, 2
        mov edx, 9
        vmcall
        mov r14, REGS_MMIO
        mov dword ptr [r14+8], 0xdeadbeef
        hlt
    """
    result, _, board = run_on(style, src)
    assert result.stop.reason is StopReason.HLT
    assert [r.rip for r in result.records] == [0x8019, 0x8026]
    assert board.regs.state()["writes"] == 1


@pytest.mark.parametrize("style", STYLES)
def test_trace_rips_after_vmcall(style: str) -> None:
    """Row 8: the MMIO write and the OUT after a vmcall carry their own RIPs."""
    src = """
        mov eax, 5
        vmcall
        mov r14, REGS_MMIO
        nop
        nop
        mov dword ptr [r14+8], 1
        mov dx, CONSOLE_PORT
        mov al, 0x41
        out dx, al
        hlt
    """
    result, _, _ = run_on(style, src)
    assert result.stop.reason is StopReason.HLT
    assert [(r.kind.value, r.rip) for r in result.records] == [
        ("hypercall", 0x8005),
        ("mmio_write", 0x8014),
        ("pio_out", 0x8022),
    ]


def test_validate_passes_a_conforming_guest_with_a_vmcall_before_its_notify() -> None:
    src = """
        mov eax, 5
        vmcall
        mov rdx, NOTIFY_MMIO
        mov ax, 7
        mov word ptr [rdx], ax
        hlt
    """
    report = validate(assemble(src))
    assert report.passed(), report.violations


@pytest.mark.parametrize("style", STYLES)
def test_store_after_vmmcall_happens_once(style: str) -> None:
    """Row 9: wildcard resumed at the stale RIP and repeated the store (2 kicks)."""
    src = """
        vmmcall
        mov ebx, 11
        mov r8, 0xfeb00065
        mov esi, 13
        movnti dword ptr [r8+rsi*4-0x6d], ebx
        hlt
    """
    result, _, board = run_on(style, src)
    assert result.stop.reason is StopReason.HLT
    assert kicks(board) == 1
    assert [r.rip for r in result.records] == [0x8000, 0x8017]


# -- rule 4: one guest access = one device access, misaligned reads (row 1) -------------------------


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    ("offset", "width", "expected"),
    [
        (0xB, "dword", 0x77665544),
        (0x9, "qword", 0x8877665544332211 >> 8 | 0x99 << 56),
        (0xF, "word", 0x0088 | 0x99 << 8),
    ],
)
def test_misaligned_mmio_read_returns_the_right_bytes(
    style: str, offset: int, width: str, expected: int
) -> None:
    reg = {"dword": "eax", "qword": "rax", "word": "ax"}[width]
    src = f"""
        mov r14, REGS_MMIO
        mov dword ptr [r14+8], 0x44332211
        mov dword ptr [r14+0xc], 0x88776655
        mov byte ptr [r14+0x10], 0x99
        xor eax, eax
        mov {reg}, {width} ptr [r14+{offset:#x}]
        hlt
    """
    result, _, board = run_on(style, src)
    assert result.stop.reason is StopReason.HLT
    assert result.regs["rax"] == expected
    assert board.regs.state()["reads"] == 1


# -- rule 1: one budget (rows 6, 7, W2) ------------------------------------------------------------

REP_STOS = """
    mov rdi, REGS_MMIO+0x20
    mov eax, 0x41
    mov ecx, 3
    cld
    rep stosb
    nop
    nop
    nop
    hlt
"""


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    ("budget", "reason", "rip", "rcx", "writes"),
    [
        (4, "budget", 0x8015, 3, 0),
        (5, "budget", 0x8015, 2, 1),
        (6, "budget", 0x8015, 1, 2),
        (7, "budget", 0x8015, 0, 3),  # QEMU re-enters the REP once more to see RCX = 0
        (8, "budget", 0x8017, 0, 3),
        (11, "budget", 0x801A, 0, 3),
        (12, "hlt", 0x801A, 0, 3),  # the HLT counts and executes within the budget
    ],
)
def test_budget_counts_rep_iterations_the_same_on_every_path(
    style: str, budget: int, reason: str, rip: int, rcx: int, writes: int
) -> None:
    result, _, board = run_on(style, REP_STOS, max_insns=budget)
    assert (result.stop.reason.value, result.stop.rip, result.regs["rcx"]) == (reason, rip, rcx)
    assert board.regs.state()["writes"] == writes


@pytest.mark.parametrize("style", STYLES)
def test_budget_never_restarts_at_a_hypercall(style: str) -> None:
    src = """
        mov r8d, 100
    1:  mov eax, 5
        vmcall
        dec r8d
        jnz 1b
        hlt
    """
    result, _, _ = run_on(style, src, max_insns=50)
    assert result.stop.reason is StopReason.BUDGET
    assert result.exits["hypercall"] == 12  # the k-th vmcall is instruction 4k-1: k <= 12 fit in 50


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("op", ["adc", "sbb"])
def test_flags_at_an_exit_survive_the_budget_hook(style: str, op: str) -> None:
    """Row 7: with the budget's code hook installed, CF was lost at a fault right after CMP."""
    src = f"""
        mov r14, REGS_MMIO
        mov r15, 0x100000
        mov esi, 0xeef4
        cmp word ptr [r15], si
        {op} dword ptr [r14+0x10], 0
        mov eax, [r14+0x10]
        hlt
    """
    result, _, _ = run_on(style, src, max_insns=100)
    assert result.stop.reason is StopReason.HLT
    assert result.regs["rax"] == (1 if op == "adc" else 0xFFFFFFFF)


@pytest.mark.parametrize("style", STYLES)
def test_flags_survive_a_hypercall_after_cmp_under_a_budget(style: str) -> None:
    src = """
        mov esi, 0xeef4
        xor eax, eax
        cmp ax, si
        mov eax, 5
        vmcall
        mov eax, 0
        adc eax, 0
        hlt
    """
    result, _, _ = run_on(style, src, max_insns=100)
    assert result.stop.reason is StopReason.HLT
    assert result.regs["rax"] == 1


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("budget", [1, 2, 3])
def test_hlt_is_not_detected_from_the_byte_before_rip(style: str, budget: int) -> None:
    """W2: `mov al, 0xf4` ends with an F4 byte; only a HLT instruction is a hlt stop."""
    result, _, _ = run_on(style, "l: mov al, 0xf4\njmp l\n", max_insns=budget)
    assert result.stop.reason is StopReason.BUDGET
    assert result.stop.rip == (0x8002 if budget % 2 else 0x8000)


@pytest.mark.parametrize("style", STYLES)
def test_hlt_rip_is_the_hlt_instruction(style: str) -> None:
    result, _, _ = run_on(style, "mov al, 0xf4\nnop\nhlt\n")
    assert (result.stop.reason, result.stop.rip) == (StopReason.HLT, 0x8003)


@pytest.mark.parametrize("bad", [0, -1, 1 << 63, 2**64, 1.5, True])
def test_budget_range_is_asserted(bad: object) -> None:
    from emu.errors import ExitlabError

    with pytest.raises(ExitlabError):
        run_asm("hlt", max_insns=bad)  # type: ignore[arg-type]


# -- rule 9: LOCK #UD (C1, W10) --------------------------------------------------------------------

LOCK_UD = [
    "f0 0f ab c8",  # lock bts eax, ecx: aborted the process in Unicorn 2.1.4
    "f0 0f b3 c8",  # lock btr
    "f0 0f bb c8",  # lock btc
    "f0 0f a3 c8",  # lock bt (never lockable)
    "f0 0f ba e8 01",  # lock bts eax, 1
    "66 f0 0f ab c8",
    "48 f0 0f ab c8",
    "f0 0f c1 c0",  # lock xadd eax, eax: ran as a plain xadd
    "f0 87 c0",  # lock xchg eax, eax
    "f0 30 c0",  # lock xor al, al
    "f0 8b 00",  # lock mov eax, [rax]
    "f0 0f a3 08",  # lock bt [rax], ecx (BT is never lockable)
]


@pytest.mark.parametrize("style", ["inplace", "generic"])
@pytest.mark.parametrize("insn", LOCK_UD)
def test_lock_ud_stops_invalid_insn(style: str, insn: str) -> None:
    code = ",".join(f"0x{b}" for b in insn.split())
    result, _, _ = run_on(style, f"mov eax, 5\nnop\n.byte {code}\nhlt\n", max_insns=None)
    assert result.stop.reason is StopReason.INVALID_INSN
    assert result.stop.rip == 0x8006
    assert result.stop.insn.startswith(bytes.fromhex(insn))
    assert result.regs["rax"] == 5


@pytest.mark.parametrize("insn", ["f0 0f ab 08", "f0 0f c1 08", "f0 87 08", "f0 83 00 01", "f0 ff 00"])
def test_lockable_memory_forms_still_run(insn: str) -> None:
    code = ",".join(f"0x{b}" for b in insn.split())
    result, _, _ = run_on("inplace", f"mov rax, 0x100000\nxor ecx, ecx\n.byte {code}\nhlt\n")
    assert result.stop.reason is StopReason.HLT


@pytest.mark.parametrize("style", ["inplace", "generic"])
def test_lock_ud_written_at_run_time_is_caught(style: str) -> None:
    """The instruction is stored over a NOP on a page that already ran (self-modifying code)."""
    src = """
        lea rdi, [rip + target]
        mov ecx, 3
    again:
        dec ecx
        jz patch
        jmp target
    patch:
        mov dword ptr [rdi], 0xc8ab0ff0
    target:
        nop
        nop
        nop
        nop
        test ecx, ecx
        jnz again
        hlt
    """
    result, machine, _ = run_on(style, src)
    assert result.stop.reason is StopReason.INVALID_INSN
    assert machine.read_ram(result.stop.rip, 4) == bytes.fromhex("f0 0f ab c8")
    assert result.stop.insn.startswith(bytes.fromhex("f0 0f ab c8"))


def test_lock_ud_written_by_a_path_into_ram_is_caught() -> None:
    """A path's RAM store (MMIO -> RAM MOVS) bypasses Unicorn; the code page must still be rescanned."""
    src = """
        mov r14, REGS_MMIO
        mov dword ptr [r14+0x40], 0xc8ab0ff0
        lea rdi, [rip + target]
        mov ecx, 2
    again:
        dec ecx
        jz patch
        jmp target
    patch:
        lea rsi, [r14+0x40]
        movsd
    target:
        nop
        nop
        nop
        nop
        test ecx, ecx
        jnz again
        hlt
    """
    result, _, _ = run_on("generic", src)
    assert result.stop.reason is StopReason.INVALID_INSN
    assert result.stop.insn.startswith(bytes.fromhex("f0 0f ab c8"))


def test_guard_exit_over_rewritten_bytes_is_dropped() -> None:
    """A LOCK #UD overwritten by valid code before it runs: the stale exit must not stop the guest."""
    src = """
        lea rdi, [rip + target]
        mov dword ptr [rdi], 0x90909090
        jmp target
    target:
        .byte 0xf0, 0x0f, 0xab, 0xc8
        mov eax, 7
        hlt
    """
    result, _, _ = run_on("inplace", src)
    assert result.stop.reason is StopReason.HLT
    assert result.regs["rax"] == 7


# -- rule 12: the taxonomy --------------------------------------------------------------------------


def test_stop_taxonomy_is_the_shared_one() -> None:
    assert {r.value for r in StopReason} == {
        "hlt", "budget", "timeout", "interrupted", "unmapped", "invalid_insn", "triple_fault",
        "emulation_error", "device_error",
    }
