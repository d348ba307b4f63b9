# exitlab: mode=64
# KVM cost bench (exitlab/tools/kvmcosts.py): KICKS transactions timed by the guest itself. BODY picks
# the transaction: 0 none (the loop baseline: what the loop itself costs), 1 `out dx, ax` to PORT,
# 2 the pv-contract store `mov word ptr [rdx], ax` (66 89 02) to ADDR, both with the constant DATA in
# AX, 3 a hypercall answered in the kernel: number NR (unknown: RAX = -KVM_ENOSYS), AMD's `vmmcall`
# (0f 01 d9) when VMMCALL=1 else Intel's `vmcall` (0f 01 c1), the vendor's native one, so the kernel
# never has to patch it. The counter lives in R9 (a hypercall returns in RAX, RDX holds the target).
# Leaves the TSC ticks for the whole loop in R15, KICKS in R8, then hlt.
    mov r9d, KICKS
    mov r8d, r9d
    lfence
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    .if BODY == 1
    mov edx, PORT
    mov eax, DATA
    .elseif BODY == 2
    mov rdx, ADDR
    mov eax, DATA
    .endif
1:
    .if BODY == 0
    nop
    .elseif BODY == 1
    out dx, ax
    .elseif BODY == 2
    mov word ptr [rdx], ax
    .elseif BODY == 3
    mov eax, NR
    .if VMMCALL
    vmmcall
    .else
    vmcall
    .endif
    .else
    .error "BODY must be 0 (loop), 1 (pio), 2 (mmio) or 3 (hypercall)"
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
