"""The exit model of the Python engine (SEMANTICS.md rules 1-3, 9, 12): each test runs the minimal
guest of one class of issue 11 / issue 13 on every Python path and checks the observable result."""

from __future__ import annotations

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.generic import GenericPath
from emu.machine import StopReason
from exitlab.tools.validate import validate
from fastpath.fast import FastPath
from fastpath.hostpaths import WildcardPath
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
        src,
        style="inplace" if style == "inplace" else "exit",
        path=path,
        board=board,
        **kw,  # type: ignore[arg-type]
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
    "f0 86 c8",  # lock xchg al, cl
    "f0 0f c0 c8",  # lock xadd al, cl
    "f0 01 c8",  # lock add eax, ecx: Unicorn's own #UD
    "f0 ff c0",  # lock inc eax: Unicorn's own #UD
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


def test_stray_lock_byte_in_hot_code_makes_no_guard_site() -> None:
    """A guard site inside translated code costs a retranslation at every engine stop; `jnz -16`
    (75 F0) followed by HLT is LOCK HLT when read from the F0, but no instruction starts there."""
    loop = "l: mov word ptr [rdx], ax\n" + "nop\n" * 9 + "dec ecx\njnz l\nhlt\n"
    src = "mov rdx, NOTIFY_MMIO\nmov ecx, 50\n" + loop
    result, machine, board = run_on("fast", src)
    assert machine.read_ram(machine.image.entry + 0x1D, 3) == bytes.fromhex("75 f0 f4")
    assert result.stop.reason is StopReason.HLT
    assert kicks(board) == 50
    assert machine.guard.exits == set()


def test_smc_store_counts_once_under_a_budget() -> None:
    """QEMU re-runs a store that invalidates its own translated block; that is one instruction."""
    src = """
        lea rdi, [rip + t]
        mov dword ptr [rdi], 0xc8ab0ff0
    t:
        nop
        nop
        nop
        nop
        hlt
    """
    result, _, _ = run_on("inplace", src, max_insns=3)
    assert result.stop.reason is StopReason.INVALID_INSN


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
        "hlt",
        "budget",
        "timeout",
        "interrupted",
        "unmapped",
        "invalid_insn",
        "triple_fault",
        "emulation_error",
        "device_error",
    }


# -- rule 9: system instructions Unicorn runs as no-ops (W10) --------------------------------------

SYSTEM_FAULTS = [
    ("syscall", "#UD"),
    ("sysenter", "#GP"),
    ("mov ecx, 0x12345678\nwrmsr", "#GP"),
    ("mov rax, cr0\nand eax, 0x7fffffff\nmov cr0, rax", "#GP"),
    ("mov rax, cr0\nand eax, 0xfffffffe\nmov cr0, rax", "#GP"),
    ("xor eax, eax\nltr ax", "#GP"),
]


@pytest.mark.parametrize("style", ["inplace", "generic"])
@pytest.mark.parametrize(("src", "vector"), SYSTEM_FAULTS)
def test_system_instruction_faults_like_the_platform(style: str, src: str, vector: str) -> None:
    result, machine, _ = run_on(style, f"{src}\nmov ebx, 0x77\nhlt\n")
    assert result.stop.reason is StopReason.TRIPLE_FAULT
    assert result.stop.message.startswith(vector)
    assert result.regs["rbx"] == 0  # nothing after it ran
    assert machine.read_ram(result.stop.rip, 1) in (b"\x0f", b"\x66", b"\x48")


@pytest.mark.parametrize(
    "src",
    [
        "mov rax, cr0\nmov cr0, rax",
        "mov ecx, 0xc0000080\nrdmsr\nwrmsr",
        "mov ecx, 0xc0000100\nmov eax, 0x1000\nxor edx, edx\nwrmsr\nmov ebx, fs:[0]",
    ],
)
def test_allowed_system_instructions_still_run(src: str) -> None:
    result, _, _ = run_on("inplace", f"{src}\nmov ebx, 0x77\nhlt\n", max_insns=100)
    assert result.stop.reason is StopReason.HLT, result.stop.message
    assert result.regs["rbx"] == 0x77


