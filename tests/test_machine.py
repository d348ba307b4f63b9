"""The foundation machine: every exit kind, mode and stop reason."""

import pytest

from emu.errors import EmulationError
from emu.exits import ExitKind
from emu.machine import StopReason
from emu.platform import (
    HC_MMIO_WRITE,
    KVM_EFAULT,
    KVM_EINVAL,
    KVM_ENOSYS,
    NOTIFY_MMIO,
    NOTIFY_PORT,
    REGS_MMIO,
)
from tests.helpers import run_asm

M64 = (1 << 64) - 1


def kinds(m):
    return [r.kind for r in m.records]


def test_mmio_write_and_read_inplace_exact_rip():
    res, m = run_asm(
        """
        mov rdx, NOTIFY_MMIO
        mov ax, 3
        mov word ptr [rdx], ax
        mov rbx, REGS_MMIO
        mov ecx, dword ptr [rbx]
        hlt
        """
    )
    assert res.stop.reason is StopReason.HLT
    w, r = m.records
    assert (w.kind, w.addr, w.truth_size, w.truth_value, w.insn[:3]) == (
        ExitKind.MMIO_WRITE,
        NOTIFY_MMIO,
        2,
        3,
        b"\x66\x89\x02",
    )
    assert w.reg("rax") & 0xFFFF == 3 and w.reg("rip") == w.rip
    assert (r.kind, r.addr, r.truth_size, r.truth_value) == (ExitKind.MMIO_READ, REGS_MMIO, 4, 0x74697865)
    assert res.regs["rcx"] == 0x74697865
    assert res.devices["notify"]["kicks"] == {"3": 1}


def test_qword_mmio_arrives_as_one_access():
    res, m = run_asm(
        """
        mov rbx, REGS_MMIO
        mov rax, 0x8877665544332211
        mov qword ptr [rbx + 8], rax
        mov rcx, qword ptr [rbx + 8]
        hlt
        """
    )
    assert [(r.kind, r.truth_size) for r in m.records] == [(ExitKind.MMIO_WRITE, 8), (ExitKind.MMIO_READ, 8)]
    assert m.records[1].truth_value == 0x8877665544332211
    assert res.regs["rcx"] == 0x8877665544332211


@pytest.mark.parametrize("mode", [16, 32, 64])
def test_pio_each_mode(mode):
    res, m = run_asm(
        """
        mov dx, NOTIFY_PORT
        mov ax, 2
        out dx, ax
        mov dx, CONSOLE_PORT + 5
        in al, dx
        hlt
        """,
        mode=mode,
    )
    assert res.stop.reason is StopReason.HLT
    out, inp = m.records
    assert (out.kind, out.addr, out.truth_size, out.truth_value, out.mode) == (
        ExitKind.PIO_OUT,
        NOTIFY_PORT,
        2,
        2,
        mode,
    )
    assert (inp.kind, inp.addr, inp.truth_size) == (ExitKind.PIO_IN, 0x3FD, 1)
    assert res.regs["rax"] & 0xFF == 0x60
    assert res.devices["notify"]["kicks"] == {"2": 1}


@pytest.mark.parametrize("mode", [32, 64])
def test_mmio_32_and_64(mode):
    res, m = run_asm(
        """
        mov edx, NOTIFY_MMIO + 8
        mov eax, 2
        mov word ptr [edx], ax
        mov ebx, REGS_MMIO
        movzx ecx, byte ptr [ebx + 1]
        hlt
        """,
        mode=mode,
    )
    assert res.stop.reason is StopReason.HLT
    assert [r.kind for r in m.records] == [ExitKind.MMIO_WRITE, ExitKind.MMIO_READ]
    assert m.records[0].addr == NOTIFY_MMIO + 8
    assert res.regs["rcx"] == 0x78


