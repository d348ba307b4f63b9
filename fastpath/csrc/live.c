/* Live mode (see live.h).
 *
 * Exit style: the device windows are mapped without permissions (see xl_live_run); the
 * UC_HOOK_MEM_*_PROT hook records the pending exit (kind, address; the value Unicorn passes for a
 * write is NOT given to the path) and returns false, uc_emu_start returns UC_ERR_*_PROT with RIP
 * on the instruction; the loop hands the
 * exit to the path, writes back the registers it changed and restarts at its next RIP.
 * Hypercalls (0f01c1 / 0f01d9) arrive as UC_HOOK_INSN_INVALID and go through the same loop.
 * Port I/O is handled inside UC_HOOK_INSN IN/OUT callbacks (RIP exact, data in the exit).
 *
 * In-place style: uc_mmio_map on the device windows plus a UC_HOOK_MEM_READ|WRITE hook on the
 * same ranges, which fires first with exact RIP and full size: the path runs there (decode +
 * exactly that one device access); Unicorn completes the access itself: the mmio_map callbacks
 * never touch a device, reads are answered byte by byte from the value the path read.  When the
 * hook must refuse the instruction (decline, access running off the window), it removes the
 * window's permissions: Unicorn's permission check, which runs right after the hook, then aborts
 * the instruction precisely (cpu_loop_exit), so no part of it is performed.
 *
 * Budget: a UC_HOOK_CODE counter over the whole run (both styles), REP iterations counted one by
 * one as Unicorn executes them; a path emulating a REP at an exit performs at most the remaining
 * budget's iterations.  HLT: uc_emu_start returns UC_ERR_OK only for HLT, `until` (never reached),
 * or a uc_emu_stop this file asked for (each of which sets a flag first).
 *
 * Code guard (SEMANTICS rule 9, the Python engine's scheme): Unicorn aborts the process while
 * translating LOCK BT* reg, so no code reaches its translator unscanned.  The TLB is virtual (an
 * identity UC_HOOK_TLB_FILL, called only on TLB misses) with W^X RAM pages: a fetch from a page not
 * scanned since its last write scans it (lockguard.c) and registers every LOCK #UD start as a
 * Unicorn exit, then maps it read+exec; a guest write maps it read+write (so code written at run
 * time is rescanned); a path's own RAM writes drop the page's translations.  Exits stop execution
 * in front of the instruction: uc_emu_start returns UC_ERR_OK there and the loop stops
 * `invalid_insn`.  Exits are enabled only once a site is found (they make every MMIO exit ~60x
 * slower in Unicorn 2.1.4), and the TLB hook only covers RAM, so a guest without LOCK #UD pays
 * one callback per RAM page fill and nothing per exit.  UC_ERR_OK is then HLT, a guard exit,
 * `until` (~0, never executed) or a stop this file asked for (each of which sets a flag first).
 *
 * No allocation per exit: all state lives in struct live on this function's stack (the guard's
 * page map and exit list are allocated once per run).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include <unicorn/unicorn.h>

#include "divguard.h"
#include "flagfix.h"
#include "sem.h"  /* XS_VEC_* */
#include "live.h"
#include "lockguard.h"
#include "insn_subset.h"
#include "paths.h"

#define PAGE 0x1000ull
#define XL_MAX_GUARD 4096  /* LOCK #UD sites a run can register as Unicorn exits */

enum { PEND_NONE = 0, PEND_MMIO = 1, PEND_HC = 2 };

struct live;
/* One page-aligned device window the run maps (the board's, from ctx->tab, or the default board's
 * two flat windows); allocated once per run. */
struct win {
    struct live *L;
    uint64_t base, size;
    int mapped;
};

struct live {
    struct xl_ctx *ctx;
    uc_engine *uc;
    const struct xl_live_cfg *cfg;
    struct xl_live_result *out;
    struct xl_cpu cpu;
    const int *ids;
    int pending;
    uint32_t pend_kind;
    uint32_t pend_size;     /* the access size Unicorn reports (a consistency check, rule 7) */
    int pend_multi;         /* Unicorn went on after the faulting access (fxsave, maskmovdqu...) */
    uint64_t multi_rip;
    uint64_t pend_addr;
    uint64_t pend_value;    /* the data of a write exit: for the trace only, never given to a path */
    uint32_t stop;
    int budget_on;
    int64_t budget_left;
    /* RFLAGS corrections (flagfix.h): the budget hook and the SETcc site hooks fill its stash */
    struct xl_flagfix ff;
    /* IDIV r/m32 that would SIGFPE the host: stopped with #DE (divguard.h) */
    struct xl_divguard dg;
    /* the LOCK #UD code guard: per RAM page "scanned since its last write", and the exits */
    uint8_t *clean;
    uint64_t *gexits;
    size_t ngexits;
    int guard_full;
    int exits_on;           /* Unicorn exits enabled (then `until` is ignored) */
    int smc_pending;        /* a store hit a scanned page: QEMU may restart it (budget: count once) */
    uint64_t smc_rip;
    /* in-place: the value the path read, for the mmio_map read callback */
    uint64_t rd_addr, rd_value;
    int rd_size;
    /* in-place: a window whose permissions were removed to abort the current instruction */
    uint64_t prot_base, prot_size;
    struct win *win;
    uint32_t nwin;
    xl_trace_fn trace;      /* devtab.h: record every exit through Python (NULL: no trace) */
    void *trace_opaque;
    /* trap EXIT: a port I/O exit asked Unicorn to stop; the end of its instruction (see pio_stop) */
    int pio_stop;
    uint64_t pio_end;
};

struct xl_live_ctl {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    volatile uint32_t request;
};

static uint64_t mono_ns(void);

static int ctl_init(struct xl_live_ctl *ctl)
{
    pthread_condattr_t ca;
    memset(ctl, 0, sizeof(*ctl));
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_mutex_init(&ctl->mu, NULL);
    if (rc == 0 && pthread_cond_init(&ctl->cv, &ca) != 0) {
        pthread_mutex_destroy(&ctl->mu);
        rc = -1;
    }
    pthread_condattr_destroy(&ca);
    return rc;
}

static void ctl_destroy(struct xl_live_ctl *ctl)
{
    pthread_cond_destroy(&ctl->cv);
    pthread_mutex_destroy(&ctl->mu);
}

struct xl_live_ctl *xl_live_ctl_new(void)
{
    struct xl_live_ctl *ctl = malloc(sizeof(*ctl));
    if (ctl && ctl_init(ctl) != 0) {
        free(ctl);
        return NULL;
    }
    return ctl;
}

void xl_live_ctl_free(struct xl_live_ctl *ctl)
{
    if (!ctl)
        return;
    ctl_destroy(ctl);
    free(ctl);
}

void xl_live_ctl_reset(struct xl_live_ctl *ctl)
{
    pthread_mutex_lock(&ctl->mu);
    ctl->request = 0;
    pthread_mutex_unlock(&ctl->mu);
}

int xl_live_request_stop(struct xl_live_ctl *ctl, uint32_t reason)
{
    if (!ctl || reason == 0)
        return -1;
    pthread_mutex_lock(&ctl->mu);
    if (!ctl->request)
        ctl->request = reason;
    pthread_cond_broadcast(&ctl->cv);
    pthread_mutex_unlock(&ctl->mu);
    return 0;
}

/* One watchdog thread per run, for the wall-clock limit and stop requests (Unicorn's own timeout
 * starts a thread per uc_emu_start, i.e. per exit, ~100 us each).  Once it decides to stop the run
 * (`halt`), it calls uc_emu_stop every millisecond until the run loop has noticed: a uc_emu_stop
 * that lands between two segments would otherwise be lost.  uc_emu_stop is only called with the
 * mutex held and `done` clear, so never after the run has returned. */