def test_unsupported_system_instruction_is_a_clear_error() -> None:
    src = "mov ecx, 0xc0000080\nrdmsr\nor eax, 1\nwrmsr\nsyscall\nhlt\n"
    result, _, _ = run_on("inplace", src)
    assert result.stop.reason is StopReason.EMULATION_ERROR
    assert "unsupported by the engine" in result.stop.message


# -- in place: rule 6 (window end), rule 4 (device boundary), INS's dummy store -----------------------


@pytest.mark.parametrize(
    "src",
    [
        "mov r11, 0xfeb01fff\nmov dword ptr [r11], esi\nhlt",
        "mov r11, 0xfeb01ffe\nmov eax, dword ptr [r11]\nhlt",
        "mov rdi, 0xfeb01ffd\nmov ecx, 5\ncld\nrep stosd\nhlt",
    ],
)
def test_inplace_access_off_the_window_end_reaches_no_device(src: str) -> None:
    result, _, board = run_on("inplace", src)
    assert result.stop.reason is StopReason.UNMAPPED
    assert "0xfeb02000" in result.stop.message
    assert board.regs.state()["reads"] == 0
    assert board.regs.state()["writes"] == 0
    assert result.records == []


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("offset", [0xFEE, 0xFF0])
def test_wide_store_near_the_window_end_reaches_the_device_whole(style: str, offset: int) -> None:
    """issue 11: in place, the high half of a 16-byte store that ends inside the window but starts
    less than 32 bytes before its end was taken for the low half of an access leaving the window
    and dropped: one 8-byte device write instead of two, bytes +8..+15 never written."""
    src = f"pcmpeqb xmm2, xmm2\nmovups xmmword ptr [REGS_MMIO+{offset:#x}], xmm2\nhlt"
    result, _, board = run_on(style, src, mode=32)
    assert result.stop.reason is StopReason.HLT
    assert board.regs.state()["writes"] == 2
    assert bytes(board.regs.mem[offset : offset + 16]) == b"\xff" * 16


def test_inplace_rep_stops_at_the_element_that_leaves_the_window() -> None:
    result, _, board = run_on("inplace", "mov rdi, 0xfeb01ff8\nmov ecx, 4\ncld\nrep stosd\nhlt")
    assert result.stop.reason is StopReason.UNMAPPED
    assert (result.regs["rcx"], result.regs["rdi"]) == (2, 0xFEB02000)
    assert board.regs.state()["writes"] == 2


def test_inplace_access_across_two_devices_is_split_per_device() -> None:
    result, _, board = run_on(
        "inplace", "mov rsi, 0xfeb00fff\nlodsd\nmov rdi, 0xfeb00ffe\nmov qword ptr [rdi], rdi\nhlt"
    )
    assert result.stop.reason is StopReason.HLT
    assert result.regs["rax"] == 0x69786500  # 3 bytes of the register device's ID after 1 notify byte
    assert [(r.kind.value, r.addr, r.truth_size) for r in result.records] == [
        ("mmio_read", 0xFEB00FFF, 1),
        ("mmio_read", 0xFEB01000, 3),
        ("mmio_write", 0xFEB00FFE, 2),
        ("mmio_write", 0xFEB01000, 6),
    ]


def test_inplace_ins_dummy_store_is_not_a_device_write() -> None:
    result, _, board = run_on(
        "inplace", "mov rdi, 0xfeb0100b\nmov ecx, 3\nmov dx, CONSOLE_PORT+5\ncld\nrep insb\nhlt"
    )
    assert result.stop.reason is StopReason.HLT
    assert board.regs.state()["writes"] == 3
    assert [r.kind.value for r in result.records] == ["pio_in", "mmio_write"] * 3


