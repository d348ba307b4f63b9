/* BT, BTS, BTR, BTC on memory (see sem.h); emu/emulate.py _bitop.
 *
 * An immediate offset is taken modulo the operand width.  A register offset is signed and may
 * address memory outside the operand: the operand moves by (offset >> log2(bits)) operands, the
 * byte offset joining the displacement so it wraps at the address size like the rest.  Only CF
 * changes (the other status flags are undefined; Unicorn leaves them, and so do we). */
#include "sem.h"

uint32_t xs_bit(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                const struct xl_sem *s, uint64_t rip)
{
    int size = s->size;
    int bits = 8 * size;
    int log2bits = bits == 8 ? 3 : bits == 16 ? 4 : bits == 32 ? 5 : 6;
    uint64_t a, bit;
    if (s->has_imm) {
        a = xs_ea(c, s, rip, 0);
        bit = s->imm % (uint64_t)bits;
    } else {
        /* the offset register as Python reads it (its own width), signed at the operand width */
        __int128 off = (__int128)xs_get_reg(c, s->reg, s->hi8, s->reg_size);
        if ((off >> (bits - 1)) != 0)
            off -= (__int128)1 << bits;
        __int128 moved = (off >> log2bits) * size;  /* floor, as Python's >> */
        a = xs_ea(c, s, rip, (uint64_t)moved);
        bit = (uint64_t)(off & (bits - 1));
        if (ex->addr - a >= (uint64_t)size)
            return XL_E_MISMATCH;
        if (xs_span(ctx, a, size) != XL_OK)
            return XL_E_UNMAPPED;
    }
    uint64_t v = xs_dev(ctx, r, a, size, 0, 0);
    uint64_t cf = (v >> bit) & 1;
    switch (s->op) {
    case XS_BTS: xs_dev(ctx, r, a, size, 1, v | (1ull << bit)); break;
    case XS_BTR: xs_dev(ctx, r, a, size, 1, v & ~(1ull << bit)); break;
    case XS_BTC: xs_dev(ctx, r, a, size, 1, v ^ (1ull << bit)); break;
    default: break;
    }
    xs_set_status(c, cf ? XS_FLAG_CF : 0, XS_STATUS & ~XS_FLAG_CF);
    return XL_OK;
}
