/* See fuzzcore.h.  No allocation per case. */
#include <stdlib.h>
#include <string.h>

#include <unicorn/unicorn.h>

#include "fuzzcore.h"

#define FZ_PAGE 0x1000ull
#define FZ_RAM_BASE 0x1000ull
#define FZ_RAM_END 0x400000ull
#define XL_FZ_TCG_BUFFER (8u << 20)

struct xl_fz_engine {
    uc_engine *uc;
    uc_context *ctx;
    int mode;
    uint64_t rip, base, size;
    uint64_t read_value;
    struct xl_fz_truth *t;
    uint64_t cur_addr;
    int cur_n, have_cur;
    int intr, intno;
    int n_dirty, dirty_overflow;
    uint64_t dirty[XL_FZ_MAXDIRTY];
    uint64_t ram_lo[8], ram_hi[8];   /* mapped RAM runs, for a full reset */
    int n_runs;
};

static const uint8_t ZERO_PAGE[FZ_PAGE];

static const int GPR64[16] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP, UC_X86_REG_RBP,
    UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15,
};
static const int GPR32[8] = {
    UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX,
    UC_X86_REG_ESP, UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI,
};

static uint64_t on_mmio_read(uc_engine *uc, uint64_t offset, unsigned n, void *ud)
{
    (void)uc;
    /* emu/oracle.py on_read: serve each piece by its byte offset in the access the hook saw */
    struct xl_fz_engine *e = ud;
    uint64_t addr = e->base + offset;
    uint64_t start = e->have_cur ? e->cur_addr : addr;
    int length = e->have_cur ? e->cur_n : (int)n;
    uint64_t value = length >= 8 ? e->read_value : e->read_value & ((1ull << (8 * length)) - 1);
    uint64_t out = 0;
    for (unsigned i = 0; i < n && i < 8; i++) {
        int64_t k = (int64_t)(addr + i - start);
        if (k >= 0 && k < length && k < 8)
            out |= ((value >> (8 * k)) & 0xFF) << (8 * i);
    }
    return out;
}

static void on_mmio_write(uc_engine *uc, uint64_t offset, unsigned n, uint64_t value, void *ud)
{
    (void)uc; (void)offset; (void)n; (void)value; (void)ud;
}

static void on_access(uc_engine *uc, uc_mem_type type, uint64_t addr, int n, int64_t value, void *ud)
{
    (void)uc;
    struct xl_fz_engine *e = ud;
    e->cur_addr = addr;
    e->cur_n = n;
    e->have_cur = 1;
    struct xl_fz_truth *t = e->t;
    int write = type == UC_MEM_WRITE;
    uint64_t m = n >= 8 ? ~0ull : (1ull << (8 * n)) - 1;
    if (t->n_acc < XL_FZ_MAXACC) {
        struct xl_fz_acc *a = &t->acc[t->n_acc];
        a->gpa = addr;
        a->size = (uint32_t)n;
        a->write = (uint32_t)write;
        a->value = write ? (uint64_t)value & m : e->read_value & m;
    }
    t->n_acc++;
}

static void mark_dirty(struct xl_fz_engine *e, uint64_t page)
{
    for (int i = 0; i < e->n_dirty; i++)
        if (e->dirty[i] == page)
            return;
    if (e->n_dirty < XL_FZ_MAXDIRTY)
        e->dirty[e->n_dirty++] = page;
    else
        e->dirty_overflow = 1;
}

static void on_ram_write(uc_engine *uc, uc_mem_type type, uint64_t addr, int n, int64_t value, void *ud)
{
    (void)uc; (void)type; (void)value;
    struct xl_fz_engine *e = ud;
    if (n <= 0)
        return;
    uint64_t last = addr + (uint64_t)n - 1;
    for (uint64_t p = addr & ~(FZ_PAGE - 1); p <= (last & ~(FZ_PAGE - 1)); p += FZ_PAGE) {
        if (p >= e->base && p < e->base + e->size)
            continue;
        mark_dirty(e, p);
        if (p + FZ_PAGE == 0)
            break;
    }
}

static void on_intr(uc_engine *uc, uint32_t intno, void *ud)
{
    struct xl_fz_engine *e = ud;
    if (!e->intr) {
        e->intr = 1;
        e->intno = (int)intno;
    }
    uc_emu_stop(uc);
}

struct xl_fz_engine *xl_fz_open(int mode, uint64_t rip, uint64_t mmio_base, uint64_t mmio_size, int *err)
{
    struct xl_fz_engine *e = calloc(1, sizeof *e);
    uc_err r;
    uc_hook h;
    if (!e) {
        *err = UC_ERR_NOMEM;
        return NULL;
    }
    e->mode = mode;
    e->rip = rip;
    e->base = mmio_base;
    e->size = mmio_size;
    r = uc_open(UC_ARCH_X86, mode == 64 ? UC_MODE_64 : UC_MODE_32, &e->uc);
    if (r != UC_ERR_OK)
        goto fail;
    /* A small translation buffer, reused when full: every case translates new code, and in the
     * default 1 GiB buffer each block lands on a page the kernel must zero first (~10% of the time) */
    r = uc_ctl_set_tcg_buffer_size(e->uc, XL_FZ_TCG_BUFFER);
    if (r != UC_ERR_OK)
        goto fail;
    /* emu.batchcpu.default_ram_regions: the platform RAM plus the code pages, minus the window's
     * pages, as maximal runs.  Two ranges sorted and merged, then the window cut out of each. */
    {
        uint64_t wlo = mmio_base & ~(FZ_PAGE - 1), whi = (mmio_base + mmio_size + FZ_PAGE - 1) & ~(FZ_PAGE - 1);
        uint64_t rng[2][2] = {{FZ_RAM_BASE, FZ_RAM_END},
                              {rip & ~(FZ_PAGE - 1), ((rip + 15) & ~(FZ_PAGE - 1)) + FZ_PAGE}};
        if (rng[1][0] < rng[0][0]) {
            uint64_t t0 = rng[0][0], t1 = rng[0][1];
            rng[0][0] = rng[1][0], rng[0][1] = rng[1][1];
            rng[1][0] = t0, rng[1][1] = t1;
        }
        int nr = 2;
        if (rng[1][0] <= rng[0][1]) { /* overlapping or adjacent: one range */
            rng[0][1] = rng[1][1] > rng[0][1] ? rng[1][1] : rng[0][1];
            nr = 1;
        }
        for (int i = 0; i < nr; i++) {
            uint64_t lo = rng[i][0], hi = rng[i][1];
            uint64_t cut_lo = wlo > lo ? wlo : lo, cut_hi = whi < hi ? whi : hi;
            if (cut_lo >= cut_hi) { /* the window misses this range */
                e->ram_lo[e->n_runs] = lo, e->ram_hi[e->n_runs++] = hi;
                continue;
            }
            if (lo < cut_lo)
                e->ram_lo[e->n_runs] = lo, e->ram_hi[e->n_runs++] = cut_lo;
            if (cut_hi < hi)
                e->ram_lo[e->n_runs] = cut_hi, e->ram_hi[e->n_runs++] = hi;
        }
        for (int i = 0; i < e->n_runs; i++) {
            r = uc_mem_map(e->uc, e->ram_lo[i], e->ram_hi[i] - e->ram_lo[i], UC_PROT_ALL);
            if (r != UC_ERR_OK)
                goto fail;
        }
    }
    r = uc_mmio_map(e->uc, mmio_base, mmio_size, on_mmio_read, e, on_mmio_write, e);
    if (r != UC_ERR_OK)
        goto fail;
    r = uc_hook_add(e->uc, &h, UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, (void *)on_access, e, mmio_base,
                    mmio_base + mmio_size - 1);
    if (r != UC_ERR_OK)
        goto fail;
    r = uc_hook_add(e->uc, &h, UC_HOOK_MEM_WRITE, (void *)on_ram_write, e, 1, 0);
    if (r != UC_ERR_OK)
        goto fail;
    r = uc_hook_add(e->uc, &h, UC_HOOK_INTR, (void *)on_intr, e, 1, 0);
    if (r != UC_ERR_OK)
        goto fail;
    /* End every translation block right after the instruction: an exit at each address it can
     * end at.  Otherwise the zeros after it (`add [rax], al` ...) are translated too, up to the
     * page end (~1 ms per case); the instruction itself still runs whole, and only one runs. */
    {
        uint64_t exits[16];
        for (int k = 0; k < 16; k++)
            exits[k] = rip + 1 + (uint64_t)k;
        r = uc_ctl_exits_enable(e->uc);
        if (r == UC_ERR_OK)
            r = uc_ctl_set_exits(e->uc, exits, 16);
        if (r != UC_ERR_OK)
            goto fail;
    }
    r = uc_context_alloc(e->uc, &e->ctx);
    if (r != UC_ERR_OK)
        goto fail;
    r = uc_context_save(e->uc, e->ctx);
    if (r != UC_ERR_OK)
        goto fail;
    return e;
fail:
    *err = (int)r;
    xl_fz_close(e);
    return NULL;
}

