# exitlab: mode=64
# NOT conforming to pv contract v1: the pv_kick.S driver loop (same rings, same kicks) with the
# kick behind an FS segment override, `mov word ptr fs:[rdx], ax` (64 66 89 02). FS base is 0, so
# it writes the same address, but a prefix changes what the bytes may mean, so the contract forbids
# it. `exitlab validate pv_bad_segment` names the violation; the generic path handles every kick.
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
    mov word ptr fs:[rdx], ax            # the kick with a segment prefix (FS base is 0)
    inc esi
    cmp esi, 4
    jne queue
    dec r12d
    jnz round
    hlt
