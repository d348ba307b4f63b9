"""Guest-level: loops of mixed MMIO reads and writes give the same device state and registers
whether Unicorn completes each access in place or the generic path decodes and emulates it."""

import pytest

from emu.generic import GenericPath
from emu.machine import StopReason
from tests.helpers import run_asm

MIXED_64 = """
    mov rbx, REGS_MMIO
    mov r12, NOTIFY_MMIO
    mov ecx, 20
    lea rsi, [rip + src]
loop:
    mov eax, dword ptr [rbx]               # read the ID register
    add dword ptr [rbx + 0x20], ecx        # RMW with flags
    or byte ptr [rbx + 0x24], cl
    movzx edx, word ptr [rbx + 0x20]
    movsx r8, byte ptr [rbx + 0x20]
    xadd qword ptr [rbx + 0x28], rdx
    inc word ptr [rbx + 0x30]
    bts dword ptr [rbx + 0x34], ecx
    sbb r9d, dword ptr [rbx + 0x20]
    cmp word ptr [rbx + 0x30], 7
    setz r10b
    xchg r11d, dword ptr [rbx + 0x38]
    mov word ptr [r12 + rcx*4], cx          # notify queue rcx at its own address
    movdqu xmm1, xmmword ptr [rbx + 0x20]
    movdqu xmmword ptr [rbx + 0x40], xmm1
    push rcx
    push rsi
    mov rdi, rbx
    add rdi, 0x100
    mov ecx, 5
    rep movsb                               # RAM -> MMIO, 5 exits' worth of bytes
    pop rsi
    pop rcx
    mov r13, qword ptr [rbx + 0x100]
    dec ecx
    jnz loop
    hlt
src: .ascii "abcdefgh"
"""

MIXED_32 = """
    mov ebx, REGS_MMIO
    mov ecx, 12
loop:
    mov eax, dword ptr [ebx]
    add dword ptr [ebx + 0x20], ecx
    movzx edx, byte ptr [ebx + 0x21]
    sub word ptr [ebx + 0x22], dx
    mov esi, dword ptr [ebx + 0x20]
    lea edi, [ecx*4 + NOTIFY_MMIO]
    mov word ptr [edi], cx
    not dword ptr [ebx + 0x24]
    btr dword ptr [ebx + 0x24], 3
    dec ecx
    jnz loop
    hlt
"""


def _state(res):
    return res.regs, res.devices


@pytest.mark.parametrize("mode,src", [(64, MIXED_64), (32, MIXED_32)])
def test_generic_path_equals_inplace(mode, src):
    inplace, _ = run_asm(src, mode=mode, keep_records=False)
    exit_style, m = run_asm(src, mode=mode, style="exit", path=GenericPath(), keep_records=False)
    assert inplace.stop.reason is StopReason.HLT, inplace.stop
    assert exit_style.stop.reason is StopReason.HLT, exit_style.stop
    assert exit_style.regs == inplace.regs
    assert exit_style.devices == inplace.devices
    assert exit_style.exits["mmio_write"] > 0 and exit_style.exits["mmio_read"] > 0


def test_unsupported_instruction_on_mmio_stops_with_bytes():
    # (SHL, the example here before, is supported now; SSE arithmetic is not)
    res, _ = run_asm("mov rbx, REGS_MMIO\naddps xmm0, [rbx]\nhlt", style="exit", path=GenericPath())
    assert res.stop.reason is StopReason.EMULATION_ERROR
    assert res.stop.insn[:3] == bytes.fromhex("0f5803") and "rip=0x800a" in res.stop.message
