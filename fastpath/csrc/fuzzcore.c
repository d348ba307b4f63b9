/* See fuzzcore.h.  No allocation per case. */
#include <stdlib.h>
#include <string.h>

#include <unicorn/unicorn.h>

#include "fuzzcore.h"

#define FZ_PAGE 0x1000ull
#define FZ_RAM_BASE 0x1000ull
#define FZ_RAM_END 0x400000ull

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

static int in_window(const struct xl_fz_engine *e, uint64_t page)
{
    return page >= (e->base & ~(FZ_PAGE - 1)) && page < e->base + e->size;
}

static int is_ram_page(const struct xl_fz_engine *e, uint64_t page)
{
    int ram = (page >= FZ_RAM_BASE && page < FZ_RAM_END) ||
              (page >= (e->rip & ~(FZ_PAGE - 1)) && page <= ((e->rip + 15) & ~(FZ_PAGE - 1)));
    return ram && !in_window(e, page);
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
    /* default_ram_regions: the platform RAM plus the code pages, minus the window; contiguous runs.
     * The page set is ordered: RAM pages, then code pages above or below them. */
    {
        uint64_t pages[2][2] = {{FZ_RAM_BASE, FZ_RAM_END},
                                {rip & ~(FZ_PAGE - 1), ((rip + 15) & ~(FZ_PAGE - 1)) + FZ_PAGE}};
        uint64_t lo = 0, hi = 0;
        int open_run = 0;
        /* walk candidate pages in ascending order: the union of the two ranges */
        uint64_t starts[2] = {pages[0][0], pages[1][0]};
        int first = starts[1] < starts[0];
        for (int k = 0; k < 2; k++) {
            int w = k == 0 ? first : !first;
            for (uint64_t p = pages[w][0]; p < pages[w][1]; p += FZ_PAGE) {
                if (!is_ram_page(e, p))
                    continue;
                if (open_run && p < hi)
                    continue; /* already covered by the other range */
                if (open_run && p == hi) {
                    hi += FZ_PAGE;
                    continue;
                }
                if (open_run) {
                    if (e->n_runs >= 8) { r = UC_ERR_ARG; goto fail; }
                    e->ram_lo[e->n_runs] = lo;
                    e->ram_hi[e->n_runs++] = hi;
                }
                lo = p;
                hi = p + FZ_PAGE;
                open_run = 1;
            }
        }
        if (open_run) {
            if (e->n_runs >= 8) { r = UC_ERR_ARG; goto fail; }
            e->ram_lo[e->n_runs] = lo;
            e->ram_hi[e->n_runs++] = hi;
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
    uint8_t code[32] = {0};
    memcpy(code, c->code, c->len);
    uc_mem_write(uc, rip, code, sizeof code);
    uc_ctl_remove_cache(uc, rip, rip + sizeof code);
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
    for (int i = 0; i < c->n_xmm && i < 16; i++) {
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

