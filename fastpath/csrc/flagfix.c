/* RFLAGS corrections for Unicorn 2.1.4 (flagfix.h). No allocation per exit or per hook call. */
#include <stdlib.h>
#include <string.h>

#include "devstate.h"
#include "flagfix.h"
#include "lockguard.h"
#include "sem.h"

#define ARITH_FLAGS 0x8D5ull /* OF SF ZF AF PF CF */

int xl_ff_init(struct xl_flagfix *f, uc_engine *uc, const int *ids, const uint8_t *ram, uint64_t ram_base,
               uint64_t ram_size, int mode)
{
    memset(f, 0, sizeof(*f));
    f->uc = uc;
    f->ids = ids;
    f->ram = ram;
    f->ram_base = ram_base;
    f->ram_size = ram_size;
    f->mode = mode;
    f->stash_addr = XL_FF_NONE;
    f->neg_after = XL_FF_NONE;
    return xl_sh_init(&f->hooks, uc, XL_FF_MAX_SITES);
}

void xl_ff_free(struct xl_flagfix *f)
{
    xl_sh_free(&f->hooks);
}

void xl_ff_stash(struct xl_flagfix *f, uint64_t address)
{
    f->stash_addr = address;
    uc_reg_read(f->uc, UC_X86_REG_EFLAGS, &f->stash_flags);
}

void xl_ff_fault(struct xl_flagfix *f, uint64_t rip_id)
{
    f->neg_after = XL_FF_NONE;
    if (f->stash_addr == XL_FF_NONE)
        return;
    uint64_t rip = 0;
    uc_reg_read(f->uc, (int)rip_id, &rip);
    if (rip == f->stash_addr) {
        uc_reg_write(f->uc, UC_X86_REG_EFLAGS, &f->stash_flags);
        f->stash_addr = XL_FF_NONE;
    }
}

static void hook_stash(uc_engine *uc, uint64_t address, uint32_t size, void *ud)
{
    (void)uc;
    (void)size;
    xl_ff_stash((struct xl_flagfix *)ud, address);
}

static int add_hook(struct xl_flagfix *f, void *cb, uint64_t begin, uint64_t end, uint64_t site)
{
    return xl_sh_add(&f->hooks, cb, f, begin, end, site);
}

static void hook_neg_start(uc_engine *uc, uint64_t address, uint32_t size, void *ud)
{
    struct xl_flagfix *f = (struct xl_flagfix *)ud;
    (void)uc;
    (void)size;
    for (size_t i = 0; i < f->nnegs; i++) {
        const struct xl_ff_neg *n = &f->negs[i];
        if (n->start != address)
            continue;
        const struct xl_insn *d = &n->d;
        uint64_t ea = (uint64_t)d->disp;
        if (d->base == XL_BASE_RIP)
            ea += n->after;
        else if (d->base != XL_NOREG)
            ea += xl_uc_reg(f->uc, f->ids, d->base);
        if (d->index != XL_NOREG)
            ea += xl_uc_reg(f->uc, f->ids, d->index) * d->scale;
        if (d->addr_size < 8)
            ea &= (1ull << (8 * d->addr_size)) - 1;
        if (d->seg == XL_SEG_FS || d->seg == XL_SEG_GS)
            ea += xl_uc_reg(f->uc, f->ids, d->seg == XL_SEG_FS ? XL_FS_BASE : XL_GS_BASE);
        if (f->mode != 64)
            ea &= 0xFFFFFFFFull;
        f->neg_after = n->after;
        f->neg_ea = ea;
        f->neg_size = d->size;
        /* and the RFLAGS it starts with: a decline in place (the hook removes the window's
         * permissions) was restored with AF lost after a CMP in the same block */
        xl_ff_stash(f, address);
        return;
    }
}

