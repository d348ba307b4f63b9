# exitlab: mode=64
# A virtio-style driver kick loop that keeps pv contract v1 (docs/contract.md).
# Four queues, each with an avail ring in RAM (RINGS + 0x100*q: flags, idx, ring[8]). Per round the
# driver adds one buffer to every queue (writes the descriptor id into the ring, then publishes the
# new avail.idx) and kicks the queue: the notify address NOTIFY_MMIO + 4*q goes in RDX, the queue
# index in AX - the registers of the legacy `out dx, ax` - and the store is exactly 66 89 02.
# Ring writes go through RDI with R8W/R12W on purpose: a store through RDX or a 16-bit store from
# AX anywhere else would show up as a near miss in `exitlab validate`'s static scan.
    .set RINGS, 0x20000
    mov rbx, NOTIFY_MMIO
    mov r12d, 32                         # rounds
round:
    xor esi, esi                         # queue index q
queue:
    mov edi, esi
    shl edi, 8
    add edi, RINGS                       # &avail[q]
    movzx r8d, word ptr [rdi + 2]        # avail.idx
    mov r9d, r8d
    and r9d, 7
    mov word ptr [rdi + 4 + r9*2], r12w  # avail.ring[idx % 8] = descriptor id
    inc r8d
    mov word ptr [rdi + 2], r8w          # publish avail.idx + 1
    lea rdx, [rbx + rsi*4]               # queue q's notify address
    mov eax, esi                         # queue index
    mov word ptr [rdx], ax               # the kick: 66 89 02
    inc esi
    cmp esi, 4
    jne queue
    dec r12d
    jnz round
    hlt
