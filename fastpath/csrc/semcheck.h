/* See semcheck.c. */
#ifndef XL_SEMCHECK_H
#define XL_SEMCHECK_H

#include <stdint.h>

#include "devstate.h"

#define XL_VS_XMM 1u
#define XL_VS_YMM 2u
#define XL_VS_MM 4u
#define XL_VS_CR0 8u

struct xl_vecstate {
    uint64_t ymm[16][4];  /* YMM i, low quadword first (XMM i = its low half) */
    uint64_t mm[8];
    uint64_t cr0;
    uint32_t has;         /* XL_VS_*: which of them this guest state has */
    uint32_t pad;
};

/* Handle one exit (kind, addr) by `path` on the state: regs[20] in/out (REG_NAMES order, RIP at
 * XL_RIP), RAM [ram_base, ram_base + ram_size) read and written in place, vs (NULL: none). */
uint32_t xl_sem_run(struct xl_ctx *ctx, int path, int mode, uint32_t kind, uint64_t addr, uint64_t *regs,
                    uint8_t *ram, uint64_t ram_base, uint64_t ram_size, struct xl_vecstate *vs,
                    struct xl_result *res);

#endif