struct watchdog {
    struct xl_live_ctl *ctl;
    uc_engine *uc;
    uint64_t deadline;          /* CLOCK_MONOTONIC ns, 0: none */
    int done;                   /* under ctl->mu */
    volatile uint32_t halt;     /* the stop reason, once decided (read by the run loop and REP loops) */
};

static struct timespec ts_of(uint64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    return ts;
}

static void *watchdog_main(void *arg)
{
    struct watchdog *w = (struct watchdog *)arg;
    struct xl_live_ctl *ctl = w->ctl;
    pthread_mutex_lock(&ctl->mu);
    while (!w->done) {
        if (!w->halt) {
            if (ctl->request)
                w->halt = ctl->request;
            else if (w->deadline && mono_ns() >= w->deadline)
                w->halt = XL_STOP_TIMEOUT;
        }
        if (w->halt) {
            uc_emu_stop(w->uc);
            struct timespec ts = ts_of(mono_ns() + 1000000ull);
            pthread_cond_timedwait(&ctl->cv, &ctl->mu, &ts);
        } else if (w->deadline) {
            struct timespec ts = ts_of(w->deadline);
            pthread_cond_timedwait(&ctl->cv, &ctl->mu, &ts);
        } else {
            pthread_cond_wait(&ctl->cv, &ctl->mu);
        }
    }
    pthread_mutex_unlock(&ctl->mu);
    return NULL;
}

static const int ids64[XL_NREGS] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP, UC_X86_REG_RBP,
    UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15, UC_X86_REG_RIP, UC_X86_REG_RFLAGS,
    UC_X86_REG_FS_BASE, UC_X86_REG_GS_BASE,
};
/* 16/32-bit: E-registers; R8-R15 and FS/GS base read as 0 (as emu/regfile.py does). */
static const int ids32[XL_NREGS] = {
    UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX, UC_X86_REG_ESP, UC_X86_REG_EBP,
    UC_X86_REG_ESI, UC_X86_REG_EDI, -1, -1, -1, -1, -1, -1, -1, -1, UC_X86_REG_EIP, UC_X86_REG_EFLAGS, -1, -1,
};

static void live_fill(struct xl_cpu *c, int i)
{
    struct live *L = (struct live *)c->opaque;
    uint64_t v = 0;
    if (L->ids[i] >= 0)
        uc_reg_read(L->uc, L->ids[i], &v);
    c->regs[i] = v;
}

/* Vector registers (and CR0) for the SSE/AVX/MMX and SMSW forms of the Capstone path
 * (sem_sse.c, sem_vector.c, sem_misc.c): read or written one register at a time, only when such a
 * form runs, so no other exit pays for them.  idx: XMM 0-15 (v[0..1]), XS_VEC_YMM + i (v[0..3]),
 * XS_VEC_MM + i (v[0]; the x87 register's mantissa, exponent set to all ones on a write as the CPU
 * does for MMX), XS_VEC_CR0 (read-only).  Only 8 XMM/YMM outside 64-bit mode. */
