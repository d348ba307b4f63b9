# exitlab: mode=64
# A PCI driver in miniature (run with `exitlab run pci_discover --devices N`; layouts in docs/pci.md).
# Walks the bus through CONFIG_ADDRESS/CONFIG_DATA (0xCF8/0xCFC) breadth-first, following every
# bridge's secondary bus; for each virtio device (vendor 0x1af4) it enables decoding, reads BAR 0,
# follows the capability list (virtio_pci_cap: common, notify; the exitlab vendor capability) and
# picks the best mechanism offered: pv MMIO, else assigned port, else hypercall, else plain MMIO,
# else the legacy I/O BAR. Queue q is kicked q+1 times at
#   notify_base + queue_notify_off(q) * notify_off_multiplier   (bounds-checked against the window)
# with the queue index as data. Nothing but the config ports and platform symbols is hard-coded.
# Prints "pci: devices=N pv=.. port=.. hypercall=.. mmio=.. iobar=.. none=.. bad=.." and halts.

    .set CMD_ENABLE, 7                 # I/O space | memory space | bus master
    .set VIRTIO_VENDOR, 0x1af4
    .set EXITLAB_VENDOR, 0xe817
    .set OFFER_HC, 1
    .set OFFER_PV, 2
    .set OFFER_PORT, 4
    .set M_PV, 0
    .set M_PORT, 1
    .set M_HC, 2
    .set M_MMIO, 3
    .set M_IOBAR, 4
    .set M_NONE, 5
    .set M_BAD, 6                      # a notify address outside its window, or a refused hypercall

start:
    lea rbp, [rip + vars]
    mov byte ptr [rbp + busq - vars], 0   # bus 0 first
    mov dword ptr [rbp + q_tail - vars], 1
    mov dword ptr [rbp + q_head - vars], 0
next_bus:
    mov eax, dword ptr [rbp + q_head - vars]
    cmp eax, dword ptr [rbp + q_tail - vars]
    jae scanned
    inc dword ptr [rbp + q_head - vars]
    movzx r14d, byte ptr [rbp + busq - vars + rax]
    xor r15d, r15d                     # device number
next_dev:
    xor r13d, r13d                     # function number
next_fn:
    mov ebx, r14d                      # ebx = bus << 16 | dev << 11 | fn << 8
    shl ebx, 5
    or ebx, r15d
    shl ebx, 3
    or ebx, r13d
    shl ebx, 8
    xor ecx, ecx
    call cfg_read16                    # vendor ID
    cmp eax, 0xffff
    je absent
    call probe
    test r13d, r13d
    jnz more_fn
    mov ecx, 0x0e                      # header type: functions 1-7 only if bit 7 says so
    call cfg_read8
    test al, 0x80
    jz dev_done
more_fn:
    inc r13d
    cmp r13d, 8
    jb next_fn
    jmp dev_done
absent:
    test r13d, r13d
    jnz more_fn
dev_done:
    inc r15d
    cmp r15d, 32
    jb next_dev
    jmp next_bus

scanned:                                 # print the tallies
    lea rsi, [rip + msg_head]
    call puts
    mov eax, dword ptr [rbp + n_dev - vars]
    call putdec
    xor r12d, r12d
tally:
    lea rsi, [rip + names]
    mov rsi, qword ptr [rsi + r12*8]
    call puts
    mov eax, dword ptr [rbp + tallies - vars + r12*4]
    call putdec
    inc r12d
    cmp r12d, 7
    jb tally
    mov al, 10
    call putc
    hlt

# ---- one function at ebx: bridges queue their secondary bus, virtio devices get driven -----------
probe:
    mov ecx, 0x0e
    call cfg_read8
    and al, 0x7f
    cmp al, 1
    jne 1f
    mov ecx, 0x19                      # secondary bus number
    call cfg_read8
    mov edx, dword ptr [rbp + q_tail - vars]
    mov byte ptr [rbp + busq - vars + rdx], al
    inc dword ptr [rbp + q_tail - vars]
    ret
