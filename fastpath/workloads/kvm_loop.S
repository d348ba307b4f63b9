# exitlab: mode=64
# KVM cost bench baseline: the same timed loop with no exit in it (what the loop itself costs).
    mov ecx, KICKS
    mov r8d, ecx
    lfence
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
1:  nop
    dec ecx
    jnz 1b
    lfence
    rdtsc
    lfence
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    mov r15, rax
    hlt
