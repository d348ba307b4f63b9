# exitlab: mode=64
# KVM cost bench (exitlab/tools/kvmcosts.py): KICKS x the pv-contract store `mov word ptr [rdx], ax`
# (66 89 02) to ADDR with the constant DATA in AX, timed by the guest. TSC ticks in R15, then hlt.
    mov ecx, KICKS
    mov r8d, ecx
    lfence
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov rdx, ADDR
    mov eax, DATA
1:  mov word ptr [rdx], ax
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