def test_path_errors_map_to_the_taxonomy() -> None:
    """The generic path signals rule 6 and architectural faults by EmulationError subclasses with
    `.gpa` / `.vector`; the dispatcher (emu/dispatch.py) turns them into `unmapped`, `invalid_insn`,
    `triple_fault`."""
    from emu.dispatch import error_stop as _path_error_stop
    from emu.errors import EmulationError

    class Unmapped(EmulationError):
        def __init__(self) -> None:
            super().__init__("write to unmapped address 0xfeb02000", 0x8000, b"\x89\x01")
            self.gpa, self.write = 0xFEB02000, True

    class Fault(EmulationError):
        def __init__(self, vector: int) -> None:
            super().__init__("#X fault: why", 0x8000, b"\xf7\xf1")
            self.vector = vector

    assert _path_error_stop(Unmapped()).reason is StopReason.UNMAPPED
    assert _path_error_stop(Fault(0)).reason is StopReason.TRIPLE_FAULT
    assert _path_error_stop(Fault(13)).reason is StopReason.TRIPLE_FAULT
    assert _path_error_stop(Fault(6)).reason is StopReason.INVALID_INSN
    assert _path_error_stop(EmulationError("no", 0x8000)).reason is StopReason.EMULATION_ERROR


# -- rule 7: stores Unicorn reports at a later RIP (W8) ----------------------------------------------

LATE_RIP = [
    ("mov rdx, REGS_MMIO\nfxsave [rdx]", "fxsave"),
    ("mov rdx, NOTIFY_MMIO\nfxsave [rdx]", "fxsave"),  # the next insn's operand holds the reported GPA
    ("mov rdx, REGS_MMIO\nfnsave [rdx]", "fnsave"),
    ("mov rdx, REGS_MMIO\nfnstenv [rdx]", "fnstenv"),
    ("mov rdx, REGS_MMIO\nfstp tbyte ptr [rdx]", "fstp"),
    ("mov rdx, REGS_MMIO\nfbstp tbyte ptr [rdx]", "fbstp"),
    ("mov rdi, NOTIFY_MMIO\npcmpeqb xmm1, xmm1\nmaskmovdqu xmm0, xmm1", "maskmovdqu"),
]


@pytest.mark.parametrize("style", ["generic", "fast", "wildcard"])
@pytest.mark.parametrize(("src", "mnemonic"), LATE_RIP)
def test_late_rip_store_to_mmio_is_never_handled(style: str, src: str, mnemonic: str) -> None:
    result, machine, board = run_on(style, f"{src}\nmov word ptr [rdx], ax\nmov eax, 1\nhlt\n")
    assert result.stop.reason is StopReason.EMULATION_ERROR
    assert mnemonic in result.stop.message and "MMIO at 0xfeb0" in result.stop.message
    assert machine.read_ram(result.stop.rip, 3) != bytes.fromhex("66 89 02")  # the store, not the MOV after
    assert result.regs["rax"] != 1
    assert kicks(board) == 0 and board.regs.state()["writes"] == 0


@pytest.mark.parametrize("style", ["generic", "inplace"])
def test_late_rip_store_to_ram_still_runs(style: str) -> None:
    src = "mov rdx, 0x100000\nmov ecx, 3\nl: fxsave [rdx]\nfnstenv [rdx]\ndec ecx\njnz l\nmov eax, 1\nhlt\n"
    result, _, _ = run_on(style, src, max_insns=100)
    assert result.stop.reason is StopReason.HLT
    assert result.regs["rax"] == 1


