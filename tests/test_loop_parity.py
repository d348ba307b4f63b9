"""The one exit loop, three engines: the Python dispatcher's backends (Unicorn, KVM) and its C
implementation (fastpath/csrc/live.c) classify stops alike (issue 12's examples) and report where
the guest is when a stop request arrives between a handled exit and the restart."""

from __future__ import annotations

from typing import Any

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.bus import Space
from emu.interrupt import INTERRUPTED
from emu.machine import Machine, MmioStyle
from emu.stop import StopReason
from exitlab.commands.run import run_image

try:
    from fastpath.cengine import LiveControl, run_machine_c
except ImportError:  # pragma: no cover - the C extension is optional
    LiveControl = run_machine_c = None  # type: ignore[assignment,misc]


def _kvm_reason(vmcall: bool) -> str | None:
    from emu.kvm import kvm_backend, kvm_unavailable_reason

    why = kvm_unavailable_reason()
    if why is None and vmcall and kvm_backend() == "pvm":
        return "kvm_pvm: a plain vmcall never completes"
    return why


needs_c = pytest.mark.skipif(run_machine_c is None, reason="C extension not built")

# issue 12: "--path generic stops with 'movabs r14, ...' has no memory operand" (a stale RIP after vmcall)
VMCALL_THEN_MMIO = """
    mov eax, HC_MMIO_WRITE
    mov rbx, NOTIFY_MMIO
    mov ecx, 2
    mov edx, 9
    vmcall
    mov r14, REGS_MMIO
    mov dword ptr [r14+8], 1
    hlt
"""
CALL_TO_ZERO = "xor eax, eax\ncall rax\nhlt"  # issue 12: C said `hlt`, Python and KVM `unmapped`


def _engines(vmcall: bool) -> list[Any]:
    why = _kvm_reason(vmcall)
    kvm = pytest.param("kvm", marks=pytest.mark.skipif(why is not None, reason=str(why)))
    return ["python", pytest.param("c", marks=needs_c), kvm]


@pytest.mark.parametrize("engine", _engines(vmcall=True))
def test_vmcall_then_mmio_is_handled_at_its_own_rip(engine: str) -> None:
    board = default_board()
    path = "inplace" if engine == "kvm" else "generic"
    res = run_image(assemble(VMCALL_THEN_MMIO), board, engine, path, None, 10.0, None)
    assert (res.stop.reason, res.stop.rip) == (StopReason.HLT, 0x802E), res.stop.message
    assert board.regs.state()["writes"] == 1
    if engine != "kvm":  # KVM answers the hypercall in the kernel (-KVM_ENOSYS): no device write
        assert res.regs["rax"] == 0 and board.notify.state()["writes"] == 1


@pytest.mark.parametrize("path", ["generic", "inplace"])
@pytest.mark.parametrize("engine", _engines(vmcall=False))
def test_call_to_zero_is_an_unmapped_fetch(engine: str, path: str) -> None:
    if engine == "kvm" and path != "inplace":
        pytest.skip("--path does not apply to KVM")
    res = run_image(assemble(CALL_TO_ZERO), default_board(), engine, path, None, 10.0, None)
    assert (res.stop.reason, res.stop.rip) == (StopReason.UNMAPPED, 0), res.stop.message


class _StopsTheRun:
    """A device whose write asks the run to stop, as a SIGINT arriving during that exit would."""

    name = "stopper"

    def __init__(self) -> None:
        self.request: Any = None

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self.request()

    def state(self) -> dict[str, Any]:
        return {}


STOPPER = 0xFEB20000
AFTER_STORE = """
    mov r14, 0xfeb20000
    mov dword ptr [r14], 1
    nop
    hlt
"""  # the store is at 0x800a (4 bytes: 41 c7 06 imm32 is 7), the nop at 0x8011
AFTER_HYPERCALL = """
    mov eax, HC_MMIO_WRITE
    mov ebx, 0xfeb20000
    mov ecx, 4
    mov edx, 1
    vmcall
    nop
    hlt
"""  # the vmcall is at 0x8014, the nop at 0x8017


def _board() -> tuple[Any, _StopsTheRun]:
    board = default_board()
    dev = _StopsTheRun()
    board.bus.add(Space.MMIO, STOPPER, 0x100, dev)
    return board, dev


@pytest.mark.parametrize("src, resume", [(AFTER_STORE, 0x8011), (AFTER_HYPERCALL, 0x8017)])
def test_python_stop_between_exit_and_restart_is_at_the_restart_rip(src: str, resume: int) -> None:
    """The exit was handled (device written, RIP moved on): the stop and the registers say so.
    (The hypercall's restart RIP used to be left in the engine only: stop and RIP said the vmcall.)"""
    board, dev = _board()
    m = Machine(assemble(src), board=board, mmio_style=MmioStyle.EXIT)
    dev.request = lambda: setattr(m.dispatch, "external", INTERRUPTED)
    res = m.run(timeout=10.0)
    assert (res.stop.reason, res.stop.rip, res.regs["rip"]) == (StopReason.INTERRUPTED, resume, resume)


@needs_c
@pytest.mark.parametrize("src, resume", [(AFTER_STORE, 0x8011), (AFTER_HYPERCALL, 0x8017)])
def test_c_stop_between_exit_and_restart_is_at_the_restart_rip(src: str, resume: int) -> None:
    """live.c stops at the restart RIP; the registers used to keep the exit's own RIP."""
    board, dev = _board()
    control = LiveControl()
    dev.request = lambda: control.request_stop("interrupted")
    res = run_machine_c(assemble(src), board, path="capstone", control=control)
    assert (res.stop.reason, res.stop.rip, res.regs["rip"]) == (StopReason.INTERRUPTED, resume, resume)


@pytest.mark.parametrize("path", ["generic", "inplace"])
@pytest.mark.parametrize("engine", _engines(vmcall=False))
def test_fetch_from_a_device_window_is_unmapped(engine: str, path: str) -> None:
    """In place the window is mapped for the device hooks; fetching code there is still `unmapped`
    (the Python in-place engine said `triple_fault`, protection fault)."""
    if engine == "kvm" and path != "inplace":
        pytest.skip("--path does not apply to KVM")
    image = assemble("mov rax, NOTIFY_MMIO\njmp rax")
    res = run_image(image, default_board(), engine, path, None, 10.0, None)
    assert (res.stop.reason, res.stop.rip) == (StopReason.UNMAPPED, 0xFEB00000), res.stop.message


@needs_c
def test_every_c_stop_is_a_stop_of_the_taxonomy() -> None:
    """live.c's stop codes become the one taxonomy (emu/stop.py) in run_machine_c; none is left out."""
    from fastpath.cengine import C_STOP_REASONS, STOP_NAMES

    reasons = {StopReason(C_STOP_REASONS.get(name, name)) for name in STOP_NAMES}
    # device_error comes from a Python device's exception in the device table, not from a C stop code
    assert reasons | {StopReason.DEVICE_ERROR} == set(StopReason)