def test_string_pio_one_exit_per_element():
    res, m = run_asm(
        """
        lea rsi, [rip + msg]
        mov dx, CONSOLE_PORT
        mov ecx, 3
        rep outsb
        mov dx, NOTIFY_PORT
        lea rdi, [rip + buf]
        mov ecx, 2
        rep insw
        hlt
        msg: .ascii "abc"
        buf: .word 0, 0
        """
    )
    assert res.stop.reason is StopReason.HLT
    assert res.console == "abc"
    assert [r.kind for r in m.records] == [ExitKind.PIO_OUT] * 3 + [ExitKind.PIO_IN] * 2
    assert [r.truth_value for r in m.records[:3]] == [ord("a"), ord("b"), ord("c")]
    # the notify port reads 0 (not unclaimed), and rep insw stored it and stepped RDI
    assert res.regs["rcx"] == 0


def test_console_hello_guest():
    from emu import guests
    from emu.assemble import load_guest
    from emu.machine import Machine

    res = Machine(load_guest(guests.builtin("hello"))).run()
    assert res.console == "hello from the guest\n"
    assert res.exits["pio_in"] == res.exits["pio_out"] == len("hello from the guest\n")


def test_hypercall_abi_mmio_write_and_errors():
    res, m = run_asm(
        """
        mov eax, HC_MMIO_WRITE
        mov rbx, NOTIFY_MMIO + 4
        mov ecx, 2
        mov edx, 1
        vmcall
        mov r8, rax
        mov eax, HC_MMIO_WRITE
        mov ecx, 3          # bad size
        vmcall
        mov r9, rax
        mov eax, HC_MMIO_WRITE
        mov ecx, 2
        mov rbx, 0x200000   # RAM, not MMIO
        vmcall
        mov r10, rax
        mov eax, 0x7777     # unknown hypercall, AMD encoding
        vmmcall
        mov r11, rax
        hlt
        """
    )
    assert res.stop.reason is StopReason.HLT
    assert res.regs["r8"] == 0
    assert res.regs["r9"] == (-KVM_EINVAL) & M64
    assert res.regs["r10"] == (-KVM_EFAULT) & M64
    assert res.regs["r11"] == (-KVM_ENOSYS) & M64
    assert [r.addr for r in m.records] == [HC_MMIO_WRITE] * 3 + [0x7777]
    assert all(r.kind is ExitKind.HYPERCALL for r in m.records)
    assert res.devices["notify"]["kicks"] == {"1": 1}


def test_hypercall_32bit_returns_32bit_error():
    res, _ = run_asm("mov eax, 0x7777\nvmcall\nhlt", mode=32)
    assert res.regs["rax"] == (-KVM_ENOSYS) & 0xFFFFFFFF


@pytest.mark.parametrize(
    "src,reason,needle",
    [
        ("mov rax, [0x900000]\nhlt", StopReason.UNMAPPED, "0x900000"),
        ("mov qword ptr [0x10], rax\nhlt", StopReason.UNMAPPED, "write of 8 bytes"),
        ("jmp 0x500000", StopReason.UNMAPPED, "fetch"),
        ("nop\nud2", StopReason.INVALID_INSN, "0f 0b"),
        (".byte 0x0f, 0x01, 0xc8\nhlt", StopReason.INVALID_INSN, "0f 01 c8"),  # monitor: not a hypercall
        ("xor ecx, ecx\ndiv ecx", StopReason.TRIPLE_FAULT, "#DE"),
        ("int3", StopReason.TRIPLE_FAULT, "#BP"),
    ],
)
def test_fault_stops_name_rip_and_bytes(src, reason, needle):
    res, _ = run_asm(src, max_insns=100)
    assert res.stop.reason is reason
    assert needle in res.stop.message + " " + res.stop.insn.hex(" ")
    assert res.stop.is_error


def test_invalid_insn_reports_its_rip():
    res, _ = run_asm("nop\nnop\nud2")
    assert res.stop.rip == 0x8002 and res.stop.insn[:2] == b"\x0f\x0b"


