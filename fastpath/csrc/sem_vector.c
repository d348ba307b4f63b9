/* SSE/AVX moves between memory and XMM/YMM/MMX registers (emu/semantics/vector.py).
 *
 * Loads: the register gets the bytes read, zero-extended -- to bit 127 for legacy SSE (bits 255:128
 * of the YMM register kept, SDM vol. 1 14.1.2), to bit 255 for VEX forms; MMX MOVD/MOVQ load mmN
 * (64 bits).  Stores write the low `size` bytes.  Aligned forms (MOVDQA/MOVAPS/MOVAPD/MOVNTxx/
 * MOVNTDQA at 16 bytes, the VEX aligned forms at their own size) are #GP on a misaligned operand,
 * before any access.  16/32-byte accesses reach a device as 8-byte accesses, low address first
 * (sem_route.c; KVM's 8-byte MMIO chunks).  Registers come through the CPU view's `vec` accessor
 * (live: uc_reg_read/write of just the register the form names); a view without the register
 * (a replay record, no AVX) refuses before any device access.  MASKMOVDQU/VMASKMOVDQU/MASKMOVQ
 * (byte-masked store to the implicit DS:[rdi]) are refused, as the Python path does. */
#include <string.h>

#include "paths.h"
#include "sem.h"

/* The family's table: Capstone id -> alignment rule, MMX registers allowed, the legacy form's
 * mandatory prefix (the [forms] rows of emu/x86-opcode-map.txt with C table `vector`). */
enum { XL_OPMAP_V_OPS };  /* the alignment rules V_ANY, V_ALIGN16, V_ALIGN_OWN, V_REFUSED (opmap.h) */
#define ROW(id, rule, fl, align, cond, pfx) {id, rule, !!((fl) & XL_OPMAP_MMX), pfx},
static const struct {
    unsigned id;
    uint8_t rule;
    uint8_t mmx;  /* MMX registers allowed (MOVD/MOVQ) */
    uint8_t pfx;  /* mandatory prefix of the legacy form: 0 (none), 0x66, 0xF2, 0xF3 */
} rows[] = {XL_OPMAP_VECTOR(ROW)};
#undef ROW

int xs_vector_has(unsigned id)
{
    switch (id) {
    XL_OPMAP_VECTOR_CASES
        return 1;
    default:
        return 0;
    }
}

/* A register operand's class: 1 XMM, 2 YMM, 3 MMX (number in *idx), 0 GPR-like, -1 refused. */
static int vec_class(unsigned reg, int *idx)
{
    if (reg >= X86_REG_XMM0 && reg <= X86_REG_XMM15) {
        *idx = (int)(reg - X86_REG_XMM0);
        return 1;
    }
    if (reg >= X86_REG_YMM0 && reg <= X86_REG_YMM15) {
        *idx = (int)(reg - X86_REG_YMM0);
        return 2;
    }
    if (reg >= X86_REG_MM0 && reg <= X86_REG_MM7) {
        *idx = (int)(reg - X86_REG_MM0);
        return 3;
    }
    if ((reg >= X86_REG_XMM16 && reg <= X86_REG_XMM31) || (reg >= X86_REG_YMM16 && reg <= X86_REG_YMM31) ||
        (reg >= X86_REG_ZMM0 && reg <= X86_REG_ZMM31) || (reg >= X86_REG_K0 && reg <= X86_REG_K7) ||
        (reg >= X86_REG_ST0 && reg <= X86_REG_ST7) || (reg >= X86_REG_FP0 && reg <= X86_REG_FP7))
        return -1;  /* AVX-512 / x87 */
    return 0;
}

/* The mandatory prefix of the legacy form Capstone decoded (emu/decode.py _sse_required): none for
 * the MMX forms, the row's (the map's pfx: none for MOVUPS/MOVAPS/MOVNTPS, F3 for MOVSS/MOVDQU, F2
 * for MOVSD/LDDQU), except F3 for MOVQ xmm, m64 (F3 0F 7E); 66 for the other XMM forms. */
static int required_prefix(const struct xs2 *d, int cls, int row_pfx)
{
    if (cls == 3)
        return 0;
    if (row_pfx != 0x66)
        return row_pfx;
    if (d->insn->id == X86_INS_MOVQ && d->x->opcode[1] == 0x7E && !d->mem_is_dest)
        return 0xF3;
    return 0x66;
}

