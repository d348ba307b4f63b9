/* MUL, IMUL (one, two and three operands), DIV, IDIV with a memory operand (see sem.h);
 * emu/semantics/muldiv.py is the reference.
 *
 * Flags: MUL/IMUL set CF=OF when the result does not fit the destination half; SF ZF AF PF are
 * undefined and follow Unicorn (QEMU's CC_OP_MUL*): SF/ZF/PF from the low half, AF 0.  DIV/IDIV
 * leave every status flag unchanged (undefined; Unicorn leaves them).  A zero divisor or a
 * quotient that does not fit is #DE: XL_E_DE after the divisor's device read (the fault happens
 * on the divide, as on hardware), no register changed.  All arithmetic is in 128 bits, signed
 * division on magnitudes so -2^127 / -1 is a #DE, never undefined behaviour. */
#include "sem.h"

/* The family's rows: the [forms] rows of emu/x86-opcode-map.txt with C table `muldiv`. */
static const struct xs_form rows[] = {XL_OPMAP_MULDIV(XS_FORM_ROW)};

const struct xs_form *xs_muldiv_form(unsigned id)
{
    switch (id) {
    XL_OPMAP_MULDIV_CASES
        break;
    default:
        return NULL;
    }
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].id == id)
            return &rows[i];
    return NULL;
}

typedef unsigned __int128 u128;

static int64_t sext(uint64_t v, int size)
{
    int sh = 64 - 8 * size;
    return (int64_t)(v << sh) >> sh;
}

/* QEMU's compute_all_mul: CF=OF=overflow, SF ZF PF from the low half, AF 0 */
static uint64_t mul_flags(uint64_t low, int overflow, int size)
{
    return xl_logic_flags(low & xs_mask(size), size) | (overflow ? XS_FLAG_CF | XS_FLAG_OF : 0);
}

/* the accumulator halves: AL/AH for bytes (as AX), else rAX and rDX */
static uint32_t mul1(struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t src)
{
    int n = s->size;
    uint64_t acc = xs_get_reg(c, 0, 0, n);
    u128 prod;
    int overflow;
    if (s->op == XS_MUL) {
        prod = (u128)acc * src;
        overflow = (prod >> (8 * n)) != 0;
    } else {
        __int128 sp = (__int128)sext(acc, n) * (__int128)sext(src, n);
        prod = (u128)sp;
        /* fits when the product equals its own sign-extended low half */
        overflow = sp != (__int128)sext((uint64_t)sp & xs_mask(n), n);
    }
    uint64_t lo = (uint64_t)prod & xs_mask(n);
    if (n == 1) {
        xs_set_reg(c, 0, 0, 2, (uint64_t)prod & 0xFFFF);
    } else {
        xs_set_reg(c, 0, 0, n, lo);
        xs_set_reg(c, 2, 0, n, (uint64_t)(prod >> (8 * n)) & xs_mask(n));
    }
    r->wb = xl_cpu_get(c, 0);
    xs_set_status(c, mul_flags(lo, overflow, n), 0);
    return XL_OK;
}

static uint32_t divide(struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t divisor)
{
    int n = s->size, bits = 8 * n;
    u128 dividend = n == 1 ? (u128)xs_get_reg(c, 0, 0, 2)
                           : ((u128)xs_get_reg(c, 2, 0, n) << bits) | xs_get_reg(c, 0, 0, n);
    if (divisor == 0)
        return XL_E_DE;
    u128 q, rem;
    if (s->op == XS_DIV) {
        q = dividend / divisor;
        rem = dividend % divisor;
        if (q > xs_mask(n))
            return XL_E_DE;
    } else {
        /* signed, truncating: magnitudes, then the signs (quotient: xor; remainder: the dividend's) */
        int dneg = (int)((dividend >> (2 * bits - 1)) & 1);
        u128 dmag = dneg ? (u128)0 - dividend : dividend;
        if (2 * bits < 128)
            dmag &= ((u128)1 << (2 * bits)) - 1;
        int vneg = (int)((divisor >> (bits - 1)) & 1);
        uint64_t vmag = vneg ? (0 - divisor) & xs_mask(n) : divisor;
        u128 qm = dmag / vmag, rm = dmag % vmag;
        u128 limit = (u128)1 << (bits - 1);  /* |q| <= 2^(bits-1)-1, or 2^(bits-1) when negative */
        int qneg = dneg != vneg;
        if (qm > limit || (qm == limit && !qneg))
            return XL_E_DE;
        q = qneg ? (u128)0 - qm : qm;
        rem = dneg ? (u128)0 - rm : rm;
    }
    if (n == 1) {
        xs_set_reg(c, 0, 0, 1, (uint64_t)q & 0xFF);
        xs_set_reg(c, 0, 1, 1, (uint64_t)rem & 0xFF);
    } else {
        xs_set_reg(c, 0, 0, n, (uint64_t)q & xs_mask(n));
        xs_set_reg(c, 2, 0, n, (uint64_t)rem & xs_mask(n));
    }
    r->wb = xl_cpu_get(c, 0);
    return XL_OK;
}

uint32_t xs_muldiv(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a)
{
    int n = s->size;
    if (n != 1 && n != 2 && n != 4 && n != 8)
        return XL_E_UNSUPPORTED;
    uint64_t src = xs_dev(ctx, r, a, n, 0, 0);
    if (s->op == XS_DIV || s->op == XS_IDIV)
        return divide(c, r, s, src);
    if (s->op == XS_MUL || !s->has_reg)
        return mul1(c, r, s, src);
    /* IMUL r, r/m [, imm]: the product truncated to r */
    uint64_t other = s->has_imm ? s->imm : xs_get_reg(c, s->reg, s->hi8, s->reg_size);
    __int128 sp = (__int128)sext(src, n) * (__int128)sext(other, n);
    uint64_t lo = (uint64_t)sp & xs_mask(n);
    int overflow = sp != (__int128)sext(lo, n);
    xs_set_reg(c, s->reg, s->hi8, s->reg_size, lo);
    r->wb = xl_cpu_get(c, s->reg);
    xs_set_status(c, mul_flags(lo, overflow, n), 0);
    return XL_OK;
}
