# exitlab: mode=64
# KVM cost bench (exitlab/tools/kvmcosts.py): KICKS hypercalls answered in the kernel. VMMCALL=1 picks
# AMD's `vmmcall` (0f 01 d9), else Intel's `vmcall` (0f 01 c1): the vendor's native one, so the
# kernel never has to patch the instruction. Hypercall number NR (unknown: RAX = -KVM_ENOSYS).
# The loop counter lives in R9 because the call returns in RAX. TSC ticks in R15, then hlt.
    mov r9d, KICKS
    mov r8d, r9d
    lfence
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
1:  mov eax, NR
    .if VMMCALL
    vmmcall
    .else
    vmcall
    .endif
    dec r9d
    jnz 1b
    lfence
    rdtsc
    lfence
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    mov r15, rax
    hlt
