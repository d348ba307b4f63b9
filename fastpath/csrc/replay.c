/* Replay hot loop (see replay.h).  Per record: point the lazily-filled CPU at the record, build
 * the exit, call the path.  No allocation, no copy of the register file. */
#include <time.h>
#include <x86intrin.h>

#include "paths.h"
#include "replay.h"

static inline void setup(struct xl_cpu *c, struct xl_exit *ex, const struct xl_record *r)
{
    c->src = r->regs;
    c->regs[XL_RIP] = r->rip;
    c->valid = 1u << XL_RIP;
    c->dirty = 0;
    c->mode = r->mode;
    c->mem = r->insn;
    c->mem_base = r->rip;
    c->mem_size = r->insn_len;
    ex->addr = r->addr;
    ex->value = r->value;
    ex->kind = r->kind;
    ex->size = r->size;
}

/* Every record entering C is checked (fastpath/cengine.py validates when packing, with the record's
 * index in the error; this is the defence against a garbage array reaching the paths). */
static inline int record_ok(const struct xl_record *r)
{
    if (r->mode != 16 && r->mode != 32 && r->mode != 64)
        return 0;
    if (r->insn_len > XL_MAX_INSN || r->kind > XL_HYPERCALL)
        return 0;
    if ((r->kind == XL_PIO_IN || r->kind == XL_PIO_OUT) && r->size != 1 && r->size != 2 && r->size != 4)
        return 0;
    return 1;
}

static void reject(struct xl_ctx *ctx, const struct xl_record *rec, struct xl_result *res)
{
    xl_res_init(res);
    res->status = XL_E_RECORD;
    res->path = XL_PATH_CAPSTONE;
    ctx->errors++;
    if (ctx->err.status == 0) {
        ctx->err.status = XL_E_RECORD;
        ctx->err.kind = rec->kind;
        ctx->err.rip = rec->rip;
        ctx->err.addr = rec->addr;
        ctx->err.len = 0;
    }
}

static inline uint32_t handle_rec(struct xl_ctx *ctx, int path, struct xl_cpu *c, struct xl_exit *ex,
                                  const struct xl_record *rec, struct xl_result *res)
{
    if (!record_ok(rec)) {
        reject(ctx, rec, res);
        return XL_E_RECORD;
    }
    setup(c, ex, rec);
    return xl_handle_fast(ctx, path, ex, c, res);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int xl_replay(struct xl_ctx *ctx, int path, const struct xl_record *recs, size_t n, struct xl_result *results,
              struct xl_replay_stats *stats)
{
    struct xl_cpu cpu = {0};
    struct xl_exit ex;
    struct xl_result scratch;
    uint64_t e0 = ctx->errors;
    uint64_t t0 = now_ns();
    uint64_t k0 = __rdtsc();
    if (results) {
        for (size_t i = 0; i < n; i++)
            handle_rec(ctx, path, &cpu, &ex, &recs[i], &results[i]);
    } else {
        for (size_t i = 0; i < n; i++)
            handle_rec(ctx, path, &cpu, &ex, &recs[i], &scratch);
    }
    uint64_t k1 = __rdtsc();
    uint64_t t1 = now_ns();
    stats->n = n;
    stats->ns = t1 - t0;
    stats->ticks = k1 - k0;
    stats->errors = ctx->errors - e0;
    return 0;
}

uint32_t xl_replay_one(struct xl_ctx *ctx, int path, const struct xl_record *rec, struct xl_result *res,
                       uint64_t *regs_out)
{
    struct xl_cpu cpu = {0};
    struct xl_exit ex;
    if (!record_ok(rec)) {
        reject(ctx, rec, res);
        for (int i = 0; i < XL_NREGS; i++)
            regs_out[i] = rec->regs[i];
        return XL_E_RECORD;
    }
    setup(&cpu, &ex, rec);
    uint32_t st = xl_handle(ctx, path, &ex, &cpu, res);
    for (int i = 0; i < XL_NREGS; i++)
        regs_out[i] = xl_cpu_get(&cpu, i);
    if (st == XL_OK)
        regs_out[XL_RIP] = res->next_rip;
    return st;
}
