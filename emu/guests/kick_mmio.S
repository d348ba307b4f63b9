# MMIO notify with the agreed pv encoding `mov word ptr [rdx], ax` (66 89 02): address in RDX,
# queue index in AX, the same registers as `out dx, ax`. Queue q is kicked at its own address
# NOTIFY_MMIO + 4*q (virtio's notify_off_multiplier = 4), so address-only (wildcard) handling and
# data-carrying handling count the same kicks. Kicks queues 0..3, 64 rounds.
    mov rbx, NOTIFY_MMIO
    mov ecx, 64
round:
    xor eax, eax
kick:
    lea rdx, [rbx + rax*4]
    mov word ptr [rdx], ax
    inc eax
    cmp eax, 4
    jne kick
    dec ecx
    jnz round
    hlt
