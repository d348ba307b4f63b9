# exitlab: mode=64
# NOT conforming to pv contract v1: the pv_kick.S driver loop (same rings, same kicks) with the
# kick compiled as `mov word ptr [rdx+4], cx` (66 89 4a 04): data in CX and a displacement, so the
# host cannot fast-path it. `exitlab validate pv_bad_reg` names the violation; the generic path
# still handles every kick, so the device state equals pv_kick's.
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
    lea rdx, [rbx + rsi*4 - 4]           # notify address - 4
    mov ecx, esi                         # queue index, in CX
    mov word ptr [rdx + 4], cx           # the kick, wrong register and form
    inc esi
    cmp esi, 4
    jne queue
    dec r12d
    jnz round
    hlt
