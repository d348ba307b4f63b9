/* The exit-handling paths in C: pio, hypercall, pv-fast, wildcard, subset, capstone, trap.
 * Same semantics as the Python paths; one entry point, no allocation per exit. */
#ifndef XL_PATHS_H
#define XL_PATHS_H

#include "devstate.h"

/* Platform defaults, the hypercall numbers and KVM's error codes: platform_gen.h (included by
 * devstate.h), generated from emu/platform.py by gen_platform.py. */

/* Set up devices at the default board's addresses and zero all counters.  Returns 0. */
int xl_ctx_init(struct xl_ctx *ctx);
/* Open the Capstone handles now (else lazily on first use).  0 on success. */
int xl_ctx_open_capstone(struct xl_ctx *ctx);
/* Release Capstone handles (the only resources a ctx holds). */
void xl_ctx_close(struct xl_ctx *ctx);
/* Zero counts, kicks and the error slot; keeps addresses and the register device contents. */
void xl_ctx_reset_counts(struct xl_ctx *ctx);

/* Handle one exit by `path` (falling back to the Capstone path where a fast path declines).
 * Registers the path changes are written through xl_cpu_set (cpu->dirty).  Returns res->status. */
uint32_t xl_handle(struct xl_ctx *ctx, int path, const struct xl_exit *ex, struct xl_cpu *cpu,
                   struct xl_result *res);

/* Device-side pieces the live hooks call directly. */
uint64_t xl_pio(struct xl_ctx *ctx, uint64_t port, int size, int write, uint64_t value);
int xl_dev_claims(const struct xl_ctx *ctx, uint64_t gpa);
/* 1 if every byte of [gpa, gpa+size) is in a device window, else 0 with *bad = the first that is not. */
int xl_dev_span(const struct xl_ctx *ctx, uint64_t gpa, int size, uint64_t *bad);
/* One guest access through the devices: split per device where it crosses two (rule 4); the caller
 * has checked the span (xl_dev_span), so XL_E_UNMAPPED cannot happen after a piece was done. */
uint32_t xl_mmio_access(struct xl_ctx *ctx, struct xl_result *r, uint64_t gpa, int size, int write, uint64_t *v);
/* Bytes left in the device window holding gpa (0: no device claims it). */
uint64_t xl_dev_left(const struct xl_ctx *ctx, uint64_t gpa);
uint64_t xl_dev_mmio(struct xl_ctx *ctx, uint64_t gpa, int size, int write, uint64_t value);
/* pv-fast on a pv window of ctx->tab (not the flat notify window): XL_OK or XL_NOT_MINE. */
uint32_t xl_pvfast_tab(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r);

/* Fold one access into a result's hash (also done in Python to compare). */
static inline uint64_t xl_acc_mix(uint64_t h, uint64_t gpa, int size, int write, uint64_t value)
{
    const uint64_t P = 0x100000001b3ull;
    h = (h ^ gpa) * P;
    h = (h ^ (uint64_t)(size | (write << 8))) * P;
    h = (h ^ value) * P;
    return h;
}
#define XL_HASH_INIT 0xcbf29ce484222325ull

static inline void xl_res_init(struct xl_result *r)
{
    r->gpa = r->value = r->next_rip = r->wb = 0;
    r->acc_hash = XL_HASH_INIT;
    r->size = r->write = r->n_acc = 0;
}

static inline void xl_res_acc(struct xl_result *r, uint64_t gpa, int size, int write, uint64_t value)
{
    if (r->n_acc == 0) {
        r->gpa = gpa;
        r->size = (uint8_t)size;
        r->write = (uint8_t)write;
        r->value = value;
    }
    if (r->n_acc < 255)
        r->n_acc++;
    r->acc_hash = xl_acc_mix(r->acc_hash, gpa, size, write, value);
}

/* A data kick of a queue the flat notify has no counter for: kicks_other, and the board's notify
 * device through the table when there is one (devtab.h XL_OP_KICK).  Never on the hot path. */
