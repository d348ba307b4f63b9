"""The stack, atomic, vector-move and misc families live: the C engine (exit style, capstone path)
runs a whole guest program and must end with the Python machine's registers, device bytes,
kicks and exit count.  The stack sits in the register device for part of the program, so every
PUSH/POP/CALL/RET/LEAVE/ENTER there is an exit; MMX/SSE registers and CR0 go through the C
engine's `vec` accessor (fastpath/csrc/live.c live_vec).  VEX forms, MOVDIRI and MOVDIR64B are
not here: Unicorn 2.1.4 has no AVX/MOVDIR* (tests/emulate/test_c_families.py covers them)."""

from __future__ import annotations

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.generic import GenericPath
from emu.machine import Machine
from fastpath import cengine as c

STACK_64 = """
    mov rbx, REGS_MMIO
    mov rax, 0x1111222233334444
    mov [rbx+0x100], rax
    lea rax, [rip + target]
    mov [rbx+0x108], rax
    mov rsi, rsp
    lea rsp, [rbx+0x800]
    push qword ptr [rbx+0x100]
    push 0x12345
    push rsi
    pop rdi
    pop qword ptr [rbx+0x110]
    pop rcx
    call [rbx+0x108]
    mov rbp, rsp
    enter 0x20, 0
    enter 0x10, 2
    leave
    leave
    push 7
    call sub
    pop rdx
    lea rax, [rip + done]
    mov [rbx+0x118], rax
    mov rsp, rsi
    push qword ptr [rbx+0x118]
    mov [rbx+0x120], rsp
    jmp [rbx+0x118]
target:
    mov r8, 0x77
    ret
sub:
    mov r9, [rsp+8]
    ret 8
done:
    pop r10
    pushfq
    pop r11
    hlt
"""

STACK_32 = """
    mov ebx, REGS_MMIO
    mov dword ptr [ebx+0x100], 0x11223344
    mov esi, esp
    lea esp, [ebx+0x800]
    push dword ptr [ebx+0x100]
    push 0x55
    pop ecx
    pop dword ptr [ebx+0x110]
    mov ebp, esp
    enter 8, 1
    leave
    call sub32
    mov esp, esi
    hlt
sub32:
    mov edi, [esp]
    ret
"""

ATOMIC_MISC_64 = """
    mov rbx, REGS_MMIO
    mov qword ptr [rbx+0x40], 5
    mov qword ptr [rbx+0x48], 6
    mov eax, 7
    xor edx, edx
    mov ecx, 0xabc
    lock cmpxchg8b qword ptr [rbx+0x40]
    setz r12b
    push rbx
    mov rsi, rbx
    mov ebx, 0xdef
    lock cmpxchg8b qword ptr [rsi+0x40]
    pop rbx
    setz r12b
    mov rax, 1
    mov rdx, 2
    lock cmpxchg16b xmmword ptr [rbx+0x40]
    setz r13b
    mov rcx, 0x0102030405060708
    movbe [rbx+0x60], rcx
    movbe r14d, dword ptr [rbx+0x60]
    movbe r15w, word ptr [rbx+0x62]
    lea rbx, [rbx+0x60]
    mov eax, 3
    xlatb
    mov r9d, eax
    sub rbx, 0x60
    smsw word ptr [rbx+0x70]
    movzx r10d, word ptr [rbx+0x70]
    pushfq
    pop r11
    hlt
"""

VECTOR_64 = """
    mov rbx, REGS_MMIO
    movdqu xmm1, [rip + data]
    movss [rbx+0x10], xmm1
    movsd [rbx+0x18], xmm1
    movss xmm2, dword ptr [rbx+0x10]
    movsd xmm3, qword ptr [rbx+0x18]
    movq mm0, [rip + data]
    movq [rbx+0x20], mm0
    movd [rbx+0x28], mm0
    movq mm1, [rbx+0x20]
    movd mm2, dword ptr [rbx+0x28]
    lddqu xmm4, [rbx+0x10]
    movntdqa xmm5, [rbx+0x10]
    movntps [rbx+0x40], xmm1
    movntpd [rbx+0x50], xmm4
    movntdq [rbx+0x60], xmm5
    movq xmm6, qword ptr [rbx+0x20]
    movq qword ptr [rbx+0x78], xmm6
    movd xmm7, dword ptr [rbx+0x28]
    movdqu [out], xmm2
    movdqu [out+16], xmm3
    movq [out+32], mm1
    movq [out+40], mm2
    mov rax, [out]
    mov rcx, [out+8]
    mov rdx, [out+16]
    mov rsi, [out+32]
    mov rdi, [out+40]
    emms
    hlt
data: .quad 0x8899aabbccddeeff, 0x0011223344556677
out: .quad 0, 0, 0, 0, 0, 0
"""


@pytest.mark.parametrize("src,mode", [(STACK_64, 64), (STACK_32, 32), (ATOMIC_MISC_64, 64), (VECTOR_64, 64)],
                         ids=["stack64", "stack32", "atomic-misc64", "vector64"])
def test_live_families_equal_python_machine(src: str, mode: int) -> None:
    py = Machine(assemble(src, mode=mode), board=default_board(), mmio_style="exit", path=GenericPath())
    pr = py.run(timeout=20)
    ctx = c.CContext()
    cr = c.run_machine_c(assemble(src, mode=mode), path="capstone", style="exit", ctx=ctx)
    assert pr.stop.reason.value == "hlt", pr.stop
    assert cr.stop.reason.value == "hlt", cr.stop
    assert cr.stop.rip == pr.stop.rip
    assert cr.regs == pr.regs
    assert ctx.regs_mem == bytes(py.board.regs.mem)
    assert ctx.kicks == dict(py.board.notify.kicks)
    assert cr.exits == pr.exits
    assert sum(cr.exits.values()) >= 8, cr.exits  # the forms did exit