@pytest.mark.parametrize(
    ("src", "rcx", "notify_reads", "regs_writes"),
    [
        ("mov rsi, 0xfeb00020\nmov rdi, 0xfeb01ffb\nmov ecx, 5\ncld\nrep movsd\nhlt", 4, 1, 1),
        ("mov rsi, 0xfeb00020\nxor edi, edi\nmov ecx, 5\ncld\nrep movsd\nhlt", 5, 0, 0),
    ],
)
def test_inplace_movs_whose_store_faults_reads_no_device(
    src: str, rcx: int, notify_reads: int, regs_writes: int
) -> None:
    """Stream fuzzer T3/T6: the faulting iteration of a MOVS leaves the source device untouched."""
    result, _, board = run_on("inplace", src)
    assert result.stop.reason is StopReason.UNMAPPED
    assert result.regs["rcx"] == rcx
    assert board.notify.state()["reads"] == notify_reads
    assert board.regs.state()["writes"] == regs_writes


# -- rule 8: one exit per trapped REP execution; rule 1 across styles ---------------------------------


@pytest.mark.parametrize("style", ["generic", "fast"])
def test_rep_stos_of_4100_bytes_is_one_exit(style: str) -> None:
    """Issue 11 (d): NOTIFY_MMIO .. +4100 spans two devices; the path emulates it in one exit."""
    src = "mov rdi, NOTIFY_MMIO\nmov ecx, 4100\nxor eax, eax\ncld\nrep stosb\nhlt\n"
    result, _, _ = run_on(style, src)
    assert result.stop.reason is StopReason.HLT
    assert result.exits["mmio_write"] == 1
    assert result.regs["rcx"] == 0


MOVS_MMIO = """
    mov rsi, REGS_MMIO+0x20
    mov rdi, NOTIFY_MMIO+0x40
    mov ecx, 4
    cld
    rep movsd
    mov eax, 1
    hlt
"""


@pytest.mark.parametrize("budget", range(4, 13))
def test_budgeted_rep_movs_agrees_with_in_place(budget: int) -> None:
    """Exit-style paths stop at the same RIP, with the same RCX/RSI/RDI and device state, as in place."""
    runs = {style: run_on(style, MOVS_MMIO, max_insns=budget) for style in ("inplace", "generic", "fast")}
    seen = {
        style: (
            r.stop.reason.value,
            r.stop.rip,
            r.regs["rcx"],
            r.regs["rsi"],
            r.regs["rdi"],
            r.regs["rax"],
            board.notify.state()["writes"],
            board.regs.state()["reads"],
        )
        for style, (r, _, board) in runs.items()
    }
    assert seen["generic"] == seen["inplace"]
    assert seen["fast"] == seen["inplace"]


@pytest.mark.parametrize("mode", [64, 32])
def test_inplace_cmps_with_a_faulting_operand_reads_no_device(mode: int) -> None:
    """Stream fuzzer (seed 12): QEMU loads CMPS's [rDI] first; with [rSI] unmapped, no device read."""
    src = "mov edi, 0xfeb01008\nxor esi, esi\ncmpsd\nhlt\n"
    result, _ = run_asm(src, mode=mode)
    assert result.stop.reason is StopReason.UNMAPPED
    assert board_reads(result) == 0


def board_reads(result) -> int:  # type: ignore[no-untyped-def]
    return result.devices["regs"]["reads"] + result.devices["notify"]["reads"]


def test_inplace_16_byte_access_off_the_window_end_reaches_no_device() -> None:
    """Stream fuzzer (seed 13): Unicorn hands MOVDQU to the hook as two 8-byte halves."""
    result, _ = run_asm("mov r13, 0xfeb01ff6\nmovdqu xmm3, xmmword ptr [r13]\nhlt\n")
    assert result.stop.reason is StopReason.UNMAPPED
    assert board_reads(result) == 0


def test_inplace_ins_after_a_plain_in_still_drops_the_dummy_store() -> None:
    """Stream fuzzer (seed 13): a plain IN between two INS must not make a dummy store look real."""
    src = """
        mov ebp, 2
        mov dx, CONSOLE_PORT+5
    loop2:
        mov rdi, 0xfeb01020
        mov ecx, 3
        cld
        rep insb
        in al, dx
        dec ebp
        jnz loop2
        hlt
    """
    result, _ = run_asm(src)
    assert result.stop.reason is StopReason.HLT
    assert result.devices["regs"]["writes"] == 6


