/* XCHG, XADD, CMPXCHG with a memory operand (see sem.h); emu/emulate.py _xchg/_xadd/_cmpxchg.
 * One device read, then one device write (CMPXCHG writes the destination either way: on failure
 * the old value back, as the SDM says the processor does). */
#include "sem.h"

uint32_t xs_xchg(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a)
{
    int size = s->size;
    uint64_t old = xs_dev(ctx, r, a, size, 0, 0);
    uint64_t flags;
    if (s->op == XS_XCHG) {
        xs_dev(ctx, r, a, size, 1, xs_get_reg(c, s->reg, s->hi8, s->reg_size));
        xs_set_reg(c, s->reg, s->hi8, s->reg_size, old);
        r->wb = xl_cpu_get(c, s->reg);
        return XL_OK;
    }
    if (s->op == XS_XADD) {
        uint64_t sum = xl_add_flags(old, xs_get_reg(c, s->reg, s->hi8, s->reg_size), 0, size, &flags);
        xs_dev(ctx, r, a, size, 1, sum);
        xs_set_reg(c, s->reg, s->hi8, s->reg_size, old);
        r->wb = xl_cpu_get(c, s->reg);
        xs_set_status(c, flags, 0);
        return XL_OK;
    }
    /* CMPXCHG: the accumulator of the operand size (AL/AX/EAX/RAX) */
    xl_sub_flags(xs_get_reg(c, 0, 0, size), old, 0, size, &flags);
    if (flags & XS_FLAG_ZF) {
        xs_dev(ctx, r, a, size, 1, xs_get_reg(c, s->reg, s->hi8, s->reg_size));
    } else {
        xs_dev(ctx, r, a, size, 1, old);
        xs_set_reg(c, 0, 0, size, old);
        r->wb = xl_cpu_get(c, 0);
    }
    xs_set_status(c, flags, 0);
    return XL_OK;
}