/* accessor number and width (bytes) of a vector register */
static int vec_id(int cls, int idx, int *bytes)
{
    *bytes = cls == 2 ? 32 : cls == 3 ? 8 : 16;
    return cls == 2 ? XS_VEC_YMM + idx : cls == 3 ? XS_VEC_MM + idx : idx;
}

uint32_t xs_vector_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                        const struct xs2 *d)
{
    size_t k;
    for (k = 0; k < sizeof(rows) / sizeof(rows[0]) && rows[k].id != d->insn->id; k++)
        ;
    if (k == sizeof(rows) / sizeof(rows[0]))
        return XL_NOT_MINE;
    if (rows[k].rule == V_REFUSED)
        return XL_E_UNSUPPORTED;  /* byte-masked store to DS:[rdi]: not emulated */
    int cls = 0, idx = 0, any_vec = 0;
    for (int i = 0; i < d->nreg; i++) {
        int j, cl = vec_class(d->reg[i], &j);
        if (cl < 0 || (cl == 3 && !rows[k].mmx))
            return XL_E_UNSUPPORTED;  /* AVX-512/x87 register, or MMX on a form without it */
        if (cl > 0 && !any_vec) {
            any_vec = 1;
            cls = cl;
            idx = j;
        }
        if (cl == 0) {
            uint8_t num, hi;
            if (xl_cs_gpr(d->reg[i], &num, &hi) < 0)
                return XL_E_UNSUPPORTED;
        }
    }
    if (d->insn->id == X86_INS_MOVSD && !any_vec)
        return XL_NOT_MINE;  /* the string MOVSD (paths.c) */
    if (d->lock)
        return XL_E_UNSUPPORTED;  /* LOCK is #UD */
    if (d->nmem != 1 || !any_vec)
        return XL_E_UNSUPPORTED;
    /* SDM: the last F2/F3 is the mandatory prefix, 66 only without them; Capstone may decode the
     * prefix-less form (`f2 4d 0f 6e 06` as MOVD mm0): then it is another instruction or #UD */
    if (!d->vex && (d->last_f2f3 ? d->last_f2f3 : (d->has66 ? 0x66 : 0)) != required_prefix(d, cls, rows[k].pfx))
        return XL_E_UNSUPPORTED;
    int size = d->mem_size;
    if (size != 4 && size != 8 && size != 16 && size != 32)
        return XL_E_UNSUPPORTED;
    int align = rows[k].rule == V_ALIGN_OWN ? size : (rows[k].rule == V_ALIGN16 && size == 16 ? 16 : 0);
    uint64_t a = xs2_ea(c, d, 0);
    if (!xs2_covers(ex, a, (uint64_t)size))
        return XL_E_MISMATCH;
    if (d->mode != 64 && d->mem_is_dest && d->cs_override)
        return XL_E_GP;  /* a store through CS outside 64-bit mode */
    if (align && (a % (uint64_t)align))
        return XL_E_GP;  /* misaligned operand of an aligned form */
    if (d->mode != 64 && idx >= 8)
        return XL_E_UNSUPPORTED;
    int bytes;
    int id = vec_id(cls, idx, &bytes);
    /* touch the register first: a view without it declines before the device sees anything; a
     * VEX form with an XMM operand writes the whole YMM register */
    int whole = (d->vex && cls == 1) ? XS_VEC_YMM + idx : id;
    uint64_t v[4] = {0, 0, 0, 0};
    if (!c->vec || c->vec(c, whole, 0, v) < 0)
        return XL_E_UNSUPPORTED;
    if (whole != id && c->vec(c, id, 0, v) < 0)
        return XL_E_UNSUPPORTED;
    uint8_t buf[32];
    if (d->mem_is_dest) {
        for (int i = 0; i < size; i++)
            buf[i] = (uint8_t)(v[i / 8] >> (8 * (i % 8)));
        return xs2_write(ctx, ex, c, r, a, size, buf);
    }
    uint32_t st = xs2_read(ctx, ex, c, r, a, size, buf);
    if (st != XL_OK)
        return st;
    uint64_t nv[4] = {0, 0, 0, 0};
    for (int i = 0; i < size; i++)
        nv[i / 8] |= (uint64_t)buf[i] << (8 * (i % 8));
    /* legacy SSE: XMM written (bits 255:128 kept); VEX: the whole YMM (zero above the load) */
    c->vec(c, d->vex && cls == 1 ? XS_VEC_YMM + idx : id, 1, nv);
    return XL_OK;
}
