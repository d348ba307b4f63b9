/* One exit through a C path on a caller-given guest state: registers, a flat RAM buffer and the
 * vector registers/CR0 (struct xl_vecstate).  For the agreement tests of the stack, atomic, vector
 * and misc families (tests/test_c_families.py): a replay record carries neither RAM nor vector
 * registers, the live engine only what a whole program sets up.  Not used on any hot path. */
#include <string.h>

#include "paths.h"
#include "sem.h"
#include "semcheck.h"

static int state_vec(struct xl_cpu *c, int idx, int write, uint64_t v[2])
{
    struct xl_vecstate *vs = (struct xl_vecstate *)c->opaque;
    int n = c->mode == 64 ? 16 : 8;
    if (idx >= 0 && idx < n && (vs->has & XL_VS_XMM)) {
        for (int i = 0; i < 2; i++) {
            if (write)
                vs->ymm[idx][i] = v[i];
            else
                v[i] = vs->ymm[idx][i];
        }
        return 0;
    }
    if (idx >= XS_VEC_YMM && idx < XS_VEC_YMM + n && (vs->has & XL_VS_YMM)) {
        for (int i = 0; i < 4; i++) {
            if (write)
                vs->ymm[idx - XS_VEC_YMM][i] = v[i];
            else
                v[i] = vs->ymm[idx - XS_VEC_YMM][i];
        }
        return 0;
    }
    if (idx >= XS_VEC_MM && idx < XS_VEC_MM + 8 && (vs->has & XL_VS_MM)) {
        if (write)
            vs->mm[idx - XS_VEC_MM] = v[0];
        else
            v[0] = vs->mm[idx - XS_VEC_MM];
        return 0;
    }
    if (idx == XS_VEC_CR0 && !write && (vs->has & XL_VS_CR0)) {
        v[0] = vs->cr0;
        return 0;
    }
    return -1;
}

static void no_fill(struct xl_cpu *c, int i)
{
    (void)c;
    (void)i;
}

uint32_t xl_sem_run(struct xl_ctx *ctx, int path, int mode, uint32_t kind, uint64_t addr, uint64_t *regs,
                    uint8_t *ram, uint64_t ram_base, uint64_t ram_size, struct xl_vecstate *vs,
                    struct xl_result *res)
{
    struct xl_cpu c;
    memset(&c, 0, sizeof(c));
    c.mode = mode;
    c.fill = no_fill;
    for (int i = 0; i < XL_NREGS; i++)
        c.regs[i] = regs[i];
    c.valid = (1u << XL_NREGS) - 1;
    c.opaque = vs;
    c.vec = vs ? state_vec : NULL;
    c.mem = ram;
    c.wmem = ram;
    c.mem_base = ram_base;
    c.mem_size = ram_size;
    struct xl_exit ex = {addr, 0, kind, 0};
    uint32_t st = xl_handle(ctx, path, &ex, &c, res);
    for (int i = 0; i < XL_NREGS; i++)
        regs[i] = c.regs[i];
    return st;
}
