/* CMPXCHG8B, CMPXCHG16B, MOVBE, MOVDIRI, MOVDIR64B (emu/semantics/atomic.py, emu/semantics/mov.py).
 *
 * CMPXCHG8B/16B compare EDX:EAX (RDX:RAX) with the operand; equal: ZF=1 and ECX:EBX (RCX:RBX) is
 * written, else ZF=0, the accumulator pair is loaded and the old value written back (a locked read
 * is always followed by a write).  Only ZF changes.  CMPXCHG16B needs a 16-byte aligned operand
 * (#GP before any access).  On success the accumulators are untouched (SDM; Unicorn zero-extends
 * RAX/RDX there: docs/known-discrepancies.md).  MOVBE swaps bytes between memory and a register;
 * MOVDIRI is a plain store (66/F2/F3: #UD); MOVDIR64B copies 64 bytes from the ModRM operand to
 * ES:[reg] (64-byte aligned, #GP otherwise) as eight 8-byte device reads, then eight writes. */
#include <string.h>

#include "paths.h"
#include "sem.h"

enum { XL_OPMAP_AT_OPS };  /* AT_CMPXCHG8B, AT_MOVBE, ... (opmap.h) */

/* The family's table: Capstone id -> operation and what the encoding allows (the [forms] rows of
 * emu/x86-opcode-map.txt with C table `atomic`). */
#define ROW(id, op, fl, align, cond, pfx) \
    {id, op, !!((fl) & XL_OPMAP_LOCK), align, !!((fl) & XL_OPMAP_SIZED), !!((fl) & XL_OPMAP_NP), \
     !!((fl) & XL_OPMAP_NOF2F3)},
static const struct {
    unsigned id;
    uint8_t op;
    uint8_t lockable;  /* LOCK allowed (with the memory operand as destination) */
    uint8_t align;     /* required alignment of the memory operand (#GP), 0 = none */
    uint8_t sized;     /* 2/4/8-byte operand size from 66/REX.W */
    uint8_t np;        /* 66/F2/F3 make it #UD */
    uint8_t nof2f3;    /* F2/F3 make it another instruction or #UD (MOVBE: F2 0F 38 F0/F1 is CRC32) */
} rows[] = {XL_OPMAP_ATOMIC(ROW)};
#undef ROW

int xs_atomic_has(unsigned id)
{
    switch (id) {
    XL_OPMAP_ATOMIC_CASES
        return 1;
    default:
        return 0;
    }
}

static uint64_t bswap_n(uint64_t v, int n)
{
    uint64_t out = 0;
    for (int i = 0; i < n; i++)
        out = (out << 8) | ((v >> (8 * i)) & 0xFF);
    return out;
}

