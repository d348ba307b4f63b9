# Prints a line on the console (16550 THR at CONSOLE_PORT), polling LSR like a real driver.
    lea rsi, [rip + msg]
    mov dx, CONSOLE_PORT
next:
    mov al, byte ptr [rsi]
    test al, al
    jz done
    add dx, 5              # LSR
wait:
    in al, dx
    test al, 0x20          # THR empty?
    jz wait
    sub dx, 5
    mov al, byte ptr [rsi]
    out dx, al
    inc rsi
    jmp next
done:
    hlt
msg:
    .asciz "hello from the guest\n"