1:  test al, al
    jnz 2f
    xor ecx, ecx
    call cfg_read16
    cmp eax, VIRTIO_VENDOR
    jne 2f
    push r13                           # the scan's function number; drive uses r13
    call drive
    pop r13
2:  ret

# ---- drive one virtio device ---------------------------------------------------------------------------
drive:
    inc dword ptr [rbp + n_dev - vars]
    lea rdi, [rbp + dv - vars]         # forget the previous device
    mov ecx, dv_end - dv
    xor eax, eax
    rep stosb
    mov ecx, 4                         # command |= I/O | memory | bus master (a word through lane 0)
    call cfg_read16
    or eax, CMD_ENABLE
    mov ecx, 4
    call cfg_write16
    mov ecx, 0x10                      # BAR 0: an I/O BAR if bit 0 is set and it was assigned
    call cfg_read32
    test al, 1
    jz 1f
    and eax, 0xfffc
    mov dword ptr [rbp + dv_iobar - vars], eax
1:  mov ecx, 6                         # status: capability list?
    call cfg_read16
    test al, 0x10
    jz choose
    mov ecx, 0x34
    call cfg_read8
    and eax, 0xfc
    mov r12d, eax                      # r12 = current capability
cap_loop:
    test r12d, r12d
    jz choose
    mov ecx, r12d
    call cfg_read8                     # cap_vndr
    cmp al, 9
    jne cap_next
    lea ecx, [r12 + 3]
    call cfg_read8                     # cfg_type
    cmp al, 1
    je cap_common
    cmp al, 2
    je cap_notify
    cmp al, 9
    je cap_vendor
    jmp cap_next                       # ISR, device config and anything unknown: skip
cap_common:
    call cap_addr
    mov qword ptr [rbp + dv_common - vars], rax
    jmp cap_next
cap_notify:
    call cap_addr
    mov qword ptr [rbp + dv_notify - vars], rax
    lea ecx, [r12 + 12]
    call cfg_read32
    mov dword ptr [rbp + dv_notify_len - vars], eax
    lea ecx, [r12 + 16]
    call cfg_read32
    mov dword ptr [rbp + dv_notify_mult - vars], eax
    jmp cap_next
cap_vendor:
    lea ecx, [r12 + 4]
    call cfg_read16                    # vendor_id: only exitlab's layout is understood
    cmp eax, EXITLAB_VENDOR
    jne cap_next
    lea ecx, [r12 + 6]
    call cfg_read8                     # version 1
    cmp al, 1
    jne cap_next
    lea ecx, [r12 + 7]
    call cfg_read8
    mov byte ptr [rbp + dv_offers - vars], al
    lea ecx, [r12 + 8]
    call cfg_read16
    mov dword ptr [rbp + dv_port - vars], eax
    lea ecx, [r12 + 10]
    call cfg_read16
    mov dword ptr [rbp + dv_hcnr - vars], eax
    lea ecx, [r12 + 12]                # pv window: BAR[pv_bar] + pv_offset
    call cfg_read8
    mov r8d, 14
    call bar_plus
    mov qword ptr [rbp + dv_pv - vars], rax
    lea ecx, [r12 + 13]                # hypercall window: BAR[hc_bar] + hc_offset
    call cfg_read8
    mov r8d, 16
    call bar_plus
    mov qword ptr [rbp + dv_hc - vars], rax
    lea ecx, [r12 + 18]
    call cfg_read16
    mov dword ptr [rbp + dv_win_len - vars], eax
    lea ecx, [r12 + 24]
    call cfg_read32
    mov dword ptr [rbp + dv_win_mult - vars], eax
cap_next:
    lea ecx, [r12 + 1]
    call cfg_read8
    and eax, 0xfc
    mov r12d, eax
    jmp cap_loop

