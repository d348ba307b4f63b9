# Option 1: KICKS x vmcall HC_MMIO_WRITE(NOTIFY_MMIO + 4*q, 2, q), q = 0..3 (HC = HC_MMIO_WRITE).
    mov r12d, KICKS
    mov r8, NOTIFY_MMIO
    xor r13d, r13d
1:  mov eax, HC
    lea rbx, [r8 + r13*4]
    mov ecx, 2
    mov edx, r13d
    vmcall
    inc r13d
    and r13d, 3
    dec r12d
    jnz 1b
    hlt
