# Legacy notify: KICKS x `out dx, ax` (queue index in AX) to PORT.
    mov ecx, KICKS
    xor eax, eax
1:  mov dx, PORT
    out dx, ax
    inc eax
    and eax, 3
    dec ecx
    jnz 1b
    hlt