void xl_ff_settle(struct xl_flagfix *f, uint64_t address)
{
    if (f->neg_after != address)
        return;
    f->neg_after = XL_FF_NONE;
    int n = f->neg_size;
    if (f->neg_ea < f->ram_base || f->neg_ea - f->ram_base + (uint64_t)n > f->ram_size)
        return;  /* a device operand is an exit: the path computed the flags */
    uint64_t result = 0, flags = 0, rflags = 0;
    memcpy(&result, f->ram + (f->neg_ea - f->ram_base), (size_t)n);  /* RAM holds the result */
    uint64_t mask = n >= 8 ? ~0ull : (1ull << (8 * n)) - 1;
    xl_sub_flags(0, (0 - result) & mask, 0, n, &flags);  /* NEG's flags are those of 0 - operand */
    uc_reg_read(f->uc, UC_X86_REG_EFLAGS, &rflags);
    rflags = (rflags & ~ARITH_FLAGS) | (flags & ARITH_FLAGS);
    uc_reg_write(f->uc, UC_X86_REG_EFLAGS, &rflags);
}

static void hook_neg_after(uc_engine *uc, uint64_t address, uint32_t size, void *ud)
{
    (void)uc;
    (void)size;
    xl_ff_settle((struct xl_flagfix *)ud, address);
}

/* Decode the LOCK NEG m at `start` as the MOV load with the same ModRM (8A/8B; the subset decoder
 * takes neither LOCK nor NEG) and hook it and the address after it. */
static void hook_lock_neg(struct xl_flagfix *f, uint64_t start)
{
    const uint8_t *p = f->ram + (start - f->ram_base);
    uint64_t left = f->ram_base + f->ram_size - start;
    size_t n = left < XL_LOCK_MAX_INSN ? (size_t)left : XL_LOCK_MAX_INSN;
    uint8_t buf[XL_LOCK_MAX_INSN];
    size_t k = 0, dropped = 0, i = 0;
    for (; i < n && xl_is_prefix(p[i], f->mode); i++) {
        if (p[i] != 0xF0) {
            buf[k++] = p[i];
        } else if (k && f->mode == 64 && buf[k - 1] >= 0x40 && buf[k - 1] <= 0x4F) {
            return;  /* a REX cancelled by the LOCK after it: left alone (rare) */
        } else {
            dropped++;
        }
    }
    if (i >= n || (p[i] != 0xF6 && p[i] != 0xF7) || f->nnegs >= XL_FF_MAX_NEGS)
        return;
    buf[k++] = p[i] == 0xF6 ? 0x8A : 0x8B;
    memcpy(buf + k, p + i + 1, n - i - 1);
    struct xl_ff_neg *ns = &f->negs[f->nnegs];
    int len = xl_decode_subset(buf, k + (n - i - 1), f->mode, &ns->d);
    if (len <= 0 || ns->d.kind != XL_K_READ)
        return;
    ns->start = start;
    ns->after = start + (uint64_t)len + dropped;
    if (f->mode != 64)
        ns->after &= 0xFFFFFFFFull;
    if (f->hooks.n + 2 > XL_FF_MAX_SITES)
        return;
    if (!add_hook(f, (void *)hook_neg_start, start, start, start))
        return;
    if (!add_hook(f, (void *)hook_neg_after, ns->after, ns->after, ns->after)) {
        xl_sh_drop_last(&f->hooks);
        return;
    }
    f->nnegs++;
}

void xl_ff_scan(struct xl_flagfix *f, uint64_t lo, uint64_t hi)
{
    const uint8_t *data = f->ram + (lo - f->ram_base);
    uint64_t found[64];
    size_t n = f->all ? 0 : xl_setcc_scan(data, (size_t)(hi - lo), lo, f->mode, found, 64);
    for (size_t i = 0; i < n && !f->all; i++) {
        if (xl_sh_known(&f->hooks, found[i]))
            continue;
        if (n > 64 || f->hooks.n >= XL_FF_MAX_SITES) {
            add_hook(f, (void *)hook_stash, 1, 0, found[i]);
            f->all = 1;
        } else {
            add_hook(f, (void *)hook_stash, found[i], found[i], found[i]);
        }
    }
    n = xl_lock_neg_scan(data, (size_t)(hi - lo), lo, f->mode, found, 64);
    for (size_t i = 0; i < n && i < 64; i++) {
        size_t j;
        for (j = 0; j < f->nnegs && f->negs[j].start != found[i]; j++)
            ;
        if (j == f->nnegs)
            hook_lock_neg(f, found[i]);
    }
}