choose:                                  # r10 = mechanism, r8 = window base, r9d = length, r11d = multiplier
    movzx eax, byte ptr [rbp + dv_offers - vars]
    mov r9d, dword ptr [rbp + dv_win_len - vars]
    mov r11d, dword ptr [rbp + dv_win_mult - vars]
    cmp qword ptr [rbp + dv_common - vars], 0
    je no_common                       # options 1 and 2 need queue_notify_off from common config
    test al, OFFER_PV
    jz 1f
    mov r10d, M_PV
    mov r8, qword ptr [rbp + dv_pv - vars]
    jmp kick_all
1:  test al, OFFER_PORT
    jz 2f
    mov r10d, M_PORT
    jmp kick_all
2:  test al, OFFER_HC
    jz 3f
    mov r10d, M_HC
    mov r8, qword ptr [rbp + dv_hc - vars]
    jmp kick_all
3:  mov r8, qword ptr [rbp + dv_notify - vars]
    test r8, r8
    jz 4f
    mov r10d, M_MMIO
    mov r9d, dword ptr [rbp + dv_notify_len - vars]
    mov r11d, dword ptr [rbp + dv_notify_mult - vars]
    jmp kick_all
no_common:
    test al, OFFER_PORT
    jz 4f
    mov r10d, M_PORT
    jmp kick_all
4:  cmp dword ptr [rbp + dv_iobar - vars], 0
    je 5f
    mov r10d, M_IOBAR
    jmp kick_all
5:  mov r10d, M_NONE
    inc dword ptr [rbp + tallies - vars + r10*4]
    ret

# ---- kick every queue q of the device q+1 times with mechanism r10 ------------------------------------------
kick_all:
    inc dword ptr [rbp + tallies - vars + r10*4]
    xor r12d, r12d                     # r12 = queue
queue_loop:
    mov rsi, qword ptr [rbp + dv_common - vars]
    test rsi, rsi
    jz legacy_queue
    cmp r12w, word ptr [rsi + 0x12]    # num_queues
    jae queues_done
    mov word ptr [rsi + 0x16], r12w    # queue_select
    cmp r10d, M_PORT                   # port kicks carry the queue in AX; no address to compute
    je kick_queue
    cmp r10d, M_IOBAR
    je kick_queue
    movzx eax, word ptr [rsi + 0x1e]   # queue_notify_off
    imul eax, r11d
    lea edx, [eax + 2]
    cmp edx, r9d                       # the 2-byte kick must stay inside the window
    ja bad_queue
    lea rdi, [r8 + rax]                # rdi = this queue's notify address
    jmp kick_queue
legacy_queue:                            # legacy layout: select, read the size; 0 means no such queue
    mov edx, dword ptr [rbp + dv_iobar - vars]
    test edx, edx
    jz queues_done_port                # assigned port on a device without common config: one queue
    add edx, 0x0e
    mov eax, r12d
    out dx, ax
    sub edx, 2
    in ax, dx
    test ax, ax
    jz queues_done
kick_queue:
    lea r13d, [r12 + 1]                # kicks left
kick_once:
    mov eax, r12d
    cmp r10d, M_PV
    je k_pv
    cmp r10d, M_PORT
    je k_port
    cmp r10d, M_HC
    je k_hc
    cmp r10d, M_MMIO
    je k_mmio
    mov edx, dword ptr [rbp + dv_iobar - vars]
    add edx, 0x10                      # legacy QUEUE_NOTIFY
    out dx, ax
    jmp kicked
k_pv:
    mov rdx, rdi
    mov word ptr [rdx], ax             # the pv encoding 66 89 02
    jmp kicked
k_port:
    mov edx, dword ptr [rbp + dv_port - vars]
    out dx, ax
    jmp kicked
k_mmio:
    mov word ptr [rdi], ax             # any MMIO store: 66 89 07, decoded by the host
    jmp kicked
k_hc:
    push rbx
    mov eax, dword ptr [rbp + dv_hcnr - vars]
    mov rbx, rdi
    mov ecx, 2
    mov edx, r12d
    vmcall
    pop rbx
    test rax, rax
    jz kicked
    inc dword ptr [rbp + tallies - vars + M_BAD*4]
