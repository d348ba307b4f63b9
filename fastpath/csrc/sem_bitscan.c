/* BSF, BSR, POPCNT, LZCNT, TZCNT with a memory source (see sem.h); emu/semantics/bitscan.py is
 * the reference.
 *
 * - BSF/BSR: a zero source sets ZF and writes the destination's old value back at the operand
 *   size (a 32-bit destination is zero-extended, as Unicorn does; the SDM says "undefined", AMD
 *   "unchanged").  The other flags are undefined; Unicorn computes them as a logical operation on
 *   the source (SF its top bit, PF its low byte, CF=OF=AF=0), and so do we.
 * - LZCNT/TZCNT (F3 0F BD / F3 0F BC, as Capstone decodes them: the platform's CPU model has
 *   ABM/BMI1): CF = source is zero, ZF = result is zero, OF SF PF AF cleared (Unicorn).
 * - POPCNT: ZF = source is zero, the other five status flags cleared. */
#include "sem.h"

/* The family's rows: the [forms] rows of emu/x86-opcode-map.txt with C table `bitscan`. */
static const struct xs_form rows[] = {XL_OPMAP_BITSCAN(XS_FORM_ROW)};

const struct xs_form *xs_bitscan_form(unsigned id)
{
    switch (id) {
    XL_OPMAP_BITSCAN_CASES
        break;
    default:
        return NULL;
    }
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].id == id)
            return &rows[i];
    return NULL;
}

uint32_t xs_bitscan(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a)
{
    int n = s->size, bits = 8 * n;
    if (n != 2 && n != 4 && n != 8)
        return XL_E_UNSUPPORTED;
    uint64_t v = xs_dev(ctx, r, a, n, 0, 0);
    uint64_t res, flags;
    switch (s->op) {
    case XS_BSF: case XS_BSR:
        if (v)
            res = s->op == XS_BSF ? (uint64_t)__builtin_ctzll(v) : (uint64_t)(63 - __builtin_clzll(v));
        else
            res = xs_get_reg(c, s->reg, s->hi8, s->reg_size);
        flags = xl_logic_flags(v, n);
        break;
    case XS_POPCNT:
        res = (uint64_t)__builtin_popcountll(v);
        flags = v ? 0 : XS_FLAG_ZF;
        break;
    default:
        if (s->op == XS_LZCNT)
            res = v ? (uint64_t)(__builtin_clzll(v) - (64 - bits)) : (uint64_t)bits;
        else
            res = v ? (uint64_t)__builtin_ctzll(v) : (uint64_t)bits;
        flags = (v ? 0 : XS_FLAG_CF) | (res ? 0 : XS_FLAG_ZF);
        break;
    }
    xs_set_reg(c, s->reg, s->hi8, s->reg_size, res);
    r->wb = xl_cpu_get(c, s->reg);
    xs_set_status(c, flags, 0);
    return XL_OK;
}
