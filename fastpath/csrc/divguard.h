/* IDIV r/m32 that would kill the process under Unicorn 2.1.4, stopped with the guest's #DE instead
 * (the Python twin: emu/divguard.py; emu/divsites.py explains the bug and the measurements).
 *
 * QEMU's helper_idivl_EAX divides EDX:EAX by the sign-extended divisor with a host 64-bit division
 * before checking the quotient: EDX:EAX = 0x80000000_00000000 by -1 raises SIGFPE in the host.  No
 * other DIV/IDIV form or operand size traps (measured).  Every IDIV r/m32 start the code guard's page
 * scan finds (before QEMU translates the page) gets a UC_HOOK_CODE bounded to it: two register reads
 * per execution, nothing for other instructions.  With the trapping dividend, the divisor is read
 * (register, or a dword in RAM) and -1 stops the run at the IDIV, state as before it: `stop(ud, rip,
 * 0)` for #DE, `stop(ud, rip, 6)` for a LOCK-prefixed IDIV (#UD; Unicorn ignores the prefix).  A
 * divisor on a device: exit style faults before the divide (the path emulates the IDIV); in place
 * the hook arms `de_at` and the run loop passes the device's value through xl_dg_device_value, which
 * hands QEMU 0 for -1 so that QEMU raises #DE itself after the read. */
#ifndef XL_DIVGUARD_H
#define XL_DIVGUARD_H

#include <stddef.h>
#include <stdint.h>

#include <unicorn/unicorn.h>

#include "paths.h"
#include "sitehooks.h"

#define XL_DG_MAX_SITES 256 /* hooks one by one; beyond, one hook on all code */
#define XL_DG_NONE UINT64_MAX

struct xl_divguard {
    uc_engine *uc;
    const int *ids; /* exitlab register number -> Unicorn id, -1 when the mode has none */
    const struct xl_ctx *ctx;
    const uint8_t *ram;
    uint64_t ram_base, ram_size;
    int mode, inplace;
    void (*stop)(void *ud, uint64_t rip, int vector);
    void *ud;
    struct xl_sitehooks hooks; /* one per IDIV r/m32 start found */
    int all;        /* too many sites: one hook on every instruction */
    uint64_t de_at; /* in place: the IDIV whose device divisor xl_dg_device_value judges */
};

/* An IDIV r/m32 as QEMU 2.1.4's decoder sees it (operand size from 66 and a REX right before F7). */
struct xl_idiv32 {
    int opcode; /* index of F7 */
    uint8_t modrm, rex, locked;
};

/* 1 and *out filled when p[0..n) starts an IDIV r/m32; 0 otherwise. */
int xl_idiv32(const uint8_t *p, size_t n, int mode, struct xl_idiv32 *out);

/* Addresses base+k where an instruction starting at data[k] is an IDIV r/m32; writes up to cap of
 * them to out and returns how many there are (may exceed cap). */
size_t xl_idiv32_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap);

/* 0, or -1 when out of memory (then xl_dg_free is still safe). */
int xl_dg_init(struct xl_divguard *g, uc_engine *uc, const int *ids, const struct xl_ctx *ctx, const uint8_t *ram,
               uint64_t ram_base, uint64_t ram_size, int mode, int inplace,
               void (*stop)(void *ud, uint64_t rip, int vector), void *ud);
/* Hook the new IDIV r/m32 starts in guest RAM [lo, hi) (a page being scanned). */
void xl_dg_scan(struct xl_divguard *g, uint64_t lo, uint64_t hi);
/* In place, for a device read by the instruction at `rip` while de_at is armed: the value QEMU gets. */
uint64_t xl_dg_device_value(struct xl_divguard *g, uint64_t rip, int size, uint64_t value);
/* Delete the hooks, free the tables. */
void xl_dg_free(struct xl_divguard *g);

#endif