def test_inplace_ins_into_mmio_after_ins_into_ram() -> None:
    """Stream fuzzer (seed 22): the port read of an INS into RAM must not make the next dummy look real."""
    src = (
        "mov dx, CONSOLE_PORT+5\ncld\nmov rdi, 0x100025\nmov ecx, 5\nrep insb\n"
        "mov rdi, 0xfeb01019\nmov ecx, 2\nrep insb\nhlt\n"
    )
    result, _ = run_asm(src)
    assert result.stop.reason is StopReason.HLT
    assert result.devices["regs"]["writes"] == 2


@pytest.mark.parametrize("style", STYLES)
def test_hypercall_mmio_write_across_two_devices_is_split(style: str) -> None:
    """Stream fuzzer (seed 31): HC_MMIO_WRITE of 2 bytes at NOTIFY_MMIO+0xfff is one byte per device."""
    src = "mov eax, HC_MMIO_WRITE\nmov rbx, 0xfeb00fff\nmov ecx, 2\nmov edx, 0x1234\nvmcall\nhlt\n"
    result, _, board = run_on(style, src)
    assert result.stop.reason is StopReason.HLT
    assert result.regs["rax"] == 0
    assert board.regs.state()["writes"] == 1
    assert board.notify.state()["writes"] == 1


@pytest.mark.parametrize("style", STYLES[:3])
@pytest.mark.parametrize("src", [
    "mov rax, 0xfeb01010\nmov dword ptr [rax], 5\nlock neg dword ptr [rax]\nhlt",  # aligned
    "mov eax, 0xfeb0106a\nlock neg word ptr [eax+1]\nhlt",  # odd address (mmio_map pieces)
    "mov r8d, 3\nmov rax, 0xfeb01010\nl: lock neg qword ptr [rax]\ndec r8d\njnz l\nhlt",  # again and again
])
def test_lock_neg_reads_the_device_once_per_execution(style: str, src: str) -> None:
    """streams T14: QEMU runs LOCK NEG as a load plus an atomic cmpxchg that loads again; in place,
    the second load must not reach the device (one guest access, as KVM and the generic path)."""
    result, _, board = run_on(style, src)
    assert result.stop.reason is StopReason.HLT
    negs = 3 if "jnz" in src else 1
    assert board.regs.state()["reads"] == negs
    assert board.regs.state()["writes"] == negs + ("dword ptr [rax], 5" in src)
    if "dword ptr [rax], 5" in src:
        assert int.from_bytes(bytes(board.regs.mem[0x10:0x14]), "little") == (-5) & 0xFFFFFFFF