kicked:
    dec r13d
    jnz kick_once
    inc r12d
    jmp queue_loop
bad_queue:
    inc dword ptr [rbp + tallies - vars + M_BAD*4]
    inc r12d
    jmp queue_loop
queues_done_port:
    test r12d, r12d
    jnz queues_done
    lea r13d, [r12 + 1]
    jmp kick_once
queues_done:
    ret

# ---- helpers -----------------------------------------------------------------------------------
# cap_addr: BAR[cap.bar] + cap.offset for the virtio capability at r12
cap_addr:
    lea ecx, [r12 + 4]
    call cfg_read8
    push rax
    lea ecx, [r12 + 8]
    call cfg_read32
    mov edx, eax
    pop rax
    jmp bar_add
# bar_plus: BAR[al] + the 16-bit offset at config r12 + r8
bar_plus:
    push rax
    lea ecx, [r12 + r8]
    call cfg_read16
    mov edx, eax
    pop rax
# bar_add: rax = BAR[al] (memory, low 4 bits masked) + edx
bar_add:
    movzx eax, al
    lea ecx, [rax*4 + 0x10]
    push rdx
    call cfg_read32
    pop rdx
    and eax, 0xfffffff0
    add rax, rdx
    ret

# config accesses: ebx = bus/dev/fn bits, ecx = register; CONFIG_ADDRESS takes the dword-aligned
# register, then byte/word reads pick their lane of CONFIG_DATA (0xCFC + register % 4)
cfg_latch:
    mov eax, ecx
    and eax, 0xfc
    or eax, ebx
    or eax, 0x80000000
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov edx, ecx
    and edx, 3
    add edx, PCI_CONFIG_DATA
    ret
cfg_read32:
    call cfg_latch
    in eax, dx
    ret
cfg_read16:
    call cfg_latch
    in ax, dx
    movzx eax, ax
    ret
cfg_read8:
    call cfg_latch
    in al, dx
    movzx eax, al
    ret
cfg_write16:                             # ax = value
    push rax
    call cfg_latch
    pop rax
    out dx, ax
    ret

# console: puts (rsi = NUL-terminated), putc (al), putdec (eax)
puts:
    mov al, byte ptr [rsi]
    test al, al
    jz 1f
    call putc
    inc rsi
    jmp puts
1:  ret
putc:
    mov dx, CONSOLE_PORT
    out dx, al
    ret
putdec:
    lea rdi, [rbp + digits_end - vars]
    mov ecx, 10
1:  xor edx, edx
    div ecx
    add dl, '0'
    dec rdi
    mov byte ptr [rdi], dl
    test eax, eax
    jnz 1b
2:  mov al, byte ptr [rdi]
    call putc
    inc rdi
    lea rax, [rbp + digits_end - vars]
    cmp rdi, rax
    jb 2b
    ret

msg_head: .asciz "pci: devices="
s_pv: .asciz " pv="
s_port: .asciz " port="
s_hc: .asciz " hypercall="
s_mmio: .asciz " mmio="
s_iobar: .asciz " iobar="
s_none: .asciz " none="
s_bad: .asciz " bad="
    .balign 8
names: .quad s_pv, s_port, s_hc, s_mmio, s_iobar, s_none, s_bad

    .balign 8
vars:
q_head: .long 0
q_tail: .long 0
n_dev: .long 0
tallies: .long 0, 0, 0, 0, 0, 0, 0
digits: .space 12
digits_end:
    .balign 8
dv:                                      # the device being driven
dv_common: .quad 0
dv_notify: .quad 0
dv_pv: .quad 0
dv_hc: .quad 0
dv_notify_len: .long 0
dv_notify_mult: .long 0
dv_win_len: .long 0
dv_win_mult: .long 0
dv_iobar: .long 0
dv_port: .long 0
dv_hcnr: .long 0
dv_offers: .byte 0
dv_end:
busq: .space 256
