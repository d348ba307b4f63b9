# exitlab: mode=64
# NOT conforming to pv contract v1: one kick of queue 1 in each way a driver (or its compiler) can
# get the contract wrong, then one conforming kick. `exitlab validate pv_bad_mixed` lists every
# violation by RIP with its reason; the generic path handles all of them, so the run completes.
# The near-identical encodings are spelled as .byte because GNU as never emits them on its own.
    mov rdx, NOTIFY_MMIO + 4             # queue 1's notify address
    mov eax, 1                           # queue index
    mov r10, rdx
    mov dword ptr [rdx], eax             # wrong width: 89 02 (no 0x66)
    mov byte ptr [rdx], al               # wrong opcode and width: 88 02
    mov word ptr [rdx], 1                # wrong opcode: 66 c7 02 01 00 (immediate, no register)
    .byte 0x66, 0x89, 0x42, 0x00         # mov word ptr [rdx + 0], ax: other encoding (disp8)
    .byte 0x66, 0x48, 0x89, 0x02         # REX.W: mov qword ptr [rdx], rax
    .byte 0x66, 0x40, 0x89, 0x02         # empty REX 40: same effect, still a prefix
    mov word ptr [r10], ax               # 66 41 89 02: REX.B, address in R10
    .byte 0x67, 0x66, 0x89, 0x02         # address-size override: [edx]
    .byte 0x3e, 0x66, 0x89, 0x02         # DS segment override
    .byte 0x66, 0x66, 0x89, 0x02         # repeated operand-size prefix
    movzx ecx, word ptr [rdx]            # read of the write-only window
    mov word ptr [rdx], ax               # conforming: 66 89 02
    hlt