static int live_vec(struct xl_cpu *c, int idx, int write, uint64_t v[2])
{
    struct live *L = (struct live *)c->opaque;
    int n = c->mode == 64 ? 16 : 8;
    uc_err e;
    if (idx >= 0 && idx < n) {
        e = write ? uc_reg_write(L->uc, UC_X86_REG_XMM0 + idx, v) : uc_reg_read(L->uc, UC_X86_REG_XMM0 + idx, v);
    } else if (idx >= XS_VEC_YMM && idx < XS_VEC_YMM + n) {
        int r = UC_X86_REG_YMM0 + (idx - XS_VEC_YMM);
        e = write ? uc_reg_write(L->uc, r, v) : uc_reg_read(L->uc, r, v);
    } else if (idx >= XS_VEC_MM && idx < XS_VEC_MM + 8) {
        struct {
            uint64_t mantissa;
            uint16_t exponent;
        } f = {0, 0};  /* Unicorn's FP register layout (x87 80-bit) */
        int r = UC_X86_REG_FP0 + (idx - XS_VEC_MM);
        if (write) {
            f.mantissa = v[0];
            f.exponent = 0xFFFF;
            e = uc_reg_write(L->uc, r, &f);
        } else {
            e = uc_reg_read(L->uc, r, &f);
            v[0] = f.mantissa;
        }
    } else if (idx == XS_VEC_CR0 && !write) {
        e = uc_reg_read(L->uc, UC_X86_REG_CR0, &v[0]);
    } else {
        return -1;
    }
    return e == UC_ERR_OK ? 0 : -1;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void record_bytes(struct live *L, uint64_t rip)
{
    const struct xl_live_cfg *cfg = L->cfg;
    uint64_t off = rip - cfg->ram_base;
    L->out->rip = rip;
    L->out->len = 0;
    memset(L->out->bytes, 0, sizeof(L->out->bytes));
    if (rip >= cfg->ram_base && off < cfg->ram_size) {
        uint64_t n = cfg->ram_size - off;
        if (n > XL_MAX_INSN)
            n = XL_MAX_INSN;
        memcpy(L->out->bytes, (const uint8_t *)(uintptr_t)cfg->ram + off, (size_t)n);
        L->out->len = (uint8_t)n;
    }
}

static uint64_t read_rip(struct live *L)
{
    uint64_t v = 0;
    uc_reg_read(L->uc, L->ids[XL_RIP], &v);
    return v;
}

/* ---- hooks */

/* Is addr in a device window of the run (a page no device may fully claim: the rest of it is the
 * bus's, unclaimed, as in emu/machine.py `mmio_window`)?  Only asked when no device claims addr. */
static int in_window(const struct live *L, uint64_t addr)
{
    for (uint32_t i = 0; i < L->nwin; i++)
        if (addr - L->win[i].base < L->win[i].size)
            return 1;
    return 0;
}

static bool hook_unmapped(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *ud)
{
    struct live *L = (struct live *)ud;
    (void)uc;
    (void)value;  /* ground truth for tests only: a real exit carries no data */
    if (type == UC_MEM_WRITE_PROT)
        type = UC_MEM_WRITE_UNMAPPED;  /* exit style: the windows are mapped without permissions */
    else if (type == UC_MEM_READ_PROT)
        type = UC_MEM_READ_UNMAPPED;
    else if (type == UC_MEM_FETCH_PROT)
        type = UC_MEM_FETCH_UNMAPPED;
    if ((type == UC_MEM_WRITE_UNMAPPED || type == UC_MEM_READ_UNMAPPED) &&
        (xl_dev_claims(L->ctx, addr) || in_window(L, addr))) {
        if (L->pending == PEND_MMIO) {
            /* A second access in the same segment: Unicorn did not stop at the first one.  Some
             * helpers (fxsave, maskmovdqu) ignore the fault and go on, and the exit would then be
             * reported at a later RIP; rule 7: never handled.  RIP is still on that instruction. */
            if (!L->pend_multi) {
                L->pend_multi = 1;
                L->multi_rip = read_rip(L);
            }
            return false;
        }
        L->pending = PEND_MMIO;
        L->pend_kind = type == UC_MEM_WRITE_UNMAPPED ? XL_MMIO_WRITE : XL_MMIO_READ;
        L->pend_addr = addr;
        L->pend_value = (uint64_t)value;
        L->pend_size = size > 0 ? (uint32_t)size : 0;
        return false;
    }
    if (!L->stop) {
        L->stop = XL_STOP_UNMAPPED;
        L->out->addr = addr;
        L->out->access = (uint32_t)type;
    }
    return false;
}

static int handle_pending(struct live *L, uint64_t *rip);

static bool hook_invalid(uc_engine *uc, void *ud)
{
    struct live *L = (struct live *)ud;
    uint64_t rip = read_rip(L);
    const struct xl_live_cfg *cfg = L->cfg;
    uint64_t off = rip - cfg->ram_base;
    if (rip >= cfg->ram_base && off < cfg->ram_size && cfg->ram_size - off >= 3) {
        const uint8_t *p = (const uint8_t *)(uintptr_t)cfg->ram + off;
        uint32_t op3 = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
        if (op3 == XL_VMCALL || op3 == XL_VMMCALL) {  /* platform_gen.h, from emu/hypercall.py */
            L->pending = PEND_HC;
            /* trap HOOK: the hypercall is handled here and Unicorn goes on at its next RIP without
             * leaving uc_emu_start (a stop request or an error: the run loop sees it as today) */
            if (cfg->trap == XL_TRAP_HOOK && !L->stop && !*L->cpu.stop_flag) {
                uint64_t next;
                if (handle_pending(L, &next) < 0) {
                    L->pending = PEND_NONE;
                    return false;
                }
                L->pending = PEND_NONE;
                uc_reg_write(uc, L->ids[XL_RIP], &next);
                return true;
            }
            return false;
        }
    }
    if (!L->stop) {
        L->stop = XL_STOP_INVALID_INSN;
        record_bytes(L, rip);
    }
    return false;
}

/* trap EXIT: after the access (done in the hook, at the exact RIP, in program order), stop the engine
 * as an exit would and note where the IN/OUT ends; the run loop restarts (see pio_stop_halted). */
static void pio_exit_stop(struct live *L)
{
    const struct xl_live_cfg *cfg = L->cfg;
    uint64_t rip = read_rip(L), off = rip - cfg->ram_base;
    int len = -1;
    if (rip >= cfg->ram_base && off < cfg->ram_size) {
        uint64_t left = cfg->ram_size - off;
        len = xl_insn_length((const uint8_t *)(uintptr_t)cfg->ram + off, left < XL_MAX_INSN ? (size_t)left
                             : XL_MAX_INSN, cfg->mode);
    }
    L->pio_stop = 1;
    L->pio_end = len > 0 ? rip + (uint64_t)len : rip;
    uc_emu_stop(L->uc);
}

static uint32_t hook_in(uc_engine *uc, uint32_t port, int size, void *ud)
{
    struct live *L = (struct live *)ud;
    (void)uc;
    L->out->pio_exits++;
    L->out->exits++;
    L->out->kinds[XL_PIO_IN]++;
    L->ctx->counts[XL_PATH_PIO]++;
    uint32_t v = (uint32_t)xl_pio(L->ctx, port, size, 0, 0);
    if (L->trace)  /* as emu/machine.py _on_in: recorded with the value read */
        L->trace(L->trace_opaque, XL_PIO_IN, read_rip(L), port, (uint32_t)size, v);
    if (L->cfg->trap == XL_TRAP_EXIT)
        pio_exit_stop(L);
    return v;
}

static void hook_out(uc_engine *uc, uint32_t port, int size, uint32_t value, void *ud)
{
    struct live *L = (struct live *)ud;
    (void)uc;
    L->out->pio_exits++;
    L->out->exits++;
    L->out->kinds[XL_PIO_OUT]++;
    L->ctx->counts[XL_PATH_PIO]++;
    if (L->trace)
        L->trace(L->trace_opaque, XL_PIO_OUT, read_rip(L), port, (uint32_t)size, value);
    xl_pio(L->ctx, port, size, 1, value);
    if (L->cfg->trap == XL_TRAP_EXIT)
        pio_exit_stop(L);
}

/* trap EXIT: Unicorn honours a stop only between translated blocks, so the instructions after the
 * IN/OUT up to the end of its block have run when uc_emu_start returns UC_ERR_OK -- as it does for a
 * HLT.  Walk that straight-line code from the end of the IN/OUT: a HLT that ends exactly at RIP was
 * executed (the run stops there); a branch ends the block (RIP is its target); landing on RIP first
 * is a plain stop. */
static int is_branch(const uint8_t *p, size_t n)
{
    uint8_t b = p[0];
    /* jcc, loop/jcxz, call/jmp (near, far, short), ret, ret far, int3/int/into/iret, int1 */
    if ((b >= 0x70 && b <= 0x7F) || (b >= 0xE0 && b <= 0xE3) || (b >= 0xE8 && b <= 0xEB) || b == 0xC2 ||
        b == 0xC3 || b == 0x9A || (b >= 0xCA && b <= 0xCF) || b == 0xF1)
        return 1;
    if (b == 0xFF)
        return n < 2 || (((p[1] >> 3) & 7) >= 2 && ((p[1] >> 3) & 7) <= 5);
    if (b == 0x0F)
        return n < 2 || (p[1] >= 0x80 && p[1] <= 0x8F) || p[1] <= 0x01 || p[1] == 0x05 || p[1] == 0x07 ||
               p[1] == 0x0B || p[1] == 0x34 || p[1] == 0x35;
    return 0;
}

static int pio_stop_halted(const struct live *L, uint64_t rip)
{
    const struct xl_live_cfg *cfg = L->cfg;
    uint64_t a = L->pio_end, wrap = cfg->mode == 64 ? ~0ull : 0xFFFFFFFFull;
    for (int k = 0; k < 512 && a != rip; k++) {
        uint64_t off = a - cfg->ram_base;
        if (a < cfg->ram_base || off >= cfg->ram_size)
            return 0;
        const uint8_t *p = (const uint8_t *)(uintptr_t)cfg->ram + off;
        size_t n = cfg->ram_size - off < XL_MAX_INSN ? (size_t)(cfg->ram_size - off) : XL_MAX_INSN;
        int len = xl_insn_length(p, n, cfg->mode);
        if (len <= 0)
            return 0;
        size_t op = 0;  /* the opcode, after legacy prefixes and (64-bit) REX */
        while (op < (size_t)len - 1 && (p[op] == 0x66 || p[op] == 0x67 || p[op] == 0xF0 || p[op] == 0xF2 ||
                                        p[op] == 0xF3 || p[op] == 0x2E || p[op] == 0x36 || p[op] == 0x3E ||
                                        p[op] == 0x26 || p[op] == 0x64 || p[op] == 0x65))
            op++;
        if (cfg->mode == 64 && op < (size_t)len - 1 && (p[op] & 0xF0) == 0x40)
            op++;
        uint64_t next = (a + (uint64_t)len) & wrap;
        if (p[op] == 0xF4)
            return next == rip;
        if (is_branch(p + op, (size_t)len - op))
            return 0;
        a = next;
    }
    return 0;
}

/* divguard.h: an IDIV r/m32 that would SIGFPE the host stops in front of itself, as a #DE (or #UD
 * for LOCK IDIV) Unicorn raised would (hook_intr / hook_invalid), unless a stop is decided already */
static void div_stop(void *ud, uint64_t rip, int vector)
{
    struct live *L = (struct live *)ud;
    if (L->stop)
        return;
    if (vector == 6) {
        L->stop = XL_STOP_INVALID_INSN;
    } else {
        L->stop = XL_STOP_EXCEPTION;
        L->out->addr = (uint64_t)vector;
    }
    record_bytes(L, rip);
    uc_emu_stop(L->uc);
}

static void hook_intr(uc_engine *uc, uint32_t intno, void *ud)
{
    struct live *L = (struct live *)ud;
    if (!L->stop) {
        L->stop = XL_STOP_EXCEPTION;
        L->out->addr = intno;
        record_bytes(L, read_rip(L));
    }
    uc_emu_stop(uc);
}

/* Registers a path is known to need come in one uc_reg_read_batch call, as a real exit hands the
 * host its register file: pv-fast needs RIP and RAX, a hypercall RIP, RAX, RBX, RCX, RDX.  Other
 * paths fetch lazily, one register at a time, only what the instruction uses. */
static void prefetch(struct live *L, const int *idx, int n)
{
    int ids[5];
    void *ptrs[5];
    struct xl_cpu *c = &L->cpu;
    for (int i = 0; i < n; i++) {
        ids[i] = L->ids[idx[i]];
        c->regs[idx[i]] = 0;
        ptrs[i] = &c->regs[idx[i]];
        c->valid |= 1u << idx[i];
    }
    uc_reg_read_batch(L->uc, ids, ptrs, n);
}

static const int pv_regs[2] = {XL_RIP, 0};
static const int hc_regs[5] = {XL_RIP, 0, 3, 1, 2};

/* The budget (both styles): Unicorn restarts at every exit, so its own count cannot be the budget;
 * this hook runs before each instruction (each REP iteration) and stops the run before the
 * instruction that would exceed it. */
static void hook_code_budget(uc_engine *uc, uint64_t address, uint32_t size, void *ud)
{
    struct live *L = (struct live *)ud;
    (void)size;
    if (L->smc_pending) {  /* only the very next hook call can be the restart (emu/machine.py) */
        L->smc_pending = 0;
        if (address == L->smc_rip)
            ++L->budget_left;  /* the restart of a store that invalidated its own block */
    }
    if (--L->budget_left < 0 && !L->stop) {
        L->stop = XL_STOP_BUDGET;
        L->out->rip = address;
        uc_emu_stop(uc);
        return;
    }
    /* Unicorn 2.1.4 bug (issue 11 row 7): with a UC_HOOK_CODE installed, an instruction that faults
     * right after one that set the lazy flags (cmp/sub) is restored with the flags half-converted:
     * CF is lost.  The flags at the start of the instruction are the right ones; the run loop
     * writes them back at an exit on this instruction.  Only runs with a budget pay this read. */
    xl_ff_stash(&L->ff, address);
}

static uint64_t win_base_of(const struct live *L, uint64_t addr, uint64_t *size)
{
    for (uint32_t i = 0; i < L->nwin; i++)
        if (addr - L->win[i].base < L->win[i].size) {
            *size = L->win[i].size;
            return L->win[i].base;
        }
    *size = 0;
    return 0;
}

/* ---- the code guard */

static void guard_scan(struct live *L, uint64_t page)
{
    const struct xl_live_cfg *cfg = L->cfg;
    uint64_t ram_end = cfg->ram_base + cfg->ram_size;
    uint64_t lo = page - cfg->ram_base >= XL_LOCK_MAX_INSN ? page - XL_LOCK_MAX_INSN : cfg->ram_base;
    uint64_t hi = ram_end - page > PAGE + XL_LOCK_MAX_INSN ? page + PAGE + XL_LOCK_MAX_INSN : ram_end;
    uint64_t found[64];
    const uint8_t *ram = (const uint8_t *)(uintptr_t)cfg->ram;
    size_t n = xl_lock_scan(ram + (lo - cfg->ram_base), (size_t)(hi - lo), lo, cfg->mode, found, 64);
    xl_ff_scan(&L->ff, lo, hi);
    xl_dg_scan(&L->dg, lo, hi);
    if (n > 64)
        L->guard_full = 1;  /* more than 64 LOCK #UD starts in one page: refuse the run (see loop) */
    int added = 0;
    for (size_t i = 0; i < n && i < 64; i++) {
        size_t j;
        for (j = 0; j < L->ngexits && L->gexits[j] != found[i]; j++)
            ;
        if (j < L->ngexits)
            continue;
        if (L->ngexits >= XL_MAX_GUARD) {
            L->guard_full = 1;
            break;
        }
        L->gexits[L->ngexits++] = found[i];
        added = 1;
    }
    if (added) {
        /* exits are enabled only once there is one: with exits enabled, every exit-style MMIO exit
         * costs ~20 us in Unicorn 2.1.4 (instead of ~0.3 us) */
        if (!L->exits_on) {
            uc_ctl_exits_enable(L->uc);
            L->exits_on = 1;
        }
        uc_ctl_set_exits(L->uc, L->gexits, L->ngexits);
    }
    L->clean[(page - cfg->ram_base) / PAGE] = 1;
}

static bool hook_tlb_fill(uc_engine *uc, uint64_t vaddr, uc_mem_type type, uc_tlb_entry *e, void *ud)
{
    struct live *L = (struct live *)ud;
    const struct xl_live_cfg *cfg = L->cfg;
    (void)uc;
    uint64_t page = vaddr & ~(PAGE - 1);
    uint64_t off = page - cfg->ram_base;
    e->paddr = page;
    if (page < cfg->ram_base || off >= cfg->ram_size) {
        e->perms = UC_PROT_ALL;
        return true;
    }
    uint64_t pi = off / PAGE;
    if (type == UC_MEM_FETCH || type == UC_MEM_FETCH_UNMAPPED || type == UC_MEM_FETCH_PROT) {
        if (!L->clean[pi])
            guard_scan(L, page);
    } else if (type == UC_MEM_WRITE || type == UC_MEM_WRITE_UNMAPPED || type == UC_MEM_WRITE_PROT) {
        if (L->clean[pi] && L->budget_on) {
            /* a store into a page with translated code: QEMU invalidates the block and may run the
             * store again from its start, so the budget hook would see it twice (as the Python
             * engine, count it once: the next hook call at this RIP is not counted) */
            L->smc_pending = 1;
            L->smc_rip = read_rip(L);
        }
        L->clean[pi] = 0;
    }
    e->perms = L->clean[pi] ? (UC_PROT_READ | UC_PROT_EXEC) : (UC_PROT_READ | UC_PROT_WRITE);
    return true;
}

/* A path wrote guest RAM behind Unicorn's back: forget the scan of the pages and their code. */
static void guard_host_write(struct live *L, uint64_t lo, uint64_t hi)
{
    const struct xl_live_cfg *cfg = L->cfg;
    int hit = 0;
    for (uint64_t p = lo & ~(PAGE - 1); p < hi; p += PAGE) {
        uint64_t pi = (p - cfg->ram_base) / PAGE;
        if (p >= cfg->ram_base && pi < (cfg->ram_size + PAGE - 1) / PAGE && L->clean[pi]) {
            L->clean[pi] = 0;
            hit = 1;
        }
    }
    if (hit) {
        uc_ctl_remove_cache(L->uc, lo, hi);
        uc_ctl_flush_tlb(L->uc);
    }
}

static int is_guard_exit(const struct live *L, uint64_t rip)
{
    for (size_t j = 0; j < L->ngexits; j++)
        if (L->gexits[j] == rip)
            return 1;
    return 0;
}

static void guard_drop(struct live *L, uint64_t rip)
{
    for (size_t j = 0; j < L->ngexits; j++)
        if (L->gexits[j] == rip) {
            L->gexits[j] = L->gexits[--L->ngexits];
            break;
        }
    uc_ctl_set_exits(L->uc, L->gexits, L->ngexits);
    uc_ctl_remove_cache(L->uc, rip, rip + 1);
}

/* The platform's answer to a system instruction Unicorn runs as a silent no-op (the same decisions
 * as emu/sysinsn.py): a fault -- no IDT, so a real CPU triple-faults: stop XL_STOP_EXCEPTION with the
 * vector --, carried out here (WRMSR to an MSR the platform has, MOV to CR0 keeping PE and PG), or
 * "unsupported by the engine" (emulation_error).  Returns the RIP to continue at. */
#define CR0_PE 1ull
#define CR0_PG (1ull << 31)

static uint64_t msr_read(struct live *L, uint32_t id)
{
    uc_x86_msr m = {id, 0};
    uc_reg_read(L->uc, UC_X86_REG_MSR, &m);
    return m.value;
}

static int platform_msr(uint32_t id)
{
    static const uint32_t ids[] = {0x10, 0x1B, 0x174, 0x175, 0x176, 0x277, 0xC0000080, 0xC0000081, 0xC0000082,
                                   0xC0000083, 0xC0000084, 0xC0000100, 0xC0000101, 0xC0000102, 0xC0000103};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

static void guard_fault(struct live *L, uint64_t rip, uint32_t vector)
{
    L->stop = XL_STOP_EXCEPTION;
    L->out->addr = vector;
    record_bytes(L, rip);
}

static void guard_unsupported(struct live *L, uint64_t rip)
{
    L->stop = XL_STOP_EMULATION_ERROR;
    L->out->status = XL_E_UNSUPPORTED;
    record_bytes(L, rip);
    L->ctx->errors++;
    if (L->ctx->err.status == 0) {
        struct xl_err *e = &L->ctx->err;
        e->status = XL_E_UNSUPPORTED;
        e->path = (uint8_t)L->cfg->path;
        e->rip = rip;
        e->addr = 0;
        e->len = L->out->len;
        memcpy(e->bytes, L->out->bytes, sizeof(e->bytes));
    }
}

static uint64_t gpr_of(struct live *L, int idx, int bytes)
{
    uint64_t v = 0;
    if (L->ids[idx] >= 0)
        uc_reg_read(L->uc, L->ids[idx], &v);
    return bytes >= 8 ? v : v & ((1ull << (8 * bytes)) - 1);
}

static uint64_t system_insn(struct live *L, const struct xl_guarded *g, uint64_t rip)
{
    int mode = L->cfg->mode;
    uint64_t next = (rip + (uint64_t)g->length) & (mode == 64 ? ~0ull : 0xFFFFFFFFull);
    switch (g->kind) {
    case XL_G_SYSCALL:
        if (mode != 64 || !(msr_read(L, 0xC0000080) & 1))
            guard_fault(L, rip, 6);  /* #UD: EFER.SCE clear (or not 64-bit) */
        else
            guard_unsupported(L, rip);
        return rip;
    case XL_G_SYSENTER:
        if ((msr_read(L, 0x174) & 0xFFFC) == 0)
            guard_fault(L, rip, 13);  /* #GP: IA32_SYSENTER_CS zero */
        else
            guard_unsupported(L, rip);
        return rip;
    case XL_G_WRMSR: {
        uint32_t id = (uint32_t)gpr_of(L, 1, 4);
        if (!platform_msr(id)) {
            guard_fault(L, rip, 13);  /* #GP: an MSR the platform does not have */
            return rip;
        }
        uc_x86_msr m = {id, (gpr_of(L, 2, 4) << 32) | gpr_of(L, 0, 4)};
        if (uc_reg_write(L->uc, UC_X86_REG_MSR, &m) != UC_ERR_OK)
            guard_unsupported(L, rip);
        return next;
    }
    case XL_G_MOV_CR0: {
        int src = (g->modrm & 7) | ((g->rex & 1) ? 8 : 0);
        uint64_t v = gpr_of(L, src, mode == 64 ? 8 : 4);
        if (mode == 64) {
            if ((v >> 32) || !(v & CR0_PE) || !(v & CR0_PG)) {
                guard_fault(L, rip, 13);  /* #GP: reserved bits, or leaving long mode */
                return rip;
            }
        } else {
            uint64_t cur = 0;
            uc_reg_read(L->uc, UC_X86_REG_CR0, &cur);
            if ((v ^ cur) & (CR0_PE | CR0_PG)) {
                guard_unsupported(L, rip);  /* an operating-mode switch */
                return rip;
            }
        }
        uc_reg_write(L->uc, UC_X86_REG_CR0, &v);
        return next;
    }
    default: /* LTR */
        if (g->modrm >> 6 != 3) {
            guard_unsupported(L, rip);
        } else {
            uint64_t sel = gpr_of(L, (g->modrm & 7) | ((g->rex & 1) ? 8 : 0), 2);
            if ((sel & 0xFFFC) == 0)
                guard_fault(L, rip, 13);  /* #GP: null selector */
            else
                guard_unsupported(L, rip);
        }
        return rip;
    }
}

/* in-place: make Unicorn abandon the instruction whose access the hook is looking at.  The
 * permission check after the hook fails, Unicorn leaves the instruction with cpu_loop_exit (no
 * register, RAM or device effect) and uc_emu_start returns UC_ERR_*_PROT; the run loop restores the
 * permissions.  Only on the error path: never per exit. */
static void abort_insn(struct live *L, uint64_t addr)
{
    if (!L->prot_base) {
        L->prot_base = win_base_of(L, addr, &L->prot_size);
        if (L->prot_size)
            uc_mem_protect(L->uc, L->prot_base, L->prot_size, UC_PROT_NONE);
    }
    uc_emu_stop(L->uc);
}

/* in-place: an instruction no C path emulates (CMP with a device operand, say) is still Unicorn's to
 * perform; the device sees the one access the hook reports, as in the Python engine's in-place hook
 * (emu/inplace.py).  The path's decline stays counted in ctx->errors / ctx->err.  Not per exit on
 * the paths' forms: only after a decline. */
static uint32_t inplace_raw(struct live *L, const struct xl_exit *ex, struct xl_result *res, uint32_t st)
{
    /* Not for the forms where Unicorn's accesses are not the guest's (emu/inplace.py handles them
     * one by one): string instructions (INS's dummy store, REP) and LOCK (LOCK NEG loads twice). */
    uint64_t rip = xl_cpu_get(&L->cpu, XL_RIP), off = rip - L->cfg->ram_base;
    if (rip < L->cfg->ram_base || off >= L->cfg->ram_size)
        return st;
    const uint8_t *p = (const uint8_t *)(uintptr_t)L->cfg->ram + off;
    uint64_t n = L->cfg->ram_size - off < XL_MAX_INSN ? L->cfg->ram_size - off : XL_MAX_INSN, i = 0;
    for (; i < n; i++) {
        uint8_t b = p[i];
        if (b == 0xF0)
            return st;
        if (b == 0x66 || b == 0x67 || b == 0xF2 || b == 0xF3 || b == 0x2E || b == 0x36 || b == 0x3E ||
            b == 0x26 || b == 0x64 || b == 0x65 || (L->cfg->mode == 64 && (b & 0xF0) == 0x40))
            continue;
        break;
    }
    if (i >= n || (p[i] >= 0x6C && p[i] <= 0x6F) || (p[i] >= 0xA4 && p[i] <= 0xA7) || (p[i] >= 0xAA && p[i] <= 0xAF))
        return st;
    uint64_t bad, v = ex->value;
    if (!xl_dev_span(L->ctx, ex->addr, (int)ex->size, &bad)) {
        L->ctx->fault_addr = bad;
        return XL_E_UNMAPPED;
    }
    xl_res_init(res);
    return xl_mmio_access(L->ctx, res, ex->addr, (int)ex->size, ex->kind == XL_MMIO_WRITE, &v);
}

/* in-place: runs the path at the exact RIP before Unicorn performs the access */
static void hook_mem_inplace(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *ud)
{
    struct live *L = (struct live *)ud;
    (void)uc;
    if (L->stop) {  /* a stop is already decided inside this instruction: perform nothing more */
        abort_insn(L, addr);
        return;
    }
    struct xl_exit ex = {addr, (uint64_t)value, type == UC_MEM_WRITE ? XL_MMIO_WRITE : XL_MMIO_READ,
                         (uint32_t)size};
    struct xl_result res;
    L->cpu.valid = 0;
    L->cpu.dirty = 0;
    if (L->cfg->path == XL_PATH_PVFAST)
        prefetch(L, pv_regs, 2);
    uint64_t vmask = size >= 8 ? ~0ull : ((1ull << (8 * size)) - 1);
    if (L->trace && type == UC_MEM_WRITE)  /* as emu/inplace.py: a write before the device sees it */
        L->trace(L->trace_opaque, XL_MMIO_WRITE, read_rip(L), addr, (uint32_t)size, (uint64_t)value & vmask);
    uint32_t st = xl_handle_fast(L->ctx, L->cfg->path, &ex, &L->cpu, &res);
    if ((st == XL_E_UNSUPPORTED || st == XL_E_DECODE) && L->cfg->inplace_raw)
        st = inplace_raw(L, &ex, &res, st);
    L->out->mmio_exits++;
    L->out->exits++;
    L->out->kinds[ex.kind]++;
    if (st != XL_OK) {
        uint64_t rip = xl_cpu_get(&L->cpu, XL_RIP);
        if (st == XL_E_UNMAPPED) {
            L->stop = XL_STOP_UNMAPPED;
            L->out->addr = L->ctx->fault_addr;
            L->out->access = type == UC_MEM_WRITE ? UC_MEM_WRITE_UNMAPPED : UC_MEM_READ_UNMAPPED;
        } else if (st == XL_E_GP || st == XL_E_DE) {
            L->stop = XL_STOP_EXCEPTION;
            L->out->addr = st == XL_E_GP ? 13 : 0;
        } else {
            L->stop = XL_STOP_EMULATION_ERROR;
            L->out->status = st;
            L->out->addr = addr;
        }
        record_bytes(L, rip);
        abort_insn(L, addr);
        return;
    }
    uint64_t m = size >= 8 ? ~0ull : ((1ull << (8 * size)) - 1);
    int wild = res.n_acc == 1 && res.size == 0;  /* address-only notification */
    if (res.n_acc == 0 || res.gpa != addr ||
        (res.n_acc == 1 && !wild && (res.size != (uint8_t)size ||
                                     (type == UC_MEM_WRITE && res.value != ((uint64_t)value & m)))))
        L->out->inplace_mismatch++;
    if (type == UC_MEM_READ) {
        L->rd_addr = addr;
        L->rd_size = size;
        L->rd_value = res.n_acc ? L->ctx->last_read : 0;
        if (L->trace)  /* a read after the device answered, with its value */
            L->trace(L->trace_opaque, XL_MMIO_READ, xl_cpu_get(&L->cpu, XL_RIP), addr, (uint32_t)size,
                     L->rd_value & vmask);
        if (L->dg.de_at != XL_DG_NONE)  /* an IDIV's device divisor (divguard.h) */
            L->rd_value = xl_dg_device_value(&L->dg, xl_cpu_get(&L->cpu, XL_RIP), size, L->rd_value);
    }
}

/* in-place: Unicorn's own access, possibly split into pieces (aligned words around a misaligned
 * access, one piece per page).  Never a device access: the hook made the one device access; a
 * piece is answered from the bytes of that access by its own offsets (bytes outside it: 0, which
 * Unicorn discards). */
static uint64_t mmio_read_cb(uc_engine *uc, uint64_t offset, unsigned size, void *ud)
{
    struct win *w = (struct win *)ud;
    struct live *L = w->L;
    uint64_t a = w->base + offset, v = 0;
    (void)uc;
    for (unsigned i = 0; i < size && i < 8; i++) {
        uint64_t k = a + i - L->rd_addr;
        if (k < (uint64_t)L->rd_size && k < 8)
            v |= ((L->rd_value >> (8 * k)) & 0xFF) << (8 * i);
    }
    return v;
}

static void mmio_write_cb(uc_engine *uc, uint64_t offset, unsigned size, uint64_t value, void *ud)
{
    (void)uc;
    (void)offset;
    (void)size;
    (void)value;
    (void)ud;
}

/* ---- exit-style handling of a pending exit */

static void write_back(struct live *L)
{
    struct xl_cpu *c = &L->cpu;
    uint32_t d = c->dirty & ~(1u << XL_RIP);
    while (d) {
        int i = __builtin_ctz(d);
        d &= d - 1;
        if (L->ids[i] >= 0)
            uc_reg_write(L->uc, L->ids[i], &c->regs[i]);
    }
}

static int handle_pending(struct live *L, uint64_t *rip)
{
    /* the size is not data a real exit has: the paths use it only to refuse an exit whose
     * instruction is not the one that made this access (Unicorn reports some at a later RIP) */
    struct xl_exit ex = {L->pend_addr, 0, L->pending == PEND_HC ? XL_HYPERCALL : L->pend_kind,
                         L->pending == PEND_HC ? 0 : L->pend_size};
    struct xl_result res;
    struct xl_cpu *c = &L->cpu;
    c->valid = 0;
    c->dirty = 0;
    /* the code hook already counted this instruction (this iteration) */
    c->max_iter = L->budget_on ? (uint64_t)L->budget_left + 1 : 0;
    c->iters = 0;  /* pv-fast's inline hit does not go through xl_handle, which resets it */
    if (L->trace) {  /* as emu/machine.py: the exit as it happened, before the path runs */
        uint64_t rip0 = xl_cpu_get(c, XL_RIP);
        if (L->pending == PEND_HC)
            L->trace(L->trace_opaque, XL_HYPERCALL, rip0, xl_cpu_get(c, 0), 0, 0);
        else
            L->trace(L->trace_opaque, ex.kind, rip0, ex.addr, ex.size,
                     ex.kind == XL_MMIO_WRITE ? L->pend_value & (ex.size >= 8 ? ~0ull : ((1ull << (8 * ex.size)) - 1)) : 0);
        c->valid = 0;  /* the trace callback may have read registers through the engine: refetch */
    }
    if (L->pending == PEND_HC && L->cfg->path != XL_PATH_TRAP)
        prefetch(L, hc_regs, 5);
    else if (L->cfg->path == XL_PATH_PVFAST)
        prefetch(L, pv_regs, 2);
    c->wlo = c->whi = 0;
    uint32_t st = xl_handle_fast(L->ctx, L->cfg->path, &ex, c, &res);
    if (c->wlo < c->whi)
        guard_host_write(L, c->wlo, c->whi);
    if (L->pending == PEND_HC)
        L->out->hypercalls++;
    else
        L->out->mmio_exits++;
    L->out->exits++;
    L->out->kinds[ex.kind]++;
    if (L->budget_on && c->iters > 1)
        L->budget_left -= (int64_t)(c->iters - 1);
    if (st == XL_E_UNMAPPED) {
        /* a precise fault: iterations of a REP before the faulting one stay done */
        write_back(L);
        L->stop = XL_STOP_UNMAPPED;
        L->out->addr = L->ctx->fault_addr;
        L->out->access = ex.kind == XL_MMIO_WRITE ? UC_MEM_WRITE_UNMAPPED : UC_MEM_READ_UNMAPPED;
        record_bytes(L, xl_cpu_get(c, XL_RIP));
        return -1;
    }
    if (st == XL_E_GP || st == XL_E_DE) {  /* no IDT: the exception ends the run, as Unicorn's own faults do */
        guard_fault(L, xl_cpu_get(c, XL_RIP), st == XL_E_GP ? 13 : 0);
        return -1;
    }
    if (st != XL_OK) {
        L->stop = XL_STOP_EMULATION_ERROR;
        L->out->status = st;
        L->out->addr = L->pend_addr;
        record_bytes(L, xl_cpu_get(c, XL_RIP));
        return -1;
    }
    write_back(L);
    *rip = res.next_rip;
    return 0;
}

int xl_live_run(struct xl_ctx *ctx, void *ucv, const struct xl_live_cfg *cfg, struct xl_live_result *out)
{
    uc_engine *uc = (uc_engine *)ucv;
    struct live L;
    uc_hook h[10];
    int nh = 0;
    uc_err err;

    memset(&L, 0, sizeof(L));
    memset(out, 0, sizeof(*out));
    if (cfg->max_insns > (uint64_t)INT64_MAX || (cfg->mode != 16 && cfg->mode != 32 && cfg->mode != 64) ||
        cfg->trap < XL_TRAP_MIXED || cfg->trap > XL_TRAP_HOOK ||
        (cfg->style != XL_STYLE_EXIT && cfg->style != XL_STYLE_INPLACE) || cfg->path < 0 ||
        cfg->path >= XL_NPATHS) {
        out->stop = XL_STOP_UC_ERROR;
        out->uc_err = UC_ERR_ARG;
        return -1;
    }
    L.ctx = ctx;
    L.uc = uc;
    L.cfg = cfg;
    L.out = out;
    L.ids = cfg->mode == 64 ? ids64 : ids32;
    L.cpu.mode = cfg->mode;
    L.cpu.fill = live_fill;
    L.cpu.vec = live_vec;
    L.cpu.opaque = &L;
    L.cpu.mem = (const uint8_t *)(uintptr_t)cfg->ram;
    L.cpu.wmem = (uint8_t *)(uintptr_t)cfg->ram;
    L.cpu.mem_base = cfg->ram_base;
    L.cpu.mem_size = cfg->ram_size;
    L.cpu.flags = cfg->style == XL_STYLE_INPLACE ? XL_CPU_ONE_ELEMENT : 0;
    if (ctx->tab) {
        L.trace = ctx->tab->trace;
        L.trace_opaque = ctx->tab->trace_opaque;
    }

    /* the watchdog: wall-clock limit and stop requests */
    uint64_t t0 = mono_ns(), k0 = __rdtsc();
    struct watchdog wd;
    struct xl_live_ctl local_ctl;
    pthread_t wd_thread;
    int wd_on = 0, local_ctl_on = 0;
    memset(&wd, 0, sizeof(wd));
    wd.uc = uc;
    if (cfg->timeout_ns)
        wd.deadline = cfg->timeout_ns > UINT64_MAX - t0 ? UINT64_MAX : t0 + cfg->timeout_ns;
    wd.ctl = cfg->ctl;
    if (!wd.ctl && wd.deadline && ctl_init(&local_ctl) == 0) {
        wd.ctl = &local_ctl;
        local_ctl_on = 1;
    }
    if (wd.ctl)
        wd_on = pthread_create(&wd_thread, NULL, watchdog_main, &wd) == 0;
    L.cpu.stop_flag = &wd.halt;

    size_t npages = (size_t)((cfg->ram_size + PAGE - 1) / PAGE);
    L.clean = calloc(npages ? npages : 1, 1);
    L.gexits = calloc(XL_MAX_GUARD, sizeof(uint64_t));
    int ff_on = xl_ff_init(&L.ff, uc, L.ids, (const uint8_t *)(uintptr_t)cfg->ram, cfg->ram_base, cfg->ram_size,
                           cfg->mode) == 0;
    int dg_on = xl_dg_init(&L.dg, uc, L.ids, ctx, (const uint8_t *)(uintptr_t)cfg->ram, cfg->ram_base, cfg->ram_size,
                           cfg->mode, cfg->style == XL_STYLE_INPLACE, div_stop, &L) == 0;
    int guard_on = 0;
    /* the device windows: the board's (ctx->tab) or the default board's two flat ones */
    uint32_t nwin = ctx->tab ? ctx->tab->nwin : 2;
    L.win = calloc(nwin ? nwin : 1, sizeof(struct win));
    if (!L.clean || !L.gexits || !L.win || !ff_on || !dg_on) {
        err = UC_ERR_NOMEM;
        goto hook_fail;
    }
    uint64_t wlo = ~0ull, whi = 0;  /* the hooks' range: every window */
    for (uint32_t i = 0; i < nwin; i++) {
        struct win *w = &L.win[L.nwin];
        w->L = &L;
        if (ctx->tab) {
            w->base = ctx->tab->win[i].base;
            w->size = ctx->tab->win[i].size;
        } else {
            w->base = i == 0 ? ctx->dev.notify_base : ctx->dev.regs_base;
            w->size = i == 0 ? ctx->dev.notify_size : ctx->dev.regs_size;
        }
        if (!w->size)
            continue;
        L.nwin++;
        if (w->base < wlo)
            wlo = w->base;
        if (w->base + w->size - 1 > whi)
            whi = w->base + w->size - 1;
    }

#define ADD(...)                                                   \
    do {                                                           \
        err = uc_hook_add(uc, &h[nh], __VA_ARGS__);                \
        if (err != UC_ERR_OK)                                      \
            goto hook_fail;                                        \
        nh++;                                                      \
    } while (0)

    ADD(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED,
        (void *)hook_unmapped, &L, 1, 0);
    if (cfg->style == XL_STYLE_EXIT) {
        /* Exit style: the windows are mmio_map-ed with no permissions rather than left unmapped.
         * An access faults at Unicorn's permission check right after the (absent) access hooks --
         * precise, RIP on the instruction, the same handler -- but its I/O TLB entry stays: an
         * unmapped page misses the TLB at every exit, and with the code guard's virtual TLB each
         * miss costs a CPU state restore (~60 ns per exit).  I/O pages always take the slow path,
         * so no access reaches the (never called) callbacks. */
        for (uint32_t i = 0; i < L.nwin; i++) {
            struct win *w = &L.win[i];
            err = uc_mmio_map(uc, w->base, w->size, mmio_read_cb, w, mmio_write_cb, w);
            if (err != UC_ERR_OK)
                goto hook_fail;
            w->mapped = 1;
            err = uc_mem_protect(uc, w->base, w->size, UC_PROT_NONE);
            if (err != UC_ERR_OK)
                goto hook_fail;
        }
        if (L.nwin)
            ADD(UC_HOOK_MEM_READ_PROT | UC_HOOK_MEM_WRITE_PROT | UC_HOOK_MEM_FETCH_PROT, (void *)hook_unmapped, &L,
                wlo, whi);
    }
    ADD(UC_HOOK_INSN_INVALID, (void *)hook_invalid, &L, 1, 0);
    ADD(UC_HOOK_INSN, (void *)hook_in, &L, 1, 0, UC_X86_INS_IN);
    ADD(UC_HOOK_INSN, (void *)hook_out, &L, 1, 0, UC_X86_INS_OUT);
    ADD(UC_HOOK_INTR, (void *)hook_intr, &L, 1, 0);
    err = uc_ctl_tlb_mode(uc, UC_TLB_VIRTUAL);
    if (err != UC_ERR_OK)
        goto hook_fail;
    guard_on = 1;
    if (cfg->mode == 64 || cfg->mode == 32) {
        /* CR0 as the platform (and KVM) has it: PG|NE|ET|MP|PE in long mode (the identity TLB makes
         * PG change no translation), so `mov rax, cr0; mov cr0, rax` keeps long mode */
        uint64_t cr0 = cfg->mode == 64 ? 0x80000033ull : 0x33ull;
        uc_reg_write(uc, UC_X86_REG_CR0, &cr0);
    }
    /* bounded to RAM: other addresses keep the identity default with no callback (device windows
     * are touched at every exit; a callback there costs ~50 ns per exit) */
    ADD(UC_HOOK_TLB_FILL, (void *)hook_tlb_fill, &L, cfg->ram_base, cfg->ram_base + cfg->ram_size - 1);
    L.budget_on = cfg->max_insns != 0;
    L.budget_left = (int64_t)cfg->max_insns;
    if (L.budget_on)
        ADD(UC_HOOK_CODE, (void *)hook_code_budget, &L, 1, 0);
    if (cfg->style == XL_STYLE_INPLACE) {
        for (uint32_t i = 0; i < L.nwin; i++) {
            struct win *w = &L.win[i];
            err = uc_mmio_map(uc, w->base, w->size, mmio_read_cb, w, mmio_write_cb, w);
            if (err != UC_ERR_OK)
                goto hook_fail;
            w->mapped = 1;
        }
        /* one hook over every window: the hook fires only for mapped (window) pages in the range */
        if (L.nwin)
            ADD(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, (void *)hook_mem_inplace, &L, wlo, whi);
    }
#undef ADD

    uint64_t rip = cfg->start_rip;
    for (;;) {
        uint32_t req = wd.halt ? wd.halt : (wd.ctl ? __atomic_load_n(&wd.ctl->request, __ATOMIC_RELAXED) : 0);
        if (req || (!wd_on && wd.deadline && mono_ns() >= wd.deadline)) {
            L.stop = req ? req : XL_STOP_TIMEOUT;
            out->rip = rip;
            break;
        }
        L.pending = PEND_NONE;
        L.pend_multi = 0;
        L.pio_stop = 0;
        err = uc_emu_start(uc, rip, cfg->until, 0, 0);  /* `until` is ignored once exits are on */
        out->segments++;
        if (err != UC_ERR_OK)
            xl_ff_fault(&L.ff, (uint64_t)L.ids[XL_RIP]);  /* RFLAGS as the faulting instruction started */
        else if (L.stop == XL_STOP_BUDGET)
            xl_ff_settle(&L.ff, out->rip);  /* a budget stop right after a LOCK NEG: its fix-up */
        if (L.prot_base) {
            uc_mem_protect(uc, L.prot_base, L.prot_size, UC_PROT_READ | UC_PROT_WRITE);
            L.prot_base = 0;
        }
        if (L.pending != PEND_NONE && !L.stop) {
            if (wd.halt) {  /* stop before handling: the instruction has not executed, RIP is on it */
                L.stop = wd.halt;
                out->rip = read_rip(&L);
                break;
            }
            if (L.pend_multi) {
                L.stop = XL_STOP_EMULATION_ERROR;
                out->status = XL_E_MISMATCH;
                out->addr = L.pend_addr;
                record_bytes(&L, L.multi_rip);
                L.ctx->errors++;
                if (L.ctx->err.status == 0) {
                    struct xl_err *e = &L.ctx->err;
                    e->status = XL_E_MISMATCH;
                    e->path = (uint8_t)cfg->path;
                    e->kind = (uint8_t)L.pend_kind;
                    e->rip = L.multi_rip;
                    e->addr = L.pend_addr;
                    e->len = out->len;
                    memcpy(e->bytes, out->bytes, sizeof(e->bytes));
                }
                out->rip = L.multi_rip;
                break;
            }
            if (handle_pending(&L, &rip) < 0)
                break;
            if (cfg->max_exits && out->exits >= cfg->max_exits) {
                L.stop = XL_STOP_MAX_EXITS;
                out->rip = rip;
                uc_reg_write(uc, L.ids[XL_RIP], &rip);
                break;
            }
            continue;
        }
        if (L.stop) {
            if (L.stop == XL_STOP_UNMAPPED || L.stop == XL_STOP_INVALID_INSN)
                record_bytes(&L, read_rip(&L));
            break;
        }
        if (wd.halt) {
            L.stop = wd.halt;
            out->rip = read_rip(&L);
            break;
        }
        if (err == UC_ERR_FETCH_PROT && xl_dev_claims(ctx, read_rip(&L))) {
            /* in place: code fetched from a device window (exit style: an unmapped fetch) */
            L.stop = XL_STOP_UNMAPPED;
            out->addr = read_rip(&L);
            out->access = UC_MEM_FETCH_UNMAPPED;
            record_bytes(&L, out->addr);
            break;
        }
        if (err != UC_ERR_OK) {
            out->uc_err = (uint32_t)err;
            L.stop = err == UC_ERR_EXCEPTION ? XL_STOP_EXCEPTION : XL_STOP_UC_ERROR;
            record_bytes(&L, read_rip(&L));
            break;
        }
        rip = read_rip(&L);
        out->rip = rip;
        if (cfg->max_exits && out->exits >= cfg->max_exits) {
            L.stop = XL_STOP_MAX_EXITS;  /* PIO exits counted inside hooks */
            break;
        }
        if (L.guard_full) {
            L.stop = XL_STOP_EMULATION_ERROR;  /* never seen: a page dense with LOCK #UD starts */
            out->status = XL_E_UNSUPPORTED;
            record_bytes(&L, rip);
            break;
        }
        /* UC_ERR_OK with no stop of ours: a guard exit, `until`, or HLT (RIP after it) */
        if (rip == cfg->until && !L.exits_on) {
            L.stop = XL_STOP_UNMAPPED;  /* a fetch from an address that is never mapped */
            out->addr = rip;
            out->access = UC_MEM_FETCH_UNMAPPED;
            break;
        }
        if (is_guard_exit(&L, rip)) {
            uint64_t off = rip - cfg->ram_base;
            const uint8_t *p = (const uint8_t *)(uintptr_t)cfg->ram + off;
            uint64_t left = cfg->ram_size - off;
            struct xl_guarded g = {0};
            if (rip >= cfg->ram_base && off < cfg->ram_size)
                xl_guard_classify(p, left < XL_MAX_INSN ? (size_t)left : XL_MAX_INSN, cfg->mode, &g);
            if (g.kind == XL_G_NONE) {
                guard_drop(&L, rip);  /* rewritten since the scan: not an exit any more */
                continue;
            }
            if (L.budget_on && L.budget_left <= 0) {  /* the instruction would count */
                L.stop = XL_STOP_BUDGET;
                record_bytes(&L, rip);
                break;
            }
            if (g.kind == XL_G_LOCK_UD) {  /* #UD: LOCK on a register or non-lockable operand */
                L.stop = XL_STOP_INVALID_INSN;
                record_bytes(&L, rip);
                break;
            }
            uint64_t next = system_insn(&L, &g, rip);
            if (L.stop)
                break;
            if (L.budget_on)
                L.budget_left--;
            rip = next;
            continue;
        }
        if (L.pio_stop && !pio_stop_halted(&L, rip)) {
            /* trap EXIT: the stop a port I/O exit asked for; go on at RIP.  With the budget's code
             * hook Unicorn stops right after the IN/OUT, once the hook has counted the instruction
             * at RIP, which has not run: count it once. */
            if (L.budget_on && L.ff.stash_addr == rip)
                L.budget_left++;
            continue;
        }
        L.stop = XL_STOP_HLT;
        out->rip = (rip - 1) & (cfg->mode == 64 ? ~0ull : 0xFFFFFFFFull);
        break;
    }
    out->ns = mono_ns() - t0;
    out->ticks = __rdtsc() - k0;
    out->stop = L.stop;
    err = UC_ERR_OK;

hook_fail:
    if (wd_on) {
        pthread_mutex_lock(&wd.ctl->mu);
        wd.done = 1;
        pthread_cond_broadcast(&wd.ctl->cv);
        pthread_mutex_unlock(&wd.ctl->mu);
        pthread_join(wd_thread, NULL);
    }
    if (local_ctl_on)
        ctl_destroy(&local_ctl);
    for (int i = 0; i < nh; i++)
        uc_hook_del(uc, h[i]);
    xl_ff_free(&L.ff);
    xl_dg_free(&L.dg);
    if (L.exits_on)
        uc_ctl_exits_disable(uc);
    if (guard_on)
        uc_ctl_tlb_mode(uc, UC_TLB_CPU);
    free(L.clean);
    free(L.gexits);
    for (uint32_t i = 0; L.win && i < L.nwin; i++)
        if (L.win[i].mapped)
            uc_mem_unmap(uc, L.win[i].base, L.win[i].size);
    free(L.win);
    if (err != UC_ERR_OK) {
        out->stop = XL_STOP_UC_ERROR;
        out->uc_err = (uint32_t)err;
        return -1;
    }
    return 0;
}
