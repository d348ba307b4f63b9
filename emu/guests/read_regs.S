# Reads the register device at every width, writes a scratch register and reads it back.
    mov rbx, REGS_MMIO
    mov eax, dword ptr [rbx]          # ID register: 0x74697865 ("exit")
    movzx ecx, word ptr [rbx + 4]     # version
    movzx edx, byte ptr [rbx + 1]
    mov rsi, 0x1122334455667788
    mov qword ptr [rbx + 0x10], rsi
    mov rdi, qword ptr [rbx + 0x10]   # qword MMIO read, one access
    movsx r8, byte ptr [rbx + 0x10]   # sign-extended byte: 0xffffffffffffff88
    hlt