void xl_fz_close(struct xl_fz_engine *e)
{
    if (!e)
        return;
    if (e->ctx)
        uc_context_free(e->ctx);
    if (e->uc)
        uc_close(e->uc);
    free(e);
}

static void reset_ram(struct xl_fz_engine *e)
{
    if (e->dirty_overflow) {
        for (int i = 0; i < e->n_runs; i++)
            for (uint64_t p = e->ram_lo[i]; p < e->ram_hi[i]; p += FZ_PAGE)
                uc_mem_write(e->uc, p, ZERO_PAGE, FZ_PAGE);
    } else {
        for (int i = 0; i < e->n_dirty; i++)
            uc_mem_write(e->uc, e->dirty[i], ZERO_PAGE, FZ_PAGE);
    }
    e->n_dirty = 0;
    e->dirty_overflow = 0;
}

/* True when the step left every GPR and RFLAGS as they were written. */
static int fixed_point(struct xl_fz_engine *e, const struct xl_fz_case *c, const uint64_t *gpr, int ngpr)
{
    for (int i = 0; i < ngpr; i++) {
        uint64_t v = 0;
        uc_reg_read(e->uc, e->mode == 64 ? GPR64[i] : GPR32[i], &v);
        if (v != gpr[i])
            return 0;
    }
    uint64_t fl = 0;
    uc_reg_read(e->uc, UC_X86_REG_EFLAGS, &fl);
    return fl == c->regs[17];
}

int xl_fz_run(struct xl_fz_engine *e, const struct xl_fz_case *c, struct xl_fz_truth *t)
{
    uc_engine *uc = e->uc;
    int mode = c->mode;
    uint64_t rip = c->regs[16];
    if (mode != e->mode || rip != e->rip || c->mmio_base != e->base || c->mmio_size != e->size ||
        c->len == 0 || c->len > 15)
        return -1;
    memset(t, 0, offsetof(struct xl_fz_truth, acc));
    e->t = t;
    e->read_value = c->read_value;
    e->have_cur = 0;
    e->intr = 0;
    /* memory: what the previous case wrote back to zero, then the bytes (and zeros after them) */
    reset_ram(e);
    /* the bytes, then zeros over what the last case's bytes were, within the RAM run at rip (the
     * window may start right after the code: a write into it would fail as a whole) */
    uint8_t code[32] = {0};
    memcpy(code, c->code, c->len);
    uint64_t room = 0;
    for (int i = 0; i < e->n_runs; i++)
        if (rip >= e->ram_lo[i] && rip < e->ram_hi[i])
            room = e->ram_hi[i] - rip;
    if (room < c->len)
        return -1; /* code not in RAM: run_one's mem_write fails too; the caller uses run_one */
    size_t n_code = room < sizeof code ? (size_t)room : sizeof code;
    uc_mem_write(uc, rip, code, n_code);
    uc_ctl_remove_cache(uc, rip, rip + n_code);
    uc_context_restore(uc, e->ctx);
    /* registers in one batch */
    int ids[40];
    void *vals[40];
    uint64_t gpr[16], xmmv[16][2];
    int n = 0, ngpr = mode == 64 ? 16 : 8;
    uint64_t wmask = mode == 64 ? ~0ull : 0xFFFFFFFFull;
    for (int i = 0; i < ngpr; i++) {
        gpr[i] = c->regs[i] & wmask;
        ids[n] = mode == 64 ? GPR64[i] : GPR32[i];
        vals[n++] = &gpr[i];
    }
    ids[n] = UC_X86_REG_EFLAGS;
    vals[n++] = (void *)&c->regs[17];
    if (mode == 64) {
        ids[n] = UC_X86_REG_FS_BASE;
        vals[n++] = (void *)&c->regs[18];
        ids[n] = UC_X86_REG_GS_BASE;
        vals[n++] = (void *)&c->regs[19];
    }
    for (int i = 0; i < c->n_xmm && i < ngpr; i++) { /* XMM8-15 exist in 64-bit mode only */
        xmmv[i][0] = c->xmm[i][0];
        xmmv[i][1] = c->xmm[i][1];
        ids[n] = UC_X86_REG_XMM0 + i;
        vals[n++] = xmmv[i];
    }
    uc_reg_write_batch(uc, ids, vals, n);
    int pc_reg = mode == 64 ? UC_X86_REG_RIP : UC_X86_REG_EIP;
    uint64_t pc = rip;
    unsigned steps;
    t->fault = XL_FZ_STEPS;
    for (steps = 0; steps < XL_FZ_STEP_LIMIT; steps++) {
        uc_err r = uc_emu_start(uc, pc, 0, 0, 1);
        pc = 0;
        uc_reg_read(uc, pc_reg, &pc);
        if (r != UC_ERR_OK) {
            t->fault = XL_FZ_UCERR;
            t->fault_code = (int32_t)r;
            break;
        }
        if (e->intr) {
            t->fault = XL_FZ_EXCEPTION;
            t->fault_code = e->intno;
            break;
        }
        if (pc != rip) {
            t->fault = XL_FZ_OK;
            break;
        }
        if (steps == 0 && t->n_acc == 0 && fixed_point(e, c, gpr, ngpr)) {
            /* `jmp $` and the like: nothing changed, so every further step is the same one; the
             * answer after the step limit is known now (run_one gets there in ~2 s) */
            t->fault = XL_FZ_STEPS;
            break;
        }
    }
    t->next_rip = pc;
    for (int i = 0; i < ngpr; i++) {
        uint64_t v = 0;
        uc_reg_read(uc, mode == 64 ? GPR64[i] : GPR32[i], &v);
        t->regs[i] = v;
    }
    t->regs[16] = pc;
    uint64_t fl = 0;
    uc_reg_read(uc, UC_X86_REG_EFLAGS, &fl);
    t->regs[17] = fl;
    for (int i = 0; i < (mode == 64 ? 16 : 8); i++)
        uc_reg_read(uc, UC_X86_REG_XMM0 + i, t->xmm[i]);
    return 0;
}


