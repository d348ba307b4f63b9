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
    c->mem_size = r->insn_len <= XL_MAX_INSN ? r->insn_len : XL_MAX_INSN;
    ex->addr = r->addr;
    ex->value = r->value;
    ex->kind = r->kind;
    ex->size = r->size;
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
        for (size_t i = 0; i < n; i++) {
            setup(&cpu, &ex, &recs[i]);
            xl_handle_fast(ctx, path, &ex, &cpu, &results[i]);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            setup(&cpu, &ex, &recs[i]);
            xl_handle_fast(ctx, path, &ex, &cpu, &scratch);
        }
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
    setup(&cpu, &ex, rec);
    uint32_t st = xl_handle(ctx, path, &ex, &cpu, res);
    for (int i = 0; i < XL_NREGS; i++)
        regs_out[i] = xl_cpu_get(&cpu, i);
    if (st == XL_OK)
        regs_out[XL_RIP] = res->next_rip;
    return st;
}