static inline void xl_kick_other(struct xl_ctx *ctx, uint64_t value)
{
    ctx->dev.kicks_other++;
    if (ctx->tab)
        ctx->tab->dev(ctx->tab->dev_opaque, XL_SPACE_MMIO, XL_OP_KICK, 0, 0, value);
}

/* The pv contract's instruction at RIP: exactly 66 89 02 in guest memory (1), else 0.  Shared by
 * the flat-notify and the device-table pv-fast paths. */
static inline int xl_pv_insn_at_rip(struct xl_cpu *c, uint64_t *rip_out)
{
    uint64_t rip = xl_cpu_get(c, XL_RIP);
    uint64_t moff = rip - c->mem_base;
    *rip_out = rip;
    if (rip < c->mem_base || moff >= c->mem_size || c->mem_size - moff < 3)
        return 0;
    const uint8_t *p = c->mem + moff;
    return p[0] == 0x66 && p[1] == 0x89 && p[2] == 0x02;
}

/* pv contract v1 (fastpath/fast.py): an MMIO write exit in 32/64-bit mode, the 2-byte access wholly
 * inside the pv window (the notify window), exactly 66 89 02 at RIP.  Data = AX, gpa from the exit,
 * next RIP = RIP + 3.  Anything else: XL_NOT_MINE.  Inline so the replay loop and the live loop
 * run it without a call. */
static inline uint32_t xl_pvfast(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c,
                                 struct xl_result *r)
{
    struct xl_devstate *d = &ctx->dev;
    uint64_t off = ex->addr - d->notify_base;
    if (ex->kind != XL_MMIO_WRITE || (c->mode != 64 && c->mode != 32) || off >= d->notify_size ||
        off > d->notify_size - 2 || (ex->size && ex->size != 2))
        return ctx->tab ? xl_pvfast_tab(ctx, ex, c, r) : XL_NOT_MINE;
    uint64_t rip;
    if (!xl_pv_insn_at_rip(c, &rip))
        return XL_NOT_MINE;
    uint64_t v = xl_cpu_get(c, 0) & 0xFFFF;
    /* the notify device: the value is the queue index */
    d->notify_writes++;
    if (v < XL_NQUEUES)
        d->kicks[v]++;
    else
        xl_kick_other(ctx, v);
    if (off < XL_NOTIFY_OFF_MULT * XL_NQUEUES_REG && off % XL_NOTIFY_OFF_MULT == 0)
        d->eventfd_counts[off / XL_NOTIFY_OFF_MULT]++;
    xl_res_acc(r, ex->addr, 2, 1, v);
    r->next_rip = (rip + 3) & (c->mode == 64 ? ~0ull : 0xFFFFFFFFull);
    return XL_OK;
}

/* xl_handle with the pv-fast hit handled inline; identical results and counts. */
static inline uint32_t xl_handle_fast(struct xl_ctx *ctx, int path, const struct xl_exit *ex, struct xl_cpu *c,
                                      struct xl_result *r)
{
    if (path == XL_PATH_PVFAST) {
        xl_res_init(r);
        if (xl_pvfast(ctx, ex, c, r) == XL_OK) {
            r->status = XL_OK;
            r->path = XL_PATH_PVFAST;
            ctx->counts[XL_PATH_PVFAST]++;
            return XL_OK;
        }
    }
    return xl_handle(ctx, path, ex, c, r);
}

/* One element operand of a string instruction (as MOVS/STOS use them): device (claimed, or the
 * exit's own address), RAM, or unmapped (XL_E_UNMAPPED, ctx->fault_addr; replay: XL_E_NOMEM).
 * xl_str_check says beforehand whether the access would fault, accessing nothing. */
uint32_t xl_str_access(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                       uint64_t addr, int size, int write, uint64_t *v);
uint32_t xl_str_check(struct xl_ctx *ctx, const struct xl_exit *ex, const struct xl_cpu *c, uint64_t addr, int size);

#endif
