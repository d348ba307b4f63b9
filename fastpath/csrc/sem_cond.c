/* CMOVcc r, m and SETcc m8 (see sem.h); emu/semantics/cond.py is the reference.
 *
 * CMOVcc reads its memory operand whatever the condition (SDM: "the source operand is read even
 * if the condition is false": a device sees the read either way); a false condition leaves the
 * destination unchanged except that a 32-bit destination is zero-extended in 64-bit mode.  SETcc
 * always writes its byte (1 or 0).  No flag changes.  Each row carries its condition code. */
#include "sem.h"

/* The family's rows: the [forms] rows of emu/x86-opcode-map.txt with C table `cond`. */
static const struct xs_form rows[] = {XL_OPMAP_COND(XS_FORM_ROW)};

const struct xs_form *xs_cond_form(unsigned id)
{
    switch (id) {
    XL_OPMAP_COND_CASES
        break;
    default:
        return NULL;
    }
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].id == id)
            return &rows[i];
    return NULL;
}

int xs_condition(int cc, uint64_t rf)
{
    int cf = !!(rf & XS_FLAG_CF), zf = !!(rf & XS_FLAG_ZF), sf = !!(rf & XS_FLAG_SF);
    int of = !!(rf & XS_FLAG_OF), pf = !!(rf & XS_FLAG_PF);
    int base;
    switch (cc >> 1) {
    case 0: base = of; break;
    case 1: base = cf; break;
    case 2: base = zf; break;
    case 3: base = cf || zf; break;
    case 4: base = sf; break;
    case 5: base = pf; break;
    case 6: base = sf != of; break;
    default: base = zf || sf != of; break;
    }
    return base != (cc & 1);
}

uint32_t xs_cond(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a)
{
    int taken = xs_condition(s->cond, xl_cpu_get(c, XL_RFLAGS));
    if (s->op == XS_SETCC) {
        if (s->size != 1)
            return XL_E_UNSUPPORTED;
        xs_dev(ctx, r, a, 1, 1, taken ? 1 : 0);
        return XL_OK;
    }
    int n = s->size;
    if (n != 2 && n != 4 && n != 8)
        return XL_E_UNSUPPORTED;
    uint64_t v = xs_dev(ctx, r, a, n, 0, 0);
    xs_set_reg(c, s->reg, s->hi8, s->reg_size, taken ? v : xs_get_reg(c, s->reg, s->hi8, s->reg_size));
    r->wb = xl_cpu_get(c, s->reg);
    return XL_OK;
}