@pytest.mark.parametrize("style", ["inplace", "exit"])
def test_runaway_stopped_by_budget(style):
    res, _ = run_asm("1: inc rax\njmp 1b", style=style, max_insns=1000, timeout=5)
    assert res.stop.reason is StopReason.BUDGET
    assert 499 <= res.regs["rax"] <= 500


@pytest.mark.parametrize("style", ["inplace", "exit"])
def test_runaway_stopped_by_timeout(style):
    res, _ = run_asm("1: jmp 1b", style=style, timeout=0.2)
    assert res.stop.reason is StopReason.TIMEOUT


def test_runaway_that_exits_forever_is_stopped_by_timeout():
    """Exit style restarts the engine at every exit; the deadline must hold across restarts."""
    from emu.cpu import Outcome

    class Skip:
        name = "skip"

        def handle(self, exit, cpu):
            return Outcome(exit.rip + 3, ())

    src = "mov rdx, NOTIFY_MMIO\n1: mov word ptr [rdx], ax\njmp 1b"
    res, m = run_asm(src, style="exit", path=Skip(), timeout=0.3, keep_records=False)
    assert res.stop.reason is StopReason.TIMEOUT
    assert res.exits["mmio_write"] > 10


def test_hlt_is_the_only_clean_stop():
    res, _ = run_asm("mov al, 0xf4\nhlt")
    assert res.stop.reason is StopReason.HLT and not res.stop.is_error


class _Refuses:
    name = "refuses"

    def handle(self, exit, cpu):
        raise EmulationError("unsupported instruction", exit.rip, exit.insn)


def test_exit_style_path_error_is_a_stop_with_bytes():
    res, m = run_asm("mov rdx, NOTIFY_MMIO\nmov word ptr [rdx], ax\nhlt", style="exit", path=_Refuses())
    assert res.stop.reason is StopReason.EMULATION_ERROR
    assert res.stop.insn[:3] == b"\x66\x89\x02" and res.stop.rip == 0x800A
    assert m.records[0].kind is ExitKind.MMIO_WRITE


class _Declines:
    name = "declines"

    def handle(self, exit, cpu):
        return None


def test_exit_style_declined_exit_is_a_stop():
    res, _ = run_asm("mov rdx, NOTIFY_MMIO\nmov word ptr [rdx], ax\nhlt", style="exit", path=_Declines())
    assert res.stop.reason is StopReason.EMULATION_ERROR and "declined" in res.stop.message


class _Exploding:
    name = "boom"

    def read(self, offset, size):
        raise RuntimeError("device on fire")

    def write(self, offset, size, value):
        raise RuntimeError("device on fire")

    def state(self):
        return {}


def test_device_exception_is_a_stop_not_a_traceback():
    from emu.board import default_board
    from emu.bus import Space

    board = default_board()
    board.bus.add(Space.PIO, 0x80, 1, _Exploding())
    res, _ = run_asm("mov dx, 0x80\nout dx, al\nhlt", board=board)
    assert res.stop.reason is StopReason.DEVICE_ERROR and "on fire" in res.stop.message


def test_exit_style_records_hardware_view_only():
    """In exit style the record carries the GPA and the registers; the path does the access."""

    seen = []

    class Recorder:
        name = "rec"

        def handle(self, exit, cpu):
            from emu.cpu import DeviceAccess, Outcome

            seen.append(exit)
            ax = cpu.get("rax") & 0xFFFF
            cpu.mmio_write(exit.addr, 2, ax)
            return Outcome(exit.rip + 3, (DeviceAccess(exit.addr, 2, True, ax),))

    res, _ = run_asm(
        "mov rdx, NOTIFY_MMIO\nmov eax, 9\nmov word ptr [rdx], ax\nhlt", style="exit", path=Recorder()
    )
    assert res.stop.reason is StopReason.HLT
    assert len(seen) == 1 and seen[0].addr == NOTIFY_MMIO and seen[0].rip == 0x800F
    assert res.devices["notify"]["kicks"] == {"9": 1}
