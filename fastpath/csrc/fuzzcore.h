/* Fuzzer core in C (issue 15): the Unicorn truth run with one engine reused across cases.
 *
 * emu/oracle.py:run_one creates a fresh Unicorn engine per case (~5-10 ms: mapping 4 MiB of RAM,
 * the first translation, teardown).  Here an engine is opened once per (mode, MMIO window, RIP)
 * with the same memory map as emu.batchcpu.default_ram_regions and the same hooks, and reset per
 * case: CPU state by uc_context_restore of the state saved right after opening, RAM by zeroing
 * the pages the previous case wrote (a write hook records them), the instruction bytes rewritten
 * and their translation dropped.  The observable result is the one run_one reports. */
#ifndef XL_FUZZCORE_H
#define XL_FUZZCORE_H

#include <stddef.h>
#include <stdint.h>

#define XL_FZ_MAXACC 64     /* accesses recorded per case; n_acc still counts them all */
#define XL_FZ_MAXDIRTY 64   /* dirty pages remembered; more and the whole RAM is zeroed */
#define XL_FZ_STEP_LIMIT (1u << 17)

enum xl_fz_fault { XL_FZ_OK = 0, XL_FZ_UCERR = 1, XL_FZ_EXCEPTION = 2, XL_FZ_STEPS = 3 };

/* One case, flat (exitlab/tools/fuzz/ctruth.py packs exitlab.tools.fuzz.case.Case into it). */
struct xl_fz_case {
    uint64_t regs[20];      /* emu/exits.py REG_NAMES order; regs[16] is RIP */
    uint64_t xmm[16][2];    /* low, high quadword */
    uint64_t mmio_base, mmio_size, read_value;
    uint8_t code[15];
    uint8_t len;
    uint8_t mode;           /* 32 or 64 */
    uint8_t gen;            /* generator id (fastrun) */
    uint8_t n_xmm;          /* xmm registers to write (0 = leave all zero) */
    uint8_t pad[5];
};

struct xl_fz_acc {
    uint64_t gpa, value;
    uint32_t size, write;
};

/* What the instruction did: emu.oracle.OracleResult, flat. */
struct xl_fz_truth {
    uint64_t regs[18];      /* GPRs of the mode (8 in 32-bit mode), then [16] rip, [17] rflags */
    uint64_t xmm[16][2];
    uint64_t next_rip;
    int32_t fault;          /* enum xl_fz_fault */
    int32_t fault_code;     /* uc_err, or the interrupt number */
    uint32_t n_acc;
    uint32_t pad;
    struct xl_fz_acc acc[XL_FZ_MAXACC];
};

struct xl_fz_engine;

/* Open an engine for `mode` with RAM as default_ram_regions(rip, window) and the window as an
 * MMIO region.  NULL on a Unicorn error (uc_err in *err). */
struct xl_fz_engine *xl_fz_open(int mode, uint64_t rip, uint64_t mmio_base, uint64_t mmio_size, int *err);
void xl_fz_close(struct xl_fz_engine *e);
/* Run one case (its mode, window and rip must be the engine's).  Returns 0, or -1 on a mismatch. */
int xl_fz_run(struct xl_fz_engine *e, const struct xl_fz_case *c, struct xl_fz_truth *t);

#endif

/* ------------------------------------------------------------------ the batch runner (fastrun) */
#include "paths.h"

enum xl_fz_gen { XL_FZ_STRUCTURED = 0, XL_FZ_HAVOC = 1, XL_FZ_CONTRACT = 2, XL_FZ_CORPUS = 3, XL_FZ_NGEN = 4 };
/* The C oracles a batch compares, and what each can say about a case that is not flagged. */
enum xl_fz_oracle { XL_FZ_O_LENGTH = 0, XL_FZ_O_DECODER, XL_FZ_O_SUBSET, XL_FZ_O_CAPSTONE, XL_FZ_O_PVFAST,
                    XL_FZ_NORACLE };
enum xl_fz_outcome { XL_FZ_AGREE = 0, XL_FZ_DECLINED, XL_FZ_STATUS, XL_FZ_SUSPECT, XL_FZ_BOTH_INVALID,
                     XL_FZ_NOT_COMPARED, XL_FZ_ACCEPTED, XL_FZ_NOUTCOME };
enum xl_fz_skip { XL_FZ_RUN = 0, XL_FZ_SKIP_SMC = 1, XL_FZ_SKIP_REP = 2, XL_FZ_SKIP_LOCK = 3, XL_FZ_SKIP_LAYOUT = 4 };

struct xl_fz_stats {
    uint64_t cases[XL_FZ_NGEN], ns[XL_FZ_NGEN], flagged[XL_FZ_NGEN], skipped[XL_FZ_NGEN];
    uint64_t outcomes[XL_FZ_NORACLE][XL_FZ_NOUTCOME];
    uint64_t mmio[XL_FZ_NGEN];          /* cases whose truth touched the window */
};

/* Per case: which oracles look wrong (bit per enum xl_fz_oracle: the case goes to the Python
 * Checker, which classifies it exactly), or why it was skipped. */
struct xl_fz_out {
    uint8_t suspect, skip, gen, touched;
};

/* --family templates: [mandatory prefix or 0, opcode length 1-3, opcode bytes x3, ModRM /reg (0-7;
 * 8: any; XL_FZ_NO_MODRM: none), immediate (0 none, 1 imm8, 2 imm16/32 by operand size)] */
#define XL_FZ_TEMPLATE 7
#define XL_FZ_MAXFAM 64
#define XL_FZ_NO_MODRM 9

struct xl_fz_batch;
/* A batch runner: its C context (paths, Capstone handles) and its Unicorn engines.  NULL: no memory. */
struct xl_fz_batch *xl_fz_batch_new(void);
void xl_fz_batch_free(struct xl_fz_batch *b);
/* Restrict the structured generator to these templates (n of them; 0: the whole opcode map).
 * -1 when n > XL_FZ_MAXFAM. */
int xl_fz_batch_family(struct xl_fz_batch *b, const uint8_t *templates, size_t n);
/* Cases [start, start+n) of campaign `seed`: case i from generator gens[i % ngens] with a random
 * stream of its own (splitmix64 of seed and i); corpus cases from `corpus`.  Fills cases[] and
 * out[] (n each) and adds to *st.  Returns 0, or -1 when Capstone cannot be opened. */
int xl_fz_batch_run(struct xl_fz_batch *b, uint64_t seed, uint64_t start, size_t n, const uint8_t *gens,
                    size_t ngens, const struct xl_fz_case *corpus, size_t ncorpus, struct xl_fz_case *cases,
                    struct xl_fz_out *out, struct xl_fz_stats *st);
