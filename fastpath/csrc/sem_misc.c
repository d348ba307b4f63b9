/* XLAT and SMSW m16 (emu/semantics/misc.py).  MOVSXD r16 is the MOV family's (paths.c: a 2-byte
 * read per the Intel SDM; docs/known-discrepancies.md).
 *
 * XLAT: AL = [seg:rBX + zero-extended AL] (EBX under 0x67; the sum wraps at the address size).
 * SMSW m16 stores CR0[15:0] (always 16 bits to memory); CR0 comes through the CPU view's `vec`
 * accessor (XS_VEC_CR0): a view without it (a replay record) refuses before any access. */
#include "paths.h"
#include "sem.h"

enum { XL_OPMAP_MI_OPS };  /* MI_XLAT, MI_SMSW (opmap.h) */

/* The family's table: Capstone id -> operation (the [forms] rows of emu/x86-opcode-map.txt with C
 * table `misc`). */
#define ROW(id, op, fl, align, cond, pfx) {id, op},
static const struct {
    unsigned id;
    uint8_t op;
} rows[] = {XL_OPMAP_MISC(ROW)};
#undef ROW

int xs_misc_has(unsigned id)
{
    switch (id) {
    XL_OPMAP_MISC_CASES
        return 1;
    default:
        return 0;
    }
}

uint32_t xs_misc_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                      const struct xs2 *d)
{
    int op = -1;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].id == d->insn->id)
            op = rows[i].op;
    if (op < 0)
        return XL_NOT_MINE;
    if (d->lock)
        return XL_E_UNSUPPORTED;  /* LOCK is #UD */
    if (op == MI_XLAT) {
        int asz = d->m.addr_size;
        uint64_t am = asz == 2 ? 0xFFFFull : asz == 4 ? 0xFFFFFFFFull : ~0ull;
        uint64_t off = ((xl_cpu_get(c, 3) & am) + (xl_cpu_get(c, 0) & 0xFF)) & am;
        if (d->seg == XL_SEG_FS)
            off += xl_cpu_get(c, XL_FS_BASE);
        else if (d->seg == XL_SEG_GS)
            off += xl_cpu_get(c, XL_GS_BASE);
        uint64_t a = c->mode == 64 ? off : (off & 0xFFFFFFFFull);
        if (!xs2_covers(ex, a, 1))
            return XL_E_MISMATCH;
        uint64_t v;
        uint32_t st = xs2_read_u(ctx, ex, c, r, a, 1, &v);
        if (st != XL_OK)
            return st;
        xs_set_reg(c, 0, 0, 1, v);
        r->wb = xl_cpu_get(c, 0);
        return XL_OK;
    }
    /* SMSW m16 */
    if (d->nmem != 1 || d->mem_size != 2)
        return XL_E_UNSUPPORTED;  /* SMSW r: no memory operand */
    uint64_t a = xs2_ea(c, d, 0);
    if (!xs2_covers(ex, a, 2))
        return XL_E_MISMATCH;
    if (d->mode != 64 && d->cs_override)
        return XL_E_GP;  /* a store through CS outside 64-bit mode */
    uint64_t v[4] = {0, 0, 0, 0};
    if (!c->vec || c->vec(c, XS_VEC_CR0, 0, v) < 0)
        return XL_E_UNSUPPORTED;  /* CR0 is not part of this guest state */
    return xs2_write_u(ctx, ex, c, r, a, 2, v[0] & 0xFFFF);
}