/* ====================================================================== batch runner (fastrun)
 * Generation, state solving, the truth and the C oracles for many cases per call.  Generators and
 * solver follow exitlab/tools/fuzz/gen.py and state.py (same distributions; Capstone instead of iced-x86
 * tells which registers form an address), with a splitmix64 stream per case.  The C oracles are
 * compared as oracles.py compares them; a case where one looks wrong is only *flagged*: the
 * Python Checker re-runs it and classifies, explains and minimizes it, so the findings' meaning
 * is the slow runner's.  A flag is raised on any doubt (Capstone's length differs from ours where
 * iced-x86 would be the reference, an unmapped fault the C world may not share...). */
#include <time.h>

#include <capstone/capstone.h>

#include "insn_subset.h"
#include "replay.h"
#include "sem.h"

#define FZ_WIN_REGS 0xFEB01000ull
#define FZ_WIN_NOTIFY 0xFEB00000ull
#define FZ_WIN_LOW 0x10000000ull
#define FZ_WIN_W16 0xA000ull
#define FZ_RIP 0x1000ull
#define FZ_MAX_ENGINES 16

struct fz_rng {
    uint64_t s;
};

static uint64_t nx(struct fz_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t below(struct fz_rng *r, uint64_t n) { return n ? nx(r) % n : 0; }
static double unif(struct fz_rng *r) { return (double)(nx(r) >> 11) * 0x1.0p-53; }

static const uint8_t LEGACY[11] = {0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67};
static const uint8_t HOT_0F[] = {0x10, 0x11, 0x28, 0x29, 0x2B, 0x6E, 0x6F, 0x7E, 0x7F, 0xA3, 0xAB, 0xB0, 0xB1,
                                 0xB3, 0xB6, 0xB7, 0xBA, 0xBB, 0xBE, 0xBF, 0xC0, 0xC1, 0xC3, 0xC7, 0xD6, 0xE7};
static const uint8_t HOT_0F38[] = {0xF0, 0xF1};
static const uint8_t HOT_0F3A[] = {0x14, 0x15, 0x16, 0x17, 0x20, 0x22};
static const uint8_t HOT_1B_EXTRA[] = {0x63, 0x8C, 0x8E, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xAA, 0xAB, 0xAC,
                                       0xAD, 0xC0, 0xC1, 0xC6, 0xC7, 0xD0, 0xD1, 0xD2, 0xD3, 0xF6, 0xF7, 0xFE, 0xFF};

struct fz_engine_slot {
    int mode;
    uint64_t rip, base, size;
    struct xl_fz_engine *e;
};

struct xl_fz_batch {
    struct xl_ctx ctx;
    csh cs[2];          /* 32, 64 */
    cs_insn *ci[2];
    int cs_ok;
    uint8_t hot1[96];
    int nhot1;
    int n_eng;
    /* --family: instruction templates (XL_FZ_TEMPLATE bytes each) the structured generator draws from */
    uint8_t fam[XL_FZ_MAXFAM * XL_FZ_TEMPLATE];
    int nfam;
    struct fz_engine_slot eng[FZ_MAX_ENGINES];
};

struct xl_fz_batch *xl_fz_batch_new(void)
{
    struct xl_fz_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    xl_ctx_init(&b->ctx);
    b->cs_ok = xl_ctx_open_capstone(&b->ctx) == 0;
    for (int k = 0; k < 2 && b->cs_ok; k++) {
        if (cs_open(CS_ARCH_X86, k ? CS_MODE_64 : CS_MODE_32, &b->cs[k]) != CS_ERR_OK) {
            b->cs_ok = 0;
            break;
        }
        cs_option(b->cs[k], CS_OPT_DETAIL, CS_OPT_ON);
        b->ci[k] = cs_malloc(b->cs[k]);
        if (!b->ci[k])
            b->cs_ok = 0;
    }
    for (int op = 0; op < 0x40; op += 8)
        for (int k = 0; k < 4; k++)
            b->hot1[b->nhot1++] = (uint8_t)(op + k);
    for (int op = 0x80; op < 0x8C; op++)
        b->hot1[b->nhot1++] = (uint8_t)op;
    for (size_t i = 0; i < sizeof HOT_1B_EXTRA; i++)
        b->hot1[b->nhot1++] = HOT_1B_EXTRA[i];
    return b;
}

void xl_fz_batch_free(struct xl_fz_batch *b)
{
    if (!b)
        return;
    for (int k = 0; k < 2; k++) {
        if (b->ci[k])
            cs_free(b->ci[k], 1);
        if (b->cs[k])
            cs_close(&b->cs[k]);
    }
    for (int i = 0; i < b->n_eng; i++)
        xl_fz_close(b->eng[i].e);
    xl_ctx_close(&b->ctx);
    free(b);
}

static struct xl_fz_engine *engine_for(struct xl_fz_batch *b, const struct xl_fz_case *c)
{
    for (int i = 0; i < b->n_eng; i++) {
        struct fz_engine_slot *s = &b->eng[i];
        if (s->mode == c->mode && s->rip == c->regs[16] && s->base == c->mmio_base && s->size == c->mmio_size)
            return s->e;
    }
    if (b->n_eng >= FZ_MAX_ENGINES)
        return NULL;
    int err = 0;
    struct xl_fz_engine *e = xl_fz_open(c->mode, c->regs[16], c->mmio_base, c->mmio_size, &err);
    struct fz_engine_slot *s = &b->eng[b->n_eng++];
    s->mode = c->mode;
    s->rip = c->regs[16];
    s->base = c->mmio_base;
    s->size = c->mmio_size;
    s->e = e;
    return e;
}

/* ------------------------------------------------------------------------------- generators */
static size_t gen_disp(struct fz_rng *r, uint8_t *o, int n)
{
    double x = unif(r);
    uint64_t v;
    static const int64_t K[6] = {0x7F, -0x80, 0x7FFF, -0x8000, 0x7FFFFFFF, -0x80000000ll};
    if (x < 0.3)
        v = (uint64_t)((int64_t)below(r, 16) - 8);
    else if (x < 0.5)
        v = (uint64_t)K[below(r, 6)];
    else
        v = nx(r);
    for (int i = 0; i < n; i++)
        o[i] = (uint8_t)(v >> (8 * i));
    return (size_t)n;
}

static size_t modrm_tail(struct fz_rng *r, uint8_t *o, int addr16)
{
    static const int MODS[4] = {0, 0, 1, 2};
    int mod = unif(r) < 0.25 ? 3 : MODS[below(r, 4)];
    int reg = (int)below(r, 8), rm = (int)below(r, 8);
    size_t n = 0;
    o[n++] = (uint8_t)(mod << 6 | reg << 3 | rm);
    if (mod == 3)
        return n;
    if (addr16) {
        if (mod == 1)
            return n + gen_disp(r, o + n, 1);
        if (mod == 2 || rm == 6)
            return n + gen_disp(r, o + n, 2);
        return n;
    }
    if (rm == 4) {
        uint8_t sib = (uint8_t)nx(r);
        o[n++] = sib;
        if (mod == 0 && (sib & 7) == 5)
            return n + gen_disp(r, o + n, 4);
    }
    if (mod == 1)
        return n + gen_disp(r, o + n, 1);
    if (mod == 2 || (mod == 0 && rm == 5))
        return n + gen_disp(r, o + n, 4);
    return n;
}

static int structured_bytes(struct xl_fz_batch *b, struct fz_rng *r, int mode, uint8_t *out)
{
    static const int NP[7] = {0, 0, 1, 1, 2, 3, 4};
    static const int NI[8] = {0, 0, 1, 1, 2, 4, 4, 8};
    uint8_t body[64];
    size_t n = 0;
    int np = NP[below(r, 7)], has67 = 0;
    for (int i = 0; i < np; i++) {
        body[n] = LEGACY[below(r, 11)];
        has67 |= body[n++] == 0x67;
    }
    if (mode == 64 && unif(r) < 0.4)
        body[n++] = (uint8_t)(0x40 | below(r, 16));
    double x = unif(r);
    const uint8_t *hot = b->hot1;
    size_t nhot = (size_t)b->nhot1;
    if (x >= 0.55 && x < 0.85) {
        body[n++] = 0x0F;
        hot = HOT_0F, nhot = sizeof HOT_0F;
    } else if (x >= 0.85 && x < 0.93) {
        body[n++] = 0x0F, body[n++] = 0x38;
        hot = HOT_0F38, nhot = sizeof HOT_0F38;
    } else if (x >= 0.93) {
        body[n++] = 0x0F, body[n++] = 0x3A;
        hot = HOT_0F3A, nhot = sizeof HOT_0F3A;
    }
    body[n++] = unif(r) < 0.5 ? hot[below(r, nhot)] : (uint8_t)below(r, 256);
    n += modrm_tail(r, body + n, mode == 32 && has67);
    int ni = NI[below(r, 8)];
    for (int i = 0; i < ni; i++)
        body[n++] = (uint8_t)nx(r);
    size_t start = n > 15 ? below(r, n - 15 + 1) : 0;
    size_t len = n > 15 ? 15 : n;
    memcpy(out, body + start, len);
    return (int)len;
}

/* --family: one instruction of a family from its templates (exitlab/tools/fuzz/gen.py FAMILIES): 0-2
 * legacy prefixes, the template's mandatory prefix, REX (64-bit), the opcode, a ModRM that names
 * memory (the template's /reg forced), SIB/displacement, the immediate.  Cut to 15 bytes from the
 * front, as structured_bytes does. */
static int family_bytes(struct xl_fz_batch *b, struct fz_rng *r, int mode, uint8_t *out)
{
    static const uint8_t PRE[9] = {0x66, 0x67, 0xF3, 0xF2, 0x64, 0x65, 0x2E, 0x3E, 0xF0};
    const uint8_t *t = b->fam + XL_FZ_TEMPLATE * below(r, (uint64_t)b->nfam);
    uint8_t body[48];
    size_t n = 0;
    int has66 = 0, has67 = 0, rexw = 0;
    int np = (int)below(r, 3);
    for (int i = 0; i < np; i++) {
        body[n] = PRE[unif(r) < 0.97 ? below(r, 8) : 8];
        has66 |= body[n] == 0x66;
        has67 |= body[n++] == 0x67;
    }
    if (t[0])
        body[n++] = t[0];
    if (mode == 64 && unif(r) < 0.4) {
        body[n] = (uint8_t)(0x40 | below(r, 16));
        rexw = (body[n++] & 8) != 0;
    }
    int oplen = t[1] > 3 ? 3 : t[1];
    memcpy(body + n, t + 2, (size_t)oplen);
    n += (size_t)oplen;
    if (t[5] != XL_FZ_NO_MODRM) {
        size_t m = modrm_tail(r, body + n, mode == 32 && has67);
        for (int k = 0; k < 3 && (body[n] >> 6) == 3; k++)  /* aim at memory: MMIO is what is tested */
            m = modrm_tail(r, body + n, mode == 32 && has67);
        if (t[5] < 8)
            body[n] = (uint8_t)((body[n] & ~0x38) | (t[5] << 3));
        n += m;
    }
    int ni = t[6] == 1 ? 1 : t[6] == 2 ? (has66 && !rexw ? 2 : 4) : 0;
    for (int i = 0; i < ni; i++)
        body[n++] = (uint8_t)nx(r);
    size_t start = n > 15 ? n - 15 : 0;
    size_t len = n - start;
    memcpy(out, body + start, len);
    return (int)len;
}

int xl_fz_batch_family(struct xl_fz_batch *b, const uint8_t *templates, size_t n)
{
    if (n > XL_FZ_MAXFAM)
        return -1;
    if (n)
        memcpy(b->fam, templates, n * XL_FZ_TEMPLATE);
    b->nfam = (int)n;
    return 0;
}

static int contract_bytes(struct fz_rng *r, uint8_t *out)
{
    uint8_t c[64] = {0x66, 0x89, 0x02};
    size_t n = 3;
    if (unif(r) < 0.2) {
        size_t k = below(r, 4);
        for (size_t i = 0; i < k; i++)
            c[n++] = (uint8_t)nx(r);
        memcpy(out, c, n);
        return (int)n;
    }
    int rounds = 1 + (int)below(r, 3);
    for (int k = 0; k < rounds && n < 40; k++) {
        int m = (int)below(r, 8);
        size_t op_at = n >= 2 ? n - 2 : 0;
        for (size_t i = 0; i < n; i++)
            if (c[i] == 0x88 || c[i] == 0x89 || c[i] == 0x8B || c[i] == 0xC7 || c[i] == 0x8A) {
                op_at = i;
                break;
            }
        if (m == 0) {
            size_t at = below(r, op_at + 1);
            memmove(c + at + 1, c + at, n - at);
            c[at] = LEGACY[below(r, 11)];
            n++;
        } else if (m == 1) {
            size_t at = unif(r) < 0.7 ? op_at : 0;
            memmove(c + at + 1, c + at, n - at);
            c[at] = (uint8_t)(0x40 | below(r, 16));
            n++;
        } else if (m == 2 && op_at + 1 < n) {
            static const uint8_t M[9] = {0x02, 0x0A, 0x12, 0x42, 0x82, 0x04, 0x05, 0x03, 0xC2};
            size_t pick = below(r, 10);
            c[op_at + 1] = pick < 9 ? M[pick] : (uint8_t)below(r, 256);
        } else if (m == 3) {
            int has66 = 0;
            for (size_t i = 0; i < op_at; i++)
                has66 |= c[i] == 0x66;
            if (has66 && unif(r) < 0.5) {
                for (size_t i = 0; i < n; i++)
                    if (c[i] == 0x66) {
                        memmove(c + i, c + i + 1, n - i - 1);
                        n--;
                        break;
                    }
            } else {
                memmove(c + 1, c, n);
                c[0] = below(r, 2) ? 0x48 : 0x66;
                n++;
            }
        } else if (m == 4) {
            static const uint8_t O[7] = {0x88, 0x8B, 0x8A, 0xC7, 0x89, 0x87, 0x01};
            c[op_at] = O[below(r, 7)];
        } else if (m == 5) {
            size_t k2 = 1 + below(r, 4);
            for (size_t i = 0; i < k2; i++)
                c[n++] = (uint8_t)nx(r);
        } else if (m == 6 && n > 1) {
            size_t at = below(r, n);
            memmove(c + at, c + at + 1, n - at - 1);
            n--;
        } else {
            c[below(r, n)] ^= (uint8_t)(1u << below(r, 8));
        }
    }
    if (n > 15)
        n = 15;
    memcpy(out, c, n);
    return (int)n;
}

static int mutate_bytes(struct fz_rng *r, const uint8_t *code, int len, uint8_t *out)
{
    static const uint8_t INS[14] = {0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67, 0x48, 0x41,
                                    0x0F};
    uint8_t o[32];
    size_t n = len > 0 ? (size_t)len : 1;
    if (len > 0)
        memcpy(o, code, n);
    else
        o[0] = 0x90;
    int rounds = 1 + (int)below(r, 3);
    for (int k = 0; k < rounds; k++) {
        int m = (int)below(r, 5);
        size_t i = below(r, n);
        if (m == 0)
            o[i] ^= (uint8_t)(1u << below(r, 8));
        else if (m == 1)
            o[i] = (uint8_t)nx(r);
        else if (m == 2 && n < 15) {
            memmove(o + i + 1, o + i, n - i);
            o[i] = INS[below(r, 14)];
            n++;
        } else if (m == 3 && n > 1) {
            memmove(o + i, o + i + 1, n - i - 1);
            n--;
        } else if (n < 31)
            o[n++] = (uint8_t)nx(r);
    }
    if (n > 15)
        n = 15;
    memcpy(out, o, n);
    return (int)n;
}

/* -------------------------------------------------------------------------------- the solver */
static uint64_t random_value(struct fz_rng *r)
{
    static const uint64_t K[12] = {0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000ull,
                                   0xFFFFFFFFull, 1ull << 63, ~0ull, (1ull << 63) - 1};
    double x = unif(r);
    if (x < 0.2)
        return 0;
    if (x < 0.4)
        return below(r, 256);
    if (x < 0.5)
        return K[below(r, 12)];
    return nx(r);
}

/* A Capstone GPR: index 0-15 (REG_NAMES order), size in bytes; 0 when not an address register. */
static int gpr_of(unsigned reg, int *idx)
{
    static const unsigned R64[16] = {X86_REG_RAX, X86_REG_RCX, X86_REG_RDX, X86_REG_RBX, X86_REG_RSP, X86_REG_RBP,
                                     X86_REG_RSI, X86_REG_RDI, X86_REG_R8,  X86_REG_R9,  X86_REG_R10, X86_REG_R11,
                                     X86_REG_R12, X86_REG_R13, X86_REG_R14, X86_REG_R15};
    static const unsigned R32[16] = {X86_REG_EAX, X86_REG_ECX, X86_REG_EDX, X86_REG_EBX, X86_REG_ESP, X86_REG_EBP,
                                     X86_REG_ESI, X86_REG_EDI, X86_REG_R8D, X86_REG_R9D, X86_REG_R10D, X86_REG_R11D,
                                     X86_REG_R12D, X86_REG_R13D, X86_REG_R14D, X86_REG_R15D};
    static const unsigned R16[16] = {X86_REG_AX, X86_REG_CX, X86_REG_DX, X86_REG_BX, X86_REG_SP, X86_REG_BP,
                                     X86_REG_SI, X86_REG_DI, X86_REG_R8W, X86_REG_R9W, X86_REG_R10W, X86_REG_R11W,
                                     X86_REG_R12W, X86_REG_R13W, X86_REG_R14W, X86_REG_R15W};
    for (int i = 0; i < 16; i++) {
        if (reg == R64[i]) { *idx = i; return 8; }
        if (reg == R32[i]) { *idx = i; return 4; }
        if (reg == R16[i]) { *idx = i; return 2; }
    }
    return 0;
}

static uint64_t szmask(int bytes) { return bytes >= 8 ? ~0ull : (1ull << (8 * bytes)) - 1; }

static void set_sub(uint64_t *regs, int idx, int size, uint64_t v)
{
    uint64_t m = szmask(size);
    regs[idx] = (regs[idx] & ~m) | (v & m);
}

static uint64_t target(struct fz_rng *r, uint64_t base, uint64_t wsize, int size, int mode)
{
    double x = unif(r);
    if (x < 0.75) {
        uint64_t span = wsize > (uint64_t)size ? wsize - (uint64_t)size : 0;
        uint64_t al[4] = {1, (uint64_t)size, (uint64_t)size, 8};
        uint64_t a = al[below(r, 4)];
        return base + (below(r, span + 1) / a) * a;
    }
    if (x < 0.87) {
        uint64_t k = 1 + below(r, 7);
        return unif(r) < 0.5 ? base + wsize - k : base - k;
    }
    if (x < 0.95)
        return 0x2000 + below(r, 0x3F0000 - 0x2000);
    return nx(r) & (mode == 64 ? ~0ull : 0xFFFFFFFFull);
}

static uint64_t inv_odd(uint64_t a)
{
    uint64_t x = a; /* Newton: inverse of an odd number mod 2^64 */
    for (int i = 0; i < 6; i++)
        x *= 2 - a * x;
    return x;
}

static const cs_insn *cs_decode(struct xl_fz_batch *b, const uint8_t *p, size_t n, int mode)
{
    const uint8_t *code = p;
    size_t size = n;
    uint64_t addr = FZ_RIP;
    cs_insn *ci = b->ci[mode == 64];
    return cs_disasm_iter(b->cs[mode == 64], &code, &size, &addr, ci) ? ci : NULL;
}

static void aim(struct fz_rng *r, const cs_x86_op *op, uint64_t *regs, uint64_t wbase, uint64_t wsize, int size,
                int mode, uint64_t seg_base)
{
    if (unif(r) < 0.05)
        return;
    if (op->mem.base == X86_REG_RIP || op->mem.base == X86_REG_EIP)
        return;
    int bi = -1, ii = -1;
    int bs = gpr_of(op->mem.base, &bi), is = gpr_of(op->mem.index, &ii);
    uint64_t t = target(r, wbase, wsize, size, mode);
    if (!bs && !is)
        return;
    int bytes = bs ? bs : is;
    uint64_t amask = szmask(bytes);
    uint64_t scale = op->mem.scale > 0 ? (uint64_t)op->mem.scale : 1;
    uint64_t want = (t - seg_base - (uint64_t)op->mem.disp) & amask;
    if (bs && is && bi == ii) {
        uint64_t mult = 1 + scale, v;
        if (mult % 2 == 0) {
            want &= ~1ull;
            v = want / 2 + (below(r, 2) << (8 * bytes - 1));
        } else {
            v = want * inv_odd(mult);
        }
        set_sub(regs, bi, bs, v & amask);
        return;
    }
    if (bs) {
        uint64_t idx = 0;
        if (is) {
            uint64_t im = szmask(is), pick = below(r, 3);
            idx = pick == 0 ? 0 : pick == 1 ? below(r, 256) : regs[ii] & im;
            set_sub(regs, ii, is, idx);
        }
        set_sub(regs, bi, bs, (want - idx * scale) & amask);
        return;
    }
    set_sub(regs, ii, is, (want / scale) & amask);
}

/* LOCK and REP among the leading prefix bytes (and REX), as the CPU sees them. */
static void lead_prefixes(const uint8_t *code, int len, int mode, int *lock, int *rep)
{
    *lock = *rep = 0;
    for (int i = 0; i < len; i++) {
        uint8_t v = code[i];
        int is_pfx = v == 0xF0 || v == 0xF2 || v == 0xF3 || v == 0x2E || v == 0x36 || v == 0x3E || v == 0x26 ||
                     v == 0x64 || v == 0x65 || v == 0x66 || v == 0x67 || (mode == 64 && (v & 0xF0) == 0x40);
        if (!is_pfx)
            break;
        *lock |= v == 0xF0;
        *rep |= v == 0xF2 || v == 0xF3;
    }
}

static void solve_state(struct xl_fz_batch *b, struct fz_rng *r, const uint8_t *code, int len, int mode,
                        int force_notify, struct xl_fz_case *c)
{
    memset(c, 0, sizeof *c);
    int ngpr = mode == 64 ? 16 : 8;
    for (int i = 0; i < ngpr; i++)
        c->regs[i] = random_value(r);
    if (unif(r) < 0.8)
        c->regs[1] = below(r, 8);
    uint64_t flags = 0x2 | (nx(r) & 0x8D5);
    flags = unif(r) < 0.25 ? flags | 0x400 : flags & ~0x400ull;
    c->regs[17] = flags;
    uint8_t pad[32] = {0};
    memcpy(pad, code, (size_t)len);
    const cs_insn *in = cs_decode(b, pad, (size_t)len + 15, mode);
    const cs_x86 *x = in ? &in->detail->x86 : NULL;
    int lock, rep;
    lead_prefixes(code, len, mode, &lock, &rep);
    if (rep || (x && (x->prefix[0] == X86_PREFIX_REP || x->prefix[0] == X86_PREFIX_REPNE)))
        c->regs[1] = below(r, 8); /* a REP string runs RCX iterations in the one-step truth */
    int uses16 = x && x->addr_size == 2, size = 0;
    for (int i = 0; x && i < x->op_count; i++)
        if (x->operands[i].type == X86_OP_MEM && !size)
            size = x->operands[i].size;
    if (size != 1 && size != 2 && size != 4 && size != 8 && size != 16)
        size = size ? 8 : (int)(1u << below(r, 5));
    uint64_t wbase;
    if (force_notify == 1)
        wbase = FZ_WIN_NOTIFY;
    else if (uses16)
        wbase = FZ_WIN_W16;
    else {
        static const uint64_t W[4] = {FZ_WIN_REGS, FZ_WIN_REGS, FZ_WIN_NOTIFY, FZ_WIN_LOW};
        wbase = W[below(r, 4)];
    }
    if (mode == 64 && unif(r) < 0.15) {
        uint64_t pick[3] = {0, 0x1000, nx(r)};
        c->regs[18] = pick[below(r, 3)];
        c->regs[19] = pick[below(r, 3)];
    }
    for (int i = 0; x && i < x->op_count; i++) {
        const cs_x86_op *op = &x->operands[i];
        if (op->type != X86_OP_MEM)
            continue;
        uint64_t seg_base = 0;
        if (mode == 64 && op->mem.segment == X86_REG_FS)
            seg_base = c->regs[18];
        else if (mode == 64 && op->mem.segment == X86_REG_GS)
            seg_base = c->regs[19];
        aim(r, op, c->regs, wbase, 0x1000, size, mode, seg_base);
    }
    if (mode != 64)
        for (int i = 0; i < 8; i++)
            c->regs[i] &= 0xFFFFFFFFull;
    if (unif(r) < 0.5) {
        c->n_xmm = (uint8_t)(mode == 64 ? 16 : 8);
        for (int i = 0; i < c->n_xmm; i++)
            c->xmm[i][0] = nx(r), c->xmm[i][1] = nx(r);
    }
    c->regs[16] = FZ_RIP;
    c->mmio_base = wbase;
    c->mmio_size = 0x1000;
    if (wbase == FZ_WIN_REGS) {
        static const uint64_t B[5] = {0x80, 0xFF, 0x7F, 0x01, 0xA5};
        uint64_t k = below(r, 6);
        c->read_value = (k < 5 ? B[k] : below(r, 256)) * 0x0101010101010101ull;
    } else if (wbase == FZ_WIN_NOTIFY) {
        c->read_value = unif(r) < 0.8 ? 0 : nx(r);
    } else {
        double y = unif(r);
        static const uint64_t K[3] = {0x80, 0x8000, 0x80000000ull};
        c->read_value = y < 0.4 ? ~0ull : y < 0.8 ? nx(r) : K[below(r, 3)];
    }
    memcpy(c->code, code, (size_t)len);
    c->len = (uint8_t)len;
    c->mode = (uint8_t)mode;
}

static void gen_case(struct xl_fz_batch *b, struct fz_rng *r, int gen, const struct xl_fz_case *corpus,
                     size_t ncorpus, struct xl_fz_case *c)
{
    uint8_t code[16];
    int mode = unif(r) < 0.7 ? 64 : 32, len;
    if (gen == XL_FZ_CORPUS && ncorpus == 0)
        gen = XL_FZ_STRUCTURED; /* gen.py: an empty corpus falls back to structured */
    switch (gen) {
    case XL_FZ_HAVOC:
        len = 1 + (int)below(r, 15);
        for (int i = 0; i < len; i++)
            code[i] = (uint8_t)nx(r);
        solve_state(b, r, code, len, mode, 0, c);
        break;
    case XL_FZ_CONTRACT: {
        int notify = unif(r) < 0.85;
        len = contract_bytes(r, code);
        solve_state(b, r, code, len, mode, notify, c);
        break;
    }
    case XL_FZ_CORPUS: {
        const struct xl_fz_case *base = &corpus[below(r, ncorpus)];
        if (unif(r) < 0.25) {
            *c = *base;
        } else {
            len = mutate_bytes(r, base->code, base->len, code);
            mode = unif(r) < 0.9 ? base->mode : 96 - base->mode;
            solve_state(b, r, code, len, mode, 0, c);
        }
        break;
    }
    default:
        len = b->nfam ? family_bytes(b, r, mode, code) : structured_bytes(b, r, mode, code);
        solve_state(b, r, code, len, mode, 0, c);
    }
    c->gen = (uint8_t)gen;
}

/* ---------------------------------------------------------------------------------- skipping */
static int skip_reason(struct xl_fz_batch *b, const struct xl_fz_case *c)
{
    uint8_t pad[32] = {0};
    memcpy(pad, c->code, c->len);
    const cs_insn *in = cs_decode(b, pad, (size_t)c->len + 15, c->mode);
    const cs_x86 *x = in ? &in->detail->x86 : NULL;
    uint64_t rip = c->regs[16], am = c->mode == 64 ? ~0ull : 0xFFFFFFFFull;
    int lock, rep;
    lead_prefixes(c->code, c->len, c->mode, &lock, &rep);
    int has_mem = 0, span = 0x1000;
    for (int i = 0; x && i < x->op_count; i++)
        if (x->operands[i].type == X86_OP_MEM) {
            has_mem = 1;
            span = x->operands[i].size;
        }
    /* state.unicorn_would_abort: LOCK without a memory operand can abort() the process */
    if (lock && !has_mem)
        return XL_FZ_SKIP_LOCK;
    /* state.idiv_traps_host: unicorn divides the most negative EDX:EAX / DX:AX with a host idiv,
     * which a divisor of -1 turns into SIGFPE for the whole process */
    if (in && in->id == X86_INS_IDIV &&
        (((c->regs[2] & 0xFFFFFFFFull) == 0x80000000ull && (c->regs[0] & 0xFFFFFFFFull) == 0) ||
         ((c->regs[2] & 0xFFFF) == 0x8000 && (c->regs[0] & 0xFFFF) == 0)))
        return XL_FZ_SKIP_LOCK;
    /* state.rep_too_long */
    if (rep && (c->regs[1] & am) > 64)
        return XL_FZ_SKIP_REP;
    /* state.may_modify_own_code, with Capstone's operands (and the register test on any bytes) */
    uint64_t page = rip & ~0xFFFull;
    uint64_t lo = page - ((span == 0 || span > 64) ? 0x1000 : 64);
    uint64_t hi = ((rip + 15) | 0xFFF) + 1 + 64, lo_regs = page - 64;
    for (int i = 0; x && i < x->op_count; i++) {
        const cs_x86_op *op = &x->operands[i];
        if (op->type != X86_OP_MEM)
            continue;
        uint64_t ea;
        if (op->mem.base == X86_REG_RIP || op->mem.base == X86_REG_EIP) {
            ea = rip + in->size + (uint64_t)op->mem.disp;
        } else {
            int bi, ii;
            int bs = gpr_of(op->mem.base, &bi), is = gpr_of(op->mem.index, &ii);
            ea = (uint64_t)op->mem.disp;
            if (bs)
                ea += c->regs[bi] & szmask(bs);
            if (is)
                ea += (c->regs[ii] & szmask(is)) * (uint64_t)(op->mem.scale > 0 ? op->mem.scale : 1);
            if (c->mode == 64 && op->mem.segment == X86_REG_FS)
                ea += c->regs[18];
            if (c->mode == 64 && op->mem.segment == X86_REG_GS)
                ea += c->regs[19];
        }
        if ((ea & am) >= lo && (ea & am) < hi)
            return XL_FZ_SKIP_SMC;
    }
    static const int NEAR[4] = {6, 7, 4, 5}; /* rsi rdi rsp rbp */
    for (int k = 0; k < 4; k++)
        for (int64_t d = -64; d <= 64; d += 64) {
            uint64_t a = (c->regs[NEAR[k]] + (uint64_t)d) & am;
            if (a >= lo_regs && a < hi)
                return XL_FZ_SKIP_SMC;
        }
    return XL_FZ_RUN;
}

/* ------------------------------------------------------------------------------- the oracles */
static uint64_t device_read(const struct xl_fz_case *c, int *known)
{
    uint64_t v = c->read_value;
    if (c->mmio_base == XL_REGS_MMIO)
        *known = v == (v & 0xFF) * 0x0101010101010101ull;
    else if (c->mmio_base == XL_NOTIFY_MMIO)
        *known = v == 0;
    else
        *known = v == ~0ull;
    return v;
}

static int c_paths(struct xl_fz_batch *b, const struct xl_fz_case *c, const struct xl_fz_truth *t,
                   struct xl_fz_stats *st, int sem_form)
{
    int suspect = 0;
    const struct xl_fz_acc *first = &t->acc[0];
    struct xl_record rec;
    memset(&rec, 0, sizeof rec);
    rec.kind = first->write ? XL_MMIO_WRITE : XL_MMIO_READ;
    rec.mode = c->mode;
    rec.insn_len = c->len;
    memcpy(rec.insn, c->code, c->len);
    rec.rip = c->regs[16];
    rec.addr = first->gpa;
    memcpy(rec.regs, c->regs, sizeof rec.regs);
    int known = 0, has_reads = 0;
    device_read(c, &known);
    for (uint32_t i = 0; i < t->n_acc && i < XL_FZ_MAXACC; i++)
        has_reads |= !t->acc[i].write;
    int values_known = known || !has_reads;
    uint64_t h = XL_HASH_INIT;
    for (uint32_t i = 0; i < t->n_acc && i < XL_FZ_MAXACC; i++)
        h = xl_acc_mix(h, t->acc[i].gpa, (int)t->acc[i].size, (int)t->acc[i].write, t->acc[i].value);
    int ngpr = c->mode == 64 ? 16 : 8;
    uint64_t wmask = c->mode == 64 ? ~0ull : 0xFFFFFFFFull;
    static const int PATHS[3] = {XL_PATH_SUBSET, XL_PATH_CAPSTONE, XL_PATH_PVFAST};
    static const int ORACLE[3] = {XL_FZ_O_SUBSET, XL_FZ_O_CAPSTONE, XL_FZ_O_PVFAST};
    int npaths = (c->mmio_base == XL_NOTIFY_MMIO && first->write) ? 3 : 2;
    for (int k = 0; k < npaths; k++) {
        int o = ORACLE[k], outcome = XL_FZ_AGREE;
        struct xl_result res;
        uint64_t regs_out[XL_NREGS];
        if (c->mmio_base == XL_REGS_MMIO)
            memset(b->ctx.dev.regs, (int)(c->read_value & 0xFF), sizeof b->ctx.dev.regs);
        xl_replay_one(&b->ctx, PATHS[k], &rec, &res, regs_out);
        if (PATHS[k] != XL_PATH_CAPSTONE && res.path != PATHS[k])
            outcome = XL_FZ_DECLINED;
        else if ((res.status == XL_E_DE || (t->fault == XL_FZ_EXCEPTION && t->fault_code == 0)) && !values_known)
            outcome = XL_FZ_NOT_COMPARED;  /* #DE depends on the divisor, which the C device answers otherwise */
        else if (res.status == XL_E_DE)  /* #DE is a stop: right only where Unicorn raised it too */
            outcome = t->fault == XL_FZ_EXCEPTION && t->fault_code == 0 ? XL_FZ_AGREE : XL_FZ_SUSPECT;
        else if (res.status != XL_OK && PATHS[k] == XL_PATH_CAPSTONE && sem_form && t->fault == XL_FZ_OK &&
                 res.status != XL_E_NOMEM)
            outcome = XL_FZ_SUSPECT;  /* a form of sem*.c's tables refused where Unicorn ran: Python decides */
        else if (res.status != XL_OK)
            outcome = XL_FZ_STATUS;
        else if (t->fault != XL_FZ_OK || t->n_acc > XL_FZ_MAXACC)
            outcome = XL_FZ_SUSPECT;
        else if (res.gpa != first->gpa || res.write != first->write || res.size != first->size ||
                 res.n_acc != (t->n_acc > 255 ? 255 : t->n_acc))
            outcome = XL_FZ_SUSPECT;
        else if (values_known && res.acc_hash != h)
            outcome = XL_FZ_SUSPECT;
        else if (res.next_rip != t->next_rip)
            outcome = XL_FZ_SUSPECT;
        else if (values_known) {
            for (int i = 0; i < ngpr; i++)
                if ((regs_out[i] & wmask) != t->regs[i])
                    outcome = XL_FZ_SUSPECT;
        }
        if (outcome == XL_FZ_SUSPECT)
            suspect |= 1 << o;
        else
            st->outcomes[o][outcome]++;
    }
    return suspect;
}

static int check_case(struct xl_fz_batch *b, const struct xl_fz_case *c, struct xl_fz_truth *t,
                      struct xl_fz_stats *st, uint8_t *touched)
{
    struct xl_fz_engine *e = engine_for(b, c);
    if (!e || xl_fz_run(e, c, t) != 0)
        return -1;
    *touched = t->n_acc > 0;
    int suspect = 0;
    /* length: ours against Capstone's (the Python Checker then asks iced-x86) */
    const cs_insn *in = cs_decode(b, c->code, c->len, c->mode);
    int ref = in ? (int)in->size : -1;
    int n = xl_insn_length(c->code, c->len, c->mode);
    if (n < 0)
        st->outcomes[XL_FZ_O_LENGTH][ref < 0 ? XL_FZ_BOTH_INVALID : XL_FZ_DECLINED]++;
    else if (n != ref)
        suspect |= 1 << XL_FZ_O_LENGTH;
    else
        st->outcomes[XL_FZ_O_LENGTH][XL_FZ_AGREE]++;
    /* the subset decoder: what it accepts must run, at that length and size */
    struct xl_insn d;
    if (xl_decode_subset(c->code, c->len, c->mode, &d) <= 0) {
        st->outcomes[XL_FZ_O_DECODER][XL_FZ_DECLINED]++;
    } else {
        int bad = t->fault == XL_FZ_UCERR && t->fault_code == UC_ERR_INSN_INVALID;
        bad |= ref >= 0 && d.len != ref;
        int memsize = 0;
        for (int i = 0; in && i < in->detail->x86.op_count; i++)
            if (in->detail->x86.operands[i].type == X86_OP_MEM)
                memsize = in->detail->x86.operands[i].size;
        bad |= d.kind != XL_K_MOVS && d.kind != XL_K_STOS && memsize && memsize != d.size;
        if (bad)
            suspect |= 1 << XL_FZ_O_DECODER;
        else
            st->outcomes[XL_FZ_O_DECODER][memsize ? XL_FZ_AGREE : XL_FZ_ACCEPTED]++;
    }
    if (t->n_acc > 0)
        suspect |= c_paths(b, c, t, st, in && ref <= (int)c->len && xl_sem_known(in->id));
    return suspect;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int xl_fz_batch_run(struct xl_fz_batch *b, uint64_t seed, uint64_t start, size_t n, const uint8_t *gens,
                    size_t ngens, const struct xl_fz_case *corpus, size_t ncorpus, struct xl_fz_case *cases,
                    struct xl_fz_out *out, struct xl_fz_stats *st)
{
    static struct xl_fz_truth truth; /* one per process: batches run one at a time */
    if (!b->cs_ok || ngens == 0)
        return -1;
    for (size_t k = 0; k < n; k++) {
        uint64_t i = start + k, t0 = now_ns();
        struct fz_rng r = {seed * 0xD1B54A32D192ED03ull ^ (i + 1) * 0x9E3779B97F4A7C15ull};
        nx(&r);
        int gen = gens[i % ngens] < XL_FZ_NGEN ? gens[i % ngens] : XL_FZ_HAVOC;
        struct xl_fz_case *c = &cases[k];
        struct xl_fz_out *o = &out[k];
        gen_case(b, &r, gen, corpus, ncorpus, c);
        o->gen = c->gen = (uint8_t)gen;
        o->suspect = o->touched = 0;
        o->skip = (uint8_t)skip_reason(b, c);
        if (o->skip == XL_FZ_RUN) {
            int s = check_case(b, c, &truth, st, &o->touched);
            if (s < 0)
                o->skip = XL_FZ_SKIP_LAYOUT;
            else
                o->suspect = (uint8_t)s;
        }
        st->cases[gen]++;
        st->flagged[gen] += o->suspect != 0;
        st->skipped[gen] += o->skip != XL_FZ_RUN;
        st->mmio[gen] += o->touched;
        st->ns[gen] += now_ns() - t0;
    }
    return 0;
}
