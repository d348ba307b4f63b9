# exitlab: mode=64
# KVM cost bench (exitlab/tools/kvmcosts.py): KICKS x `out dx, ax` to PORT with the constant DATA in AX,
# timed by the guest itself. Leaves the TSC ticks for the whole loop in R15, KICKS in R8, then hlt.
    mov ecx, KICKS
    mov r8d, ecx
    lfence
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov edx, PORT
    mov eax, DATA
1:  out dx, ax
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
