/* SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR (by 1, CL, imm8) and SHLD/SHRD on a memory operand (see
 * sem.h); emu/semantics/shift.py is the reference.
 *
 * The count is masked to 5 bits (6 with a 64-bit operand).  The operand is read and written back
 * whatever the count (QEMU and KVM write it back: a device sees the write); a masked count of 0
 * changes no flag, and neither does an RCL/RCR count that is 0 modulo 9 / 17 / 33 / 65.
 * Undefined flags follow Unicorn (QEMU 5), as the Python path does: SHL/SHR/SAR/SHLD/SHRD with
 * a count > 1 take OF from (value shifted by count-1) XOR result, AF = 0; rotates compute OF by
 * the 1-bit formula for every count and leave SF ZF AF PF.  SHLD/SHRD on 16 bits shift dst:src:dst
 * (Intel's and QEMU's result for counts 17..31, which the SDM leaves undefined). */
#include "sem.h"

/* The family's rows: the [forms] rows of emu/x86-opcode-map.txt with C table `shift`. */
static const struct xs_form rows[] = {XL_OPMAP_SHIFT(XS_FORM_ROW)};

const struct xs_form *xs_shift_form(unsigned id)
{
    switch (id) {
    XL_OPMAP_SHIFT_CASES
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

/* QEMU's CC_OP_SHL / CC_OP_SAR from (result, value shifted by count-1) */
static uint64_t shift_flags(uint64_t res, uint64_t shm1, int n, int right)
{
    int bits = 8 * n;
    uint64_t cf = right ? shm1 & 1 : (shm1 >> (bits - 1)) & 1;
    uint64_t of = ((shm1 ^ res) >> (bits - 1)) & 1;
    return xl_logic_flags(res & xs_mask(n), n) | (cf ? XS_FLAG_CF : 0) | (of ? XS_FLAG_OF : 0);
}

static uint32_t shift_double(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s,
                             uint64_t a, unsigned cnt)
{
    int n = s->size;
    int right = s->op == XS_SHRD;
    uint64_t dst = xs_dev(ctx, r, a, n, 0, 0);
    uint64_t src = xs_get_reg(c, s->reg, s->hi8, n);
    if (cnt == 0) {
        xs_dev(ctx, r, a, n, 1, dst);
        return XL_OK;
    }
    uint64_t res, shm1;
    if (n == 8) {
        if (right) {
            res = (dst >> cnt) | (src << (64 - cnt));
            shm1 = dst >> (cnt - 1);
        } else {
            res = (dst << cnt) | (src >> (64 - cnt));
            shm1 = dst << (cnt - 1);
        }
    } else {
        u128 wide;
        if (n == 2)
            wide = ((u128)dst << 32) | ((u128)src << 16) | dst;
        else
            wide = right ? ((u128)src << 32) | dst : ((u128)dst << 32) | src;
        if (right) {
            res = (uint64_t)(wide >> cnt);
            shm1 = (uint64_t)(wide >> (cnt - 1));
        } else {
            res = (uint64_t)((wide << cnt) >> 32);
            shm1 = (uint64_t)((wide << (cnt - 1)) >> 32);
        }
    }
    res &= xs_mask(n);
    xs_dev(ctx, r, a, n, 1, res);
    xs_set_status(c, shift_flags(res, shm1 & xs_mask(n), n, right), 0);
    return XL_OK;
}

uint32_t xs_shift(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a)
{
    int n = s->size, bits = 8 * n;
    if (n != 1 && n != 2 && n != 4 && n != 8)
        return XL_E_UNSUPPORTED;
    unsigned raw = s->has_imm ? (unsigned)s->imm : (unsigned)xs_get_reg(c, 1, 0, 1);  /* imm8 or CL */
    unsigned cnt = raw & (n == 8 ? 0x3Fu : 0x1Fu);
    if (s->op == XS_SHLD || s->op == XS_SHRD)
        return shift_double(ctx, c, r, s, a, cnt);
    uint64_t m = xs_mask(n);
    uint64_t v = xs_dev(ctx, r, a, n, 0, 0);
    uint64_t res = v, flags = 0, keep = 0;
    int set = 0;
    switch (s->op) {
    case XS_SHL: case XS_SHR: case XS_SAR:
        if (cnt) {
            uint64_t shm1;
            if (s->op == XS_SHL) {
                shm1 = v << (cnt - 1);
                res = v << cnt;
            } else if (s->op == XS_SHR) {
                shm1 = v >> (cnt - 1);
                res = v >> cnt;
            } else {
                int64_t sv = (int64_t)(v << (64 - bits)) >> (64 - bits);
                shm1 = (uint64_t)(sv >> (cnt - 1));
                res = (uint64_t)(sv >> cnt);
            }
            res &= m;
            flags = shift_flags(res, shm1 & m, n, s->op != XS_SHL);
            set = 1;
        }
        break;
    case XS_ROL: case XS_ROR:
        if (cnt) {
            unsigned k = cnt % (unsigned)bits;
            uint64_t cf, of;
            if (s->op == XS_ROL) {
                res = k ? ((v << k) | (v >> (bits - k))) & m : v;
                cf = res & 1;
                of = ((res >> (bits - 1)) & 1) ^ cf;
            } else {
                res = k ? ((v >> k) | (v << (bits - k))) & m : v;
                cf = (res >> (bits - 1)) & 1;
                of = cf ^ ((res >> (bits - 2)) & 1);
            }
            flags = (cf ? XS_FLAG_CF : 0) | (of ? XS_FLAG_OF : 0);
            keep = XS_STATUS & ~(XS_FLAG_CF | XS_FLAG_OF);
            set = 1;
        }
        break;
    default: { /* RCL / RCR through CF, on bits+1 bits */
        unsigned k = cnt % (unsigned)(bits + 1);
        if (k) {
            u128 w1 = ((u128)1 << (bits + 1)) - 1;
            u128 cin = (xl_cpu_get(c, XL_RFLAGS) & XS_FLAG_CF) ? 1 : 0;
            u128 wide = ((u128)cin << bits) | v;
            if (s->op == XS_RCL)
                wide = ((wide << k) | (wide >> (bits + 1 - k))) & w1;
            else
                wide = ((wide >> k) | (wide << (bits + 1 - k))) & w1;
            res = (uint64_t)wide & m;
            uint64_t cf = (uint64_t)(wide >> bits) & 1;
            uint64_t of = ((v ^ res) >> (bits - 1)) & 1;
            flags = (cf ? XS_FLAG_CF : 0) | (of ? XS_FLAG_OF : 0);
            keep = XS_STATUS & ~(XS_FLAG_CF | XS_FLAG_OF);
            set = 1;
        }
        break;
    }
    }
    xs_dev(ctx, r, a, n, 1, res);
    if (set)
        xs_set_status(c, flags, keep);
    return XL_OK;
}
