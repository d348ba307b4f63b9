/* ALU read-modify-write, CMP, TEST, INC/DEC/NOT/NEG with exact SDM flags (see sem.h).
 *
 * Flags are computed exactly as emu/emulate.py does (add_flags / sub_flags / logic_flags), in
 * 128-bit arithmetic so a 64-bit carry or borrow is exact.  Undefined flags follow Unicorn (QEMU):
 * the logical operations clear AF. */
#include "sem.h"

static uint64_t parity(uint64_t r)
{
    return (__builtin_popcountll(r & 0xFF) & 1) ? 0 : XS_FLAG_PF;
}

static uint64_t szp(uint64_t r, int size)
{
    int bits = 8 * size;
    return (r == 0 ? XS_FLAG_ZF : 0) | (((r >> (bits - 1)) & 1) ? XS_FLAG_SF : 0) | parity(r);
}

uint64_t xl_add_flags(uint64_t a, uint64_t b, uint64_t carry, int size, uint64_t *flags)
{
    int bits = 8 * size;
    unsigned __int128 full = (unsigned __int128)a + b + carry;
    uint64_t r = (uint64_t)full & xs_mask(size);
    uint64_t f = szp(r, size) | ((full >> bits) != 0 ? XS_FLAG_CF : 0) | ((a ^ b ^ r) & XS_FLAG_AF);
    f |= (((a ^ r) & (b ^ r)) >> (bits - 1)) & 1 ? XS_FLAG_OF : 0;
    *flags = f;
    return r;
}

uint64_t xl_sub_flags(uint64_t a, uint64_t b, uint64_t borrow, int size, uint64_t *flags)
{
    int bits = 8 * size;
    uint64_t r = (a - b - borrow) & xs_mask(size);
    int cf = (unsigned __int128)a < (unsigned __int128)b + borrow;
    uint64_t f = szp(r, size) | (cf ? XS_FLAG_CF : 0) | ((a ^ b ^ r) & XS_FLAG_AF);
    f |= (((a ^ b) & (a ^ r)) >> (bits - 1)) & 1 ? XS_FLAG_OF : 0;
    *flags = f;
    return r;
}

uint64_t xl_logic_flags(uint64_t r, int size)
{
    return szp(r, size);
}

/* result and flags of a binary op on (d, s): one row per operation class */
static uint64_t binop(int op, uint64_t d, uint64_t s, uint64_t cf, int size, uint64_t *flags)
{
    uint64_t r;
    switch (op) {
    case XS_ADD: return xl_add_flags(d, s, 0, size, flags);
    case XS_ADC: return xl_add_flags(d, s, cf, size, flags);
    case XS_SUB:
    case XS_CMP: return xl_sub_flags(d, s, 0, size, flags);
    case XS_SBB: return xl_sub_flags(d, s, cf, size, flags);
    case XS_OR: r = d | s; break;
    case XS_XOR: r = d ^ s; break;
    default: r = d & s; break;  /* AND, TEST */
    }
    *flags = xl_logic_flags(r, size);
    return r;
}

/* CRC32 r32/r64, r/m8/16/32/64 (emu/semantics/alu.py _crc32): CRC-32C of the source's bytes, low
 * address first, into the register's low 32 bits (bit-reflected polynomial, no inversion), the
 * result zero-extended; no flags.  F3 next to the mandatory F2 is #UD under Unicorn: refused. */
static uint32_t crc32c(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s,
                       uint64_t a)
{
    if ((s->pfx & XS_PFX_F3) || s->size < 1 || s->size > 8)
        return XL_E_UNSUPPORTED;
    uint64_t v = xs_dev(ctx, r, a, s->size, 0, 0);
    uint32_t crc = (uint32_t)xl_cpu_get(c, s->reg);
    for (int i = 0; i < s->size; i++) {
        crc ^= (uint32_t)(v >> (8 * i)) & 0xFF;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78u : 0);
    }
    xs_set_reg(c, s->reg, 0, s->reg_size, crc);
    r->wb = xl_cpu_get(c, s->reg);
    return XL_OK;
}

uint32_t xs_binary(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a)
{
    if (s->op == XS_CRC32)
        return crc32c(ctx, c, r, s, a);
    int size = s->size;
    uint64_t mem = xs_dev(ctx, r, a, size, 0, 0);
    uint64_t cf = xl_cpu_get(c, XL_RFLAGS) & XS_FLAG_CF;
    int writes = s->op != XS_CMP && s->op != XS_TEST;
    uint64_t flags, res;
    if (s->mem_is_dest) {
        uint64_t src = s->has_imm ? s->imm : xs_get_reg(c, s->reg, s->hi8, s->reg_size);
        res = binop(s->op, mem, src, cf, size, &flags);
        if (writes)
            xs_dev(ctx, r, a, size, 1, res);
    } else {
        res = binop(s->op, xs_get_reg(c, s->reg, s->hi8, s->reg_size), mem, cf, size, &flags);
        if (writes) {
            xs_set_reg(c, s->reg, s->hi8, s->reg_size, res);
            r->wb = xl_cpu_get(c, s->reg);
        }
    }
    xs_set_status(c, flags, 0);
    return XL_OK;
}

uint32_t xs_unary(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a)
{
    int size = s->size;
    uint64_t v = xs_dev(ctx, r, a, size, 0, 0);
    uint64_t res, flags;
    switch (s->op) {
    case XS_NOT:
        xs_dev(ctx, r, a, size, 1, ~v & xs_mask(size));
        return XL_OK;
    case XS_NEG:
        res = xl_sub_flags(0, v, 0, size, &flags);
        xs_dev(ctx, r, a, size, 1, res);
        xs_set_status(c, flags, 0);
        return XL_OK;
    case XS_INC:
        res = xl_add_flags(v, 1, 0, size, &flags);
        break;
    default:
        res = xl_sub_flags(v, 1, 0, size, &flags);
        break;
    }
    xs_dev(ctx, r, a, size, 1, res);
    xs_set_status(c, flags, XS_FLAG_CF);
    return XL_OK;
}
