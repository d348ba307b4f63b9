/* A table of UC_HOOK_CODE hooks bounded to single instruction starts, shared by the run-time guards
 * that hook the sites the code guard's page scan finds (flagfix.h: SETcc and LOCK NEG; divguard.h:
 * IDIV r/m32).  Allocated once per run, `max` sites plus the one hook on all code a guard falls back
 * to when a page has too many sites; nothing is allocated per exit or per hook call.  Also the
 * byte and register helpers those scans share. */
#ifndef XL_SITEHOOKS_H
#define XL_SITEHOOKS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <unicorn/unicorn.h>

struct xl_sitehooks {
    uc_engine *uc;
    uint64_t *sites;  /* the hooked addresses (the site a hook is for, not its range) */
    uc_hook *hooks;
    size_t n, max;
};

/* 0, or -1 when out of memory (then xl_sh_free is still safe). */
static inline int xl_sh_init(struct xl_sitehooks *t, uc_engine *uc, size_t max)
{
    t->uc = uc;
    t->n = 0;
    t->max = max;
    t->sites = calloc(max + 1, sizeof(uint64_t));
    t->hooks = calloc(max + 1, sizeof(uc_hook));
    return t->sites && t->hooks ? 0 : -1;
}

/* Delete the hooks, free the table. */
static inline void xl_sh_free(struct xl_sitehooks *t)
{
    for (size_t i = 0; i < t->n; i++)
        uc_hook_del(t->uc, t->hooks[i]);
    free(t->sites);
    free(t->hooks);
    t->sites = NULL;
    t->hooks = NULL;
    t->n = 0;
}

static inline int xl_sh_known(const struct xl_sitehooks *t, uint64_t site)
{
    for (size_t j = 0; j < t->n; j++)
        if (t->sites[j] == site)
            return 1;
    return 0;
}

/* One hook more on [begin, end] (begin > end: every instruction) for `site`; 0 when the table is full
 * (the one slot beyond `max` is for the hook on all code) or Unicorn refuses. */
static inline int xl_sh_add(struct xl_sitehooks *t, void *cb, void *ud, uint64_t begin, uint64_t end, uint64_t site)
{
    if (t->n > t->max || uc_hook_add(t->uc, &t->hooks[t->n], UC_HOOK_CODE, cb, ud, begin, end) != UC_ERR_OK)
        return 0;
    t->sites[t->n++] = site;
    return 1;
}

/* Undo the last xl_sh_add. */
static inline void xl_sh_drop_last(struct xl_sitehooks *t)
{
    if (t->n)
        uc_hook_del(t->uc, t->hooks[--t->n]);
}

/* A legacy prefix, or a REX byte in 64-bit mode. */
static inline int xl_is_prefix(uint8_t b, int mode)
{
    return b == 0xF0 || b == 0x26 || b == 0x2E || b == 0x36 || b == 0x3E || b == 0x64 || b == 0x65 || b == 0x66 ||
           b == 0x67 || b == 0xF2 || b == 0xF3 || (mode == 64 && b >= 0x40 && b <= 0x4F);
}

/* exitlab register number `i` read through the id table (0 when the mode has no such register). */
static inline uint64_t xl_uc_reg(uc_engine *uc, const int *ids, int i)
{
    uint64_t v = 0;
    if (ids[i] >= 0)
        uc_reg_read(uc, ids[i], &v);
    return v;
}

#endif
