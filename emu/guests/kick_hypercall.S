# Seed option 1: ask the host to do the MMIO write (KVM ABI: nr in RAX, gpa/size/value in
# RBX/RCX/RDX, result in RAX). Queue q's notify address is NOTIFY_MMIO + 4*q. Kicks queues 0..3,
# 64 rounds; stops early with RAX != 0 if the host refuses.
    mov r12d, 64
round:
    xor r13d, r13d
kick:
    mov eax, HC_MMIO_WRITE
    mov rbx, NOTIFY_MMIO
    lea rbx, [rbx + r13*4]
    mov ecx, 2
    mov edx, r13d
    vmcall
    test rax, rax
    jnz failed
    inc r13d
    cmp r13d, 4
    jne kick
    dec r12d
    jnz round
failed:
    hlt
