# exitlab: mode=32
# The pv notify in 32-bit protected mode: `mov word ptr [edx], ax` is the same bytes 66 89 02.
# Queue q at NOTIFY_MMIO + 4*q; 16 kicks over queues 0..3.
    mov ecx, 16
kick:
    mov eax, ecx
    and eax, 3
    lea edx, [eax*4 + NOTIFY_MMIO]
    mov word ptr [edx], ax
    dec ecx
    jnz kick
    hlt
