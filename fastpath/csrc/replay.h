/* Replay hot loop: recorded exits, packed flat, run through one path in one call. */
#ifndef XL_REPLAY_H
#define XL_REPLAY_H

#include "devstate.h"

/* One recorded exit (emu.exits.ExitRecord), 208 bytes.  The instruction bytes are the record's
 * whole view of guest memory: a small RAM window at RIP. */
struct xl_record {
    uint8_t kind;              /* enum xl_exit_kind */
    uint8_t mode;              /* 16 / 32 / 64 */
    uint8_t size;              /* PIO: access size the exit reports; MMIO: unused */
    uint8_t insn_len;
    uint8_t insn[XL_MAX_INSN];
    uint8_t pad[5];
    uint64_t rip;              /* == regs[XL_RIP]; first cache line holds what pv-fast reads */
    uint64_t addr;             /* gpa, port, or hypercall number */
    uint64_t value;            /* PIO: data the exit reports (OUT); MMIO: unused (truth never read) */
    uint64_t regs[XL_NREGS];   /* REG_NAMES order */
};

struct xl_replay_stats {
    uint64_t n;
    uint64_t ns;       /* CLOCK_MONOTONIC around the whole loop */
    uint64_t ticks;    /* rdtsc around the whole loop */
    uint64_t errors;
};

/* Run recs[0..n) through `path`.  results may be NULL (then only counts/device state change).
 * Registers a path writes go to a scratch copy, so the records are never modified. */
int xl_replay(struct xl_ctx *ctx, int path, const struct xl_record *recs, size_t n, struct xl_result *results,
              struct xl_replay_stats *stats);

/* Handle a single record and return the register file afterwards (tests). */
uint32_t xl_replay_one(struct xl_ctx *ctx, int path, const struct xl_record *rec, struct xl_result *res,
                       uint64_t *regs_out);

#endif