# -- issue 11 T12: a SETcc whose store faults keeps the flags it started with -----------------------
# QEMU materialises the lazy flags before the store and then restores a stale cc_op at the fault
# (emu/flagsites.py); first seen as `cmp; jnc; setz [mmio]` giving RFLAGS 0x81 for 0x91.
SETCC_FLAG_CASES = {
    # flags state unknown at the block start (after a branch): AF was lost
    "after-branch": (
        "xor r8d, r8d\ncmp r8d, 3\njnc 1f\nmov r9, REGS_MMIO\nsetz byte ptr [r9+0x10]\n1: hlt", 0x91
    ),
    # ADD then SETLE in one block: all flags garbage (0x55 for 0x894)
    "same-block": (
        "mov ebx, 0x7fffffff\nmov r8, REGS_MMIO\nadd ebx, 1\nsetle byte ptr [r8+0x10]\nhlt", 0x894
    ),
}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("case", sorted(SETCC_FLAG_CASES))
@pytest.mark.parametrize("max_insns", [None, 100])
def test_setcc_to_mmio_keeps_its_flags(style: str, case: str, max_insns: int | None) -> None:
    src, flags = SETCC_FLAG_CASES[case]
    result, _, _ = run_on(style, src, max_insns=max_insns)
    # a path that declines SETcc stops on it (emulation_error): its state must be right all the same
    assert result.stop.reason in (StopReason.HLT, StopReason.EMULATION_ERROR)
    assert result.regs["rflags"] & 0x8D5 == flags


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("max_insns", [None, 4])
@pytest.mark.parametrize(
    "src,flags",
    [
        ("mov ebx, 9\nadd bx, 30\nmovq qword ptr [REGS_MMIO+0xffc], xmm1\nhlt", 0x14),
        ("add byte ptr [0x1000e6], bl\nmov bx, word ptr [REGS_MMIO+0xfff]\nhlt", 0x44),
    ],
    ids=["add-movq", "add-mov"],
)
def test_unmapped_stop_keeps_the_flags_under_a_budget(
    style: str, max_insns: int | None, src: str, flags: int
) -> None:
    """issue 11: with the budget's code hook, an access running off the window end was restored
    with the lazy flags half-converted (AF lost, or garbage), and the stop kept them: the stash
    is now put back on every fault, also one a hook already turned into the stop."""
    result, _, _ = run_on(style, src, mode=32, max_insns=max_insns)
    assert result.stop.reason is StopReason.UNMAPPED
    assert result.regs["rflags"] & 0x8D5 == flags


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("operand", ["0x100000", "REGS_MMIO+0xffb"], ids=["ram", "mmio"])
@pytest.mark.parametrize("value,flags", [(0xD4000000, 0x05), (1, 0x95)])
def test_lock_neg_flags_come_from_the_result(style: str, operand: str, value: int, flags: int) -> None:
    """issue 11: Unicorn computes LOCK NEG's SF/PF from the operand (a cmpxchg loop's old value):
    0xd4000000 gave SF=1, 1 gave SF=0 PF=0. The engine rewrites them at the next instruction."""
    src = f"""
        mov ecx, {operand}
        mov dword ptr [ecx], {value:#x}
        lock neg dword ptr [ecx]
        sets bl
        hlt
    """
    result, _, _ = run_on(style, src, mode=32)
    assert result.stop.reason is StopReason.HLT
    assert result.regs["rflags"] & 0x8D5 == flags
    assert result.regs["rbx"] & 0xFF == flags >> 7


@pytest.mark.parametrize("style", STYLES)
def test_budget_stop_right_after_lock_neg_has_its_flags(style: str) -> None:
    """The budget hook stops in front of the next instruction before the LOCK NEG fix-up hook there
    runs; the run loop applies the fix-up at that stop."""
    src = "mov ecx, 0x100000\nmov dword ptr [ecx], 1\nlock neg dword ptr [ecx]\nnop\nhlt"
    result, _, _ = run_on(style, src, mode=32, max_insns=3)
    assert result.stop.reason is StopReason.BUDGET
    assert result.regs["rflags"] & 0x8D5 == 0x95


@pytest.mark.parametrize("style", STYLES)
def test_lock_neg_running_off_the_window_keeps_the_flags_of_a_cmp_before_it(style: str) -> None:
    """streams seed 520 #285: `cmp; lock neg qword [REGS_MMIO+0xffb]` stopped `unmapped` with AF lost
    (0x81 for 0x91); the LOCK NEG start hook now also stashes RFLAGS."""
    src = "xor r9d, r9d\ncmp r9d, 5\nmov r11, 0xfeb00950\nlock neg qword ptr [r11+0x16ab]\nhlt"
    result, _, board = run_on(style, src)
    assert result.stop.reason is StopReason.UNMAPPED
    assert result.regs["rflags"] & 0x8D5 == 0x91
    assert board.regs.state()["reads"] == 0