uint32_t xs_atomic_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                        const struct xs2 *d)
{
    size_t k;
    for (k = 0; k < sizeof(rows) / sizeof(rows[0]) && rows[k].id != d->insn->id; k++)
        ;
    if (k == sizeof(rows) / sizeof(rows[0]))
        return XL_NOT_MINE;
    int op = rows[k].op;
    if (d->nmem != 1)
        return XL_E_UNSUPPORTED;
    int size = d->mem_size;
    if (rows[k].sized && (size == 2 || size == 4 || size == 8))
        size = d->opsize;
    if (rows[k].np && (d->has66 || d->has_f2f3))
        return XL_E_UNSUPPORTED;
    if (rows[k].nof2f3 && d->has_f2f3)
        return XL_E_UNSUPPORTED;  /* F2 0F 38 F0/F1 is CRC32, F3 #UD (Capstone can say MOVBE) */
    int mem_is_dest = op == AT_MOVDIR64B ? 0 : d->mem_is_dest;
    if (d->lock && !(rows[k].lockable && mem_is_dest))
        return XL_E_UNSUPPORTED;  /* LOCK is #UD here */
    uint8_t rnum = 0, rhi = 0;
    int rsize = 0;
    if (op == AT_CMPXCHG8B || op == AT_CMPXCHG16B) {
        if (d->nreg)
            return XL_E_UNSUPPORTED;
        if (size != (op == AT_CMPXCHG8B ? 8 : 16))
            return XL_E_UNSUPPORTED;
    } else {
        if (d->nreg != 1 || xl_cs_gpr(d->reg[0], &rnum, &rhi) < 0)
            return XL_E_UNSUPPORTED;
        rsize = d->reg_size[0];
        if (op != AT_MOVDIR64B && size != 2 && size != 4 && size != 8)
            return XL_E_UNSUPPORTED;
    }
    uint64_t a = xs2_ea(c, d, 0);
    uint64_t dst = 0;
    if (op == AT_MOVDIR64B) {
        /* ES:[reg] at the address size (ES has base 0) */
        int asz = d->m.addr_size;
        dst = xs_get_reg(c, rnum, rhi, rsize) & (asz == 2 ? 0xFFFFull : asz == 4 ? 0xFFFFFFFFull : ~0ull);
        if (c->mode != 64)
            dst &= 0xFFFFFFFFull;
    }
    /* the decoded operand must be the one that exited (emu/generic.py _check_address) */
    uint64_t span = (uint64_t)(size ? size : 1);
    if (!xs2_covers(ex, a, span) && !(op == AT_MOVDIR64B && xs2_covers(ex, dst, span)))
        return XL_E_MISMATCH;
    if (d->mode != 64 && mem_is_dest && d->cs_override)
        return XL_E_GP;  /* a write through CS outside 64-bit mode */
    if (rows[k].align && (a % rows[k].align))
        return XL_E_GP;  /* CMPXCHG16B: misaligned operand */

    uint64_t v;
    switch (op) {
    case AT_CMPXCHG8B:
    case AT_CMPXCHG16B: {
        int half = size / 2;
        uint8_t buf[16];
        XS_TRY(xs2_read(ctx, ex, c, r, a, size, buf));
        uint64_t old_lo = 0, old_hi = 0;
        for (int i = half - 1; i >= 0; i--) {
            old_lo = (old_lo << 8) | buf[i];
            old_hi = (old_hi << 8) | buf[half + i];
        }
        uint64_t lo = xs_get_reg(c, 0, 0, half), hi = xs_get_reg(c, 2, 0, half);
        uint64_t rf = xl_cpu_get(c, XL_RFLAGS) & ~XS_FLAG_ZF;
        if (old_lo == lo && old_hi == hi) {
            uint64_t nlo = xs_get_reg(c, 3, 0, half), nhi = xs_get_reg(c, 1, 0, half);
            for (int i = 0; i < half; i++) {
                buf[i] = (uint8_t)(nlo >> (8 * i));
                buf[half + i] = (uint8_t)(nhi >> (8 * i));
            }
            xs2_write(ctx, ex, c, r, a, size, buf);
            xl_cpu_set(c, XL_RFLAGS, rf | XS_FLAG_ZF);
        } else {
            xs2_write(ctx, ex, c, r, a, size, buf);
            xs_set_reg(c, 0, 0, half, old_lo);
            xs_set_reg(c, 2, 0, half, old_hi);
            r->wb = xl_cpu_get(c, 0);
            xl_cpu_set(c, XL_RFLAGS, rf);
        }
        return XL_OK;
    }
    case AT_MOVBE:
        if (mem_is_dest)
            return xs2_write_u(ctx, ex, c, r, a, size, bswap_n(xs_get_reg(c, rnum, rhi, rsize), size));
        XS_TRY(xs2_read_u(ctx, ex, c, r, a, size, &v));
        xs_set_reg(c, rnum, rhi, rsize, bswap_n(v, size));
        r->wb = xl_cpu_get(c, rnum);
        return XL_OK;
    case AT_MOVDIRI:
        if (!mem_is_dest)
            return XL_E_UNSUPPORTED;
        return xs2_write_u(ctx, ex, c, r, a, size, xs_get_reg(c, rnum, rhi, rsize));
    default: { /* MOVDIR64B */
        uint8_t buf[64];
        if (dst % 64)
            return XL_E_GP;
        XS_TRY(xs2_probe(ctx, ex, c, a, 64));
        XS_TRY(xs2_probe(ctx, ex, c, dst, 64));
        xs2_read(ctx, ex, c, r, a, 64, buf);
        xs2_write(ctx, ex, c, r, dst, 64, buf);
        return XL_OK;
    }
    }
}
