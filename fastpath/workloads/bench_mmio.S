# MMIO notify with the agreed pv encoding: KICKS x `mov word ptr [rdx], ax` (66 89 02) to queue q's
# own address NOTIFY_MMIO + 4*q, q = 0..3. The same guest serves every MMIO path; only the host's
# handling differs.
    mov ecx, KICKS
    mov rbx, NOTIFY_MMIO
    xor eax, eax
1:  lea rdx, [rbx + rax*4]
    mov word ptr [rdx], ax
    inc eax
    and eax, 3
    dec ecx
    jnz 1b
    hlt
