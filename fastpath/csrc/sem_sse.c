/* MOVNTI, MOVD/MOVQ and the 16-byte SSE moves, and LODS (see sem.h); emu/emulate.py _mov, _sse,
 * _string.
 *
 * A 16-byte access is two 8-byte device accesses, low half first (emu/emulate.py _Exec.read/write,
 * which is also how Unicorn delivers it).  MOVD/MOVQ loads zero the rest of the XMM register.
 * XMM registers come through the CPU view's `vec` accessor; a view without one (a replay record
 * carries no vector registers) refuses before any device access. */
#include "sem.h"

/* Iterations one exit performs for REP LODS before leaving RIP on the instruction (an interrupted
 * REP): emu/emulate.py REP_BUDGET. */
#define XS_REP_BUDGET (1ull << 16)

uint32_t xs_sse(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a)
{
    int size = s->size;
    if (s->op == XS_MOVNTI) {
        if (!s->mem_is_dest)
            return XL_E_UNSUPPORTED;
        xs_dev(ctx, r, a, size, 1, xs_get_reg(c, s->reg, s->hi8, s->reg_size));
        return XL_OK;
    }
    uint64_t lo = 0, hi = 0;
    if (size != 4 && size != 8 && size != 16)
        return XL_E_UNSUPPORTED;
    if (s->mem_is_dest) {
        if (xs_xmm(c, s->reg, 0, &lo, &hi) < 0)
            return XL_E_UNSUPPORTED;
        xs_dev(ctx, r, a, size < 8 ? size : 8, 1, lo);
        if (size == 16)
            xs_dev(ctx, r, a + 8, 8, 1, hi);
        return XL_OK;
    }
    if (xs_xmm(c, s->reg, 0, &lo, &hi) < 0)  /* refuse before the device read if there is no XMM */
        return XL_E_UNSUPPORTED;
    lo = xs_dev(ctx, r, a, size < 8 ? size : 8, 0, 0);
    hi = size == 16 ? xs_dev(ctx, r, a + 8, 8, 0, 0) : 0;
    xs_xmm(c, s->reg, 1, &lo, &hi);
    return XL_OK;
}

/* Element source of LODS after the first: a device (claimed, or the exit's own address) or RAM. */
static uint32_t lods_read(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                          uint64_t addr, int size, uint64_t *v)
{
    if (xl_dev_claims(ctx, addr) || addr == ex->addr) {
        if (xs_span(ctx, addr, size) != XL_OK)
            return XL_E_UNMAPPED;  /* rule 6: this element faults, earlier ones stay done */
        *v = xs_dev(ctx, r, addr, size, 0, 0);
        return XL_OK;
    }
    uint64_t off = addr - c->mem_base;
    if (addr < c->mem_base || off >= c->mem_size || c->mem_size - off < (uint64_t)size)
        return XL_E_NOMEM;
    uint64_t x = 0;
    for (int i = size - 1; i >= 0; i--)
        x = (x << 8) | c->mem[off + (uint64_t)i];
    *v = x;
    return XL_OK;
}

uint32_t xs_lods(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                 const struct xl_sem *s, uint64_t rip)
{
    int size = s->size, asz = s->m.addr_size;
    uint64_t next = (rip + s->m.len) & (c->mode == 64 ? ~0ull : 0xFFFFFFFFull);
    uint64_t count = s->rep ? xs_get_reg(c, 1, 0, asz) : 1;
#ifdef XL_STOP_POLL
    c->iters = 0;
#endif
    if (count == 0) {
        r->next_rip = next;
        return XL_OK;
    }
    if (size != 1 && size != 2 && size != 4 && size != 8)
        return XL_E_UNSUPPORTED;
    /* the first element is the one that exited (emu/generic.py _check_address) */
    if (ex->addr - xs_ea(c, s, rip, 0) >= (uint64_t)size)
        return XL_E_MISMATCH;
    uint64_t step = (xl_cpu_get(c, XL_RFLAGS) & XS_FLAG_DF) ? (uint64_t)-(int64_t)size : (uint64_t)size;
#ifdef XL_STOP_POLL
    /* The engine with per-exit REP budgets (SEMANTICS rules 1 and 8, exec_string in paths.c): at
     * most c->max_iter iterations, a look at the stop flag every XL_STOP_POLL, and c->iters the
     * REP entries as the budget counts them (one more for the entry that finds rCX = 0). */
    uint64_t n = c->max_iter && count > c->max_iter ? c->max_iter : count;
#else
    uint64_t n = count < XS_REP_BUDGET ? count : XS_REP_BUDGET;
#endif
    uint64_t k;
    uint32_t st = XL_OK;
    for (k = 0; k < n; k++) {
#ifdef XL_STOP_POLL
        if ((k & (XL_STOP_POLL - 1)) == XL_STOP_POLL - 1 && c->stop_flag && *c->stop_flag)
            break;
#endif
        uint64_t v;
        st = lods_read(ctx, ex, c, r, xs_ea(c, s, rip, 0), size, &v);
        if (st != XL_OK)
            break;  /* earlier iterations stay done */
        xs_set_reg(c, 0, 0, size, v);
        r->wb = xl_cpu_get(c, 0);
        xs_set_reg(c, 6, 0, asz, xs_get_reg(c, 6, 0, asz) + step);
        if (s->rep)
            xs_set_reg(c, 1, 0, asz, count - k - 1);
    }
    int done = k == count;
#ifdef XL_STOP_POLL
    c->iters = k;
    if (done && s->rep) {
        if (c->max_iter && c->max_iter <= k)
            done = 0;
        else
            c->iters = k + 1;
    }
#endif
    if (st != XL_OK)
        return st;
    r->next_rip = done ? next : rip;
    return XL_OK;
}
