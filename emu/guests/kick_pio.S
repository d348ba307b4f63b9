# Legacy virtio-style notify: `out dx, ax` with the queue index in AX. Kicks queues 0..3, 64 rounds.
    mov ecx, 64
round:
    xor eax, eax
kick:
    mov dx, NOTIFY_PORT
    out dx, ax
    inc eax
    cmp eax, 4
    jne kick
    dec ecx
    jnz round
    hlt
