/* Exit-handling paths (see paths.h).  Decode is per path; the effect of a decoded MMIO
 * instruction (struct xl_insn) is executed by one function, xl_exec, so the subset decoder
 * and Capstone differ only in how they learn what the instruction is. */
#include <string.h>

#include <capstone/capstone.h>

#include "insn_subset.h"
#include "paths.h"
#include "sem.h"

/* ---------------------------------------------------------------- devices */

int xl_ctx_init(struct xl_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->dev.notify_base = XL_NOTIFY_MMIO;
    ctx->dev.notify_size = XL_NOTIFY_MMIO_SIZE;
    ctx->dev.regs_base = XL_REGS_MMIO;
    ctx->dev.regs_size = XL_REGS_SIZE;
    ctx->dev.notify_port = XL_NOTIFY_PORT;
    ctx->dev.console_port = XL_CONSOLE_PORT;
    /* emu/devices.py RegisterDevice: the id ("exit") and the version, little-endian */
    for (int i = 0; i < 4; i++) {
        ctx->dev.regs[i] = (uint8_t)(XL_REGS_ID >> (8 * i));
        ctx->dev.regs[4 + i] = (uint8_t)(XL_REGS_VERSION >> (8 * i));
    }
    ctx->trap_len = 3;
    return 0;
}

void xl_ctx_reset_counts(struct xl_ctx *ctx)
{
    struct xl_devstate *d = &ctx->dev;
    memset(d->kicks, 0, sizeof(d->kicks));
    d->kicks_other = d->notify_writes = d->notify_reads = d->notify_unmatched = 0;
    d->regs_reads = d->regs_writes = 0;
    d->unclaimed_mmio_read = d->unclaimed_mmio_write = d->unclaimed_pio_in = d->unclaimed_pio_out = 0;
    d->console_len = 0;
    memset(d->eventfd_counts, 0, sizeof(d->eventfd_counts));
    memset(ctx->counts, 0, sizeof(ctx->counts));
    ctx->fallbacks = ctx->violations = ctx->errors = 0;
    memset(&ctx->err, 0, sizeof(ctx->err));
}

static const int cs_modes[3] = {CS_MODE_16, CS_MODE_32, CS_MODE_64};

static int cs_open_one(struct xl_ctx *ctx, int k)
{
    csh h;
    if (ctx->cs_insn[k])
        return 0;
    if (cs_open(CS_ARCH_X86, (cs_mode)cs_modes[k], &h) != CS_ERR_OK)
        return -1;
    cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
    cs_insn *insn = cs_malloc(h);
    if (!insn) {
        cs_close(&h);
        return -1;
    }
    ctx->cs_handle[k] = (uint64_t)h;
    ctx->cs_insn[k] = insn;
    return 0;
}

int xl_ctx_open_capstone(struct xl_ctx *ctx)
{
    for (int k = 0; k < 3; k++)
        if (cs_open_one(ctx, k) < 0)
            return -1;
    return 0;
}

void xl_ctx_close(struct xl_ctx *ctx)
{
    for (int k = 0; k < 3; k++) {
        if (ctx->cs_insn[k]) {
            cs_free((cs_insn *)ctx->cs_insn[k], 1);
            csh h = (csh)ctx->cs_handle[k];
            cs_close(&h);
            ctx->cs_insn[k] = NULL;
            ctx->cs_handle[k] = 0;
        }
    }
}

static inline uint64_t mask_bytes(int size)
{
    return size >= 8 ? ~0ull : size <= 0 ? 0 : ((1ull << (8 * size)) - 1);
}

int xl_dev_claims(const struct xl_ctx *ctx, uint64_t gpa)
{
    const struct xl_devstate *d = &ctx->dev;
    return (gpa - d->notify_base < d->notify_size) || (gpa - d->regs_base < d->regs_size) ||
           (ctx->tab && xl_tab_find(ctx->tab->mmio, ctx->tab->nmmio, gpa));
}

/* One MMIO access at the bus (claim by start address, value masked to the size, like emu/bus.py). */
/* The notify device on either bus: a data-carrying write's value is the queue index; a write at a
 * wildcard registration's offset also counts for that eventfd (emu/devices.py NotifyDevice._signal). */
static uint64_t notify_access(struct xl_ctx *ctx, uint64_t off, int write, uint64_t value)
{
    struct xl_devstate *d = &ctx->dev;
    if (!write) {
        d->notify_reads++;
        return 0;
    }
    d->notify_writes++;
    if (value < XL_NQUEUES)
        d->kicks[value]++;
    else
        xl_kick_other(ctx, value);
    if (off % XL_NOTIFY_OFF_MULT == 0 && off / XL_NOTIFY_OFF_MULT < XL_NQUEUES_REG)
        d->eventfd_counts[off / XL_NOTIFY_OFF_MULT]++;
    return 0;
}

/* A device of the table (devtab.h): the Python device model through the callback. */
static uint64_t tab_access(struct xl_ctx *ctx, uint32_t space, uint64_t addr, int size, int write, uint64_t value)
{
    struct xl_devtab *t = ctx->tab;
    return t->dev(t->dev_opaque, space, write ? XL_OP_WRITE : XL_OP_READ, addr, (uint32_t)size, value);
}

uint64_t xl_dev_mmio(struct xl_ctx *ctx, uint64_t gpa, int size, int write, uint64_t value)
{
    struct xl_devstate *d = &ctx->dev;
    uint64_t m = mask_bytes(size);
    if (gpa - d->notify_base < d->notify_size) {
        return notify_access(ctx, gpa - d->notify_base, write, value & m);
    }
    if (gpa - d->regs_base < d->regs_size) {
        uint64_t off = gpa - d->regs_base;
        if (write) {
            d->regs_writes++;
            for (int i = 0; i < size && i < 8 && off + (uint64_t)i < XL_REGS_SIZE; i++)
                d->regs[off + (uint64_t)i] = (uint8_t)(value >> (8 * i));
            return 0;
        }
        d->regs_reads++;
        uint64_t v = 0;
        for (int i = (size < 8 ? size : 8) - 1; i >= 0; i--)
            v = (v << 8) | (off + (uint64_t)i < XL_REGS_SIZE ? d->regs[off + (uint64_t)i] : 0xFF);
        return v;
    }
    if (ctx->tab && xl_tab_find(ctx->tab->mmio, ctx->tab->nmmio, gpa))
        return tab_access(ctx, XL_SPACE_MMIO, gpa, size, write, value & m) & m;
    if (write) {
        d->unclaimed_mmio_write++;
        return 0;
    }
    d->unclaimed_mmio_read++;
    return m;
}

/* Address-only notification (wildcard): queue q is registered at offset 4*q. */
static void dev_notify(struct xl_ctx *ctx, uint64_t gpa)
{
    struct xl_devstate *d = &ctx->dev;
    uint64_t off = gpa - d->notify_base;
    if (off >= d->notify_size) {  /* a pv window of another device: the bus decides (Bus.notify) */
        if (ctx->tab)
            ctx->tab->dev(ctx->tab->dev_opaque, XL_SPACE_MMIO, XL_OP_NOTIFY, gpa, 0, 0);
        return;
    }
    d->notify_writes++;
    if (off % XL_NOTIFY_OFF_MULT == 0 && off / XL_NOTIFY_OFF_MULT < XL_NQUEUES_REG) {
        d->kicks[off / XL_NOTIFY_OFF_MULT]++;
        d->eventfd_counts[off / XL_NOTIFY_OFF_MULT]++;
    } else {
        d->notify_unmatched++;
    }
}

uint64_t xl_pio(struct xl_ctx *ctx, uint64_t port, int size, int write, uint64_t value)
{
    struct xl_devstate *d = &ctx->dev;
    uint64_t m = mask_bytes(size);
    if (port - d->notify_port < XL_NOTIFY_PORT_SIZE) {
        return notify_access(ctx, port - d->notify_port, write, value & m);
    }
    if (port - d->console_port < XL_CONSOLE_PORT_SIZE) {
        uint64_t off = port - d->console_port;
        if (write) {
            if (off == 0)
                for (int i = 0; i < size && i < 8; i++) {
                    if (d->console_len < XL_CONSOLE_BUF)
                        d->console[d->console_len] = (uint8_t)(value >> (8 * i));
                    else if (ctx->tab)  /* past the flat buffer: the board's console keeps the rest */
                        ctx->tab->dev(ctx->tab->dev_opaque, XL_SPACE_PIO, XL_OP_WRITE, port, 1,
                                      (value >> (8 * i)) & 0xFF);
                    d->console_len++;
                }
            return 0;
        }
        return off == XL_CONSOLE_LSR ? XL_CONSOLE_LSR_READY : 0;
    }
    if (ctx->tab && xl_tab_find(ctx->tab->pio, ctx->tab->npio, port))
        return tab_access(ctx, XL_SPACE_PIO, port, size, write, value & m) & m;
    if (write) {
        d->unclaimed_pio_out++;
        return 0;
    }
    d->unclaimed_pio_in++;
    return m;
}

/* ---------------------------------------------------------------- helpers */

static inline void acc(struct xl_result *r, uint64_t gpa, int size, int write, uint64_t value)
{
    xl_res_acc(r, gpa, size, write, value);
}

/* Bytes left in the device window holding gpa (0: no device window holds it). */
static inline uint64_t win_left(const struct xl_ctx *ctx, uint64_t gpa)
{
    const struct xl_devstate *d = &ctx->dev;
    if (gpa - d->notify_base < d->notify_size)
        return d->notify_size - (gpa - d->notify_base);
    if (gpa - d->regs_base < d->regs_size)
        return d->regs_size - (gpa - d->regs_base);
    if (ctx->tab) {
        const struct xl_region *r = xl_tab_find(ctx->tab->mmio, ctx->tab->nmmio, gpa);
        if (r)
            return r->size - (gpa - r->base);
    }
    return 0;
}

int xl_dev_span(const struct xl_ctx *ctx, uint64_t gpa, int size, uint64_t *bad)
{
    uint64_t done = 0;
    while (done < (uint64_t)size) {
        uint64_t left = win_left(ctx, gpa + done);
        if (!left) {
            *bad = gpa + done;
            return 0;
        }
        done += left;
    }
    return 1;
}

/* One guest access to device space = one device access per region piece (KVM splits an access
 * that crosses from one region into the next, low part first).  An access whose first byte is
 * claimed but that runs on into unmapped space faults before any piece reaches a device (rule 6).
 * An exit address no device claims (replay of another board) goes to the bus as one unclaimed
 * access.  Reads leave the whole value in *v and ctx->last_read. */
static uint32_t mmio(struct xl_ctx *ctx, struct xl_result *r, uint64_t gpa, int size, int write, uint64_t *v)
{
    uint64_t left = win_left(ctx, gpa);
    if (left >= (uint64_t)size || left == 0) {  /* one piece: the common case */
        if (write) {
            *v &= mask_bytes(size);
            xl_dev_mmio(ctx, gpa, size, 1, *v);
        } else {
            *v = xl_dev_mmio(ctx, gpa, size, 0, 0);
            ctx->last_read = *v;
        }
        acc(r, gpa, size, write, *v);
        return XL_OK;
    }
    uint64_t bad;
    if (!xl_dev_span(ctx, gpa, size, &bad)) {
        ctx->fault_addr = bad;
        return XL_E_UNMAPPED;
    }
    uint64_t val = write ? *v & mask_bytes(size) : 0;
    int done = 0;
    while (done < size) {
        uint64_t a = gpa + (uint64_t)done;
        uint64_t l = win_left(ctx, a);
        int piece = l < (uint64_t)(size - done) ? (int)l : size - done;
        if (write) {
            uint64_t pv = (val >> (8 * done)) & mask_bytes(piece);
            xl_dev_mmio(ctx, a, piece, 1, pv);
            acc(r, a, piece, 1, pv);
        } else {
            uint64_t pv = xl_dev_mmio(ctx, a, piece, 0, 0);
            acc(r, a, piece, 0, pv);
            val |= pv << (8 * done);
        }
        done += piece;
    }
    *v = val;
    if (!write)
        ctx->last_read = val;
    return XL_OK;
}

uint32_t xl_mmio_access(struct xl_ctx *ctx, struct xl_result *r, uint64_t gpa, int size, int write, uint64_t *v)
{
    return mmio(ctx, r, gpa, size, write, v);
}

uint64_t xl_dev_left(const struct xl_ctx *ctx, uint64_t gpa)
{
    return win_left(ctx, gpa);
}

/* Guest bytes at linear address `addr` from the CPU's view (no copy). */
static inline const uint8_t *view(const struct xl_cpu *c, uint64_t addr, size_t *avail)
{
    uint64_t off = addr - c->mem_base;
    if (addr < c->mem_base || off >= c->mem_size) {
        *avail = 0;
        return NULL;
    }
    uint64_t left = c->mem_size - off;
    *avail = left < XL_MAX_INSN ? (size_t)left : XL_MAX_INSN;
    return c->mem + off;
}

static inline uint64_t rip_mask(int mode)
{
    return mode == 64 ? ~0ull : 0xFFFFFFFFull;
}

static uint64_t merge(uint64_t old, uint64_t v, int size, int hi8)
{
    switch (size) {
    case 1:
        return hi8 ? (old & ~0xFF00ull) | ((v & 0xFF) << 8) : (old & ~0xFFull) | (v & 0xFF);
    case 2:
        return (old & ~0xFFFFull) | (v & 0xFFFF);
    case 4:
        return v & 0xFFFFFFFFull;
    default:
        return v;
    }
}

static inline uint64_t amask(int asize)
{
    return asize == 2 ? 0xFFFFull : (asize == 4 ? 0xFFFFFFFFull : ~0ull);
}

static uint64_t seg_base(struct xl_cpu *c, int seg)
{
    if (seg == XL_SEG_FS)
        return xl_cpu_get(c, XL_FS_BASE);
    if (seg == XL_SEG_GS)
        return xl_cpu_get(c, XL_GS_BASE);
    return 0;  /* flat: CS/DS/ES/SS bases are 0 on the default platform (also in real mode, CS=DS=0) */
}

static uint64_t linear(struct xl_cpu *c, uint64_t off, int asize, int seg)
{
    uint64_t lin = (off & amask(asize)) + seg_base(c, seg);
    /* linear addresses wrap at the mode's width (real mode: 64 KiB with the flat CS=DS=0 model) */
    return c->mode == 64 ? lin : (c->mode == 32 ? (lin & 0xFFFFFFFFull) : (lin & 0xFFFFull));
}

static uint64_t ea(struct xl_cpu *c, const struct xl_insn *d, uint64_t rip)
{
    uint64_t off = (uint64_t)d->disp;
    if (d->base == XL_BASE_RIP)
        off += rip + d->len;
    else if (d->base != XL_NOREG)
        off += xl_cpu_get(c, d->base);
    if (d->index != XL_NOREG)
        off += xl_cpu_get(c, d->index) * d->scale;
    return linear(c, off, d->addr_size, d->seg);
}

static void set_err(struct xl_ctx *ctx, uint32_t st, int path, const struct xl_exit *ex, struct xl_cpu *c)
{
    ctx->errors++;
    if (ctx->err.status != 0)
        return;
    uint64_t rip = xl_cpu_get(c, XL_RIP);
    size_t n;
    const uint8_t *p = view(c, rip, &n);
    ctx->err.status = st;
    ctx->err.path = (uint8_t)path;
    ctx->err.kind = (uint8_t)ex->kind;
    ctx->err.rip = rip;
    ctx->err.addr = ex->addr;
    ctx->err.len = (uint8_t)n;
    memset(ctx->err.bytes, 0, sizeof(ctx->err.bytes));
    if (p)
        memcpy(ctx->err.bytes, p, n);
}

/* A memory operand of a string instruction: device (claimed, or the exit's own address), RAM, or
 * unmapped (live: a precise fault at the first byte outside RAM; replay has no RAM: XL_E_NOMEM). */
static uint32_t str_access(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                           uint64_t addr, int size, int write, uint64_t *v)
{
    if (xl_dev_claims(ctx, addr) || addr == ex->addr)
        return mmio(ctx, r, addr, size, write, v);
    uint64_t off = addr - c->mem_base;
    if (!c->wmem)
        return XL_E_NOMEM;
    if (addr < c->mem_base || off >= c->mem_size) {
        ctx->fault_addr = addr;
        return XL_E_UNMAPPED;
    }
    if (c->mem_size - off < (uint64_t)size) {
        ctx->fault_addr = c->mem_base + c->mem_size;
        return XL_E_UNMAPPED;
    }
    if (write) {
        for (int i = 0; i < size; i++)
            c->wmem[off + (uint64_t)i] = (uint8_t)(*v >> (8 * i));
        if (c->wlo >= c->whi || addr < c->wlo)
            c->wlo = addr;
        if (addr + (uint64_t)size > c->whi)
            c->whi = addr + (uint64_t)size;
    } else {
        uint64_t x = 0;
        for (int i = size - 1; i >= 0; i--)
            x = (x << 8) | c->mem[off + (uint64_t)i];
        *v = x;
    }
    return XL_OK;
}

/* Would str_access fault on this operand?  XL_E_UNMAPPED (ctx->fault_addr set) or XL_OK.  A string
 * element is checked whole before any of its accesses: a MOVS whose destination faults does not
 * read its source (the faulting instruction reaches no device, SEMANTICS rule 6). */
static uint32_t str_check(struct xl_ctx *ctx, const struct xl_exit *ex, const struct xl_cpu *c, uint64_t addr,
                          int size)
{
    uint64_t bad;
    if (xl_dev_claims(ctx, addr)) {
        if (xl_dev_span(ctx, addr, size, &bad))
            return XL_OK;
        ctx->fault_addr = bad;
        return XL_E_UNMAPPED;
    }
    if (addr == ex->addr || !c->wmem)
        return XL_OK;  /* an unclaimed exit address (replay), or no RAM view (replay: XL_E_NOMEM later) */
    uint64_t off = addr - c->mem_base;
    if (addr < c->mem_base || off >= c->mem_size) {
        ctx->fault_addr = addr;
        return XL_E_UNMAPPED;
    }
    if (c->mem_size - off < (uint64_t)size) {
        ctx->fault_addr = c->mem_base + c->mem_size;
        return XL_E_UNMAPPED;
    }
    return XL_OK;
}

static inline int covers(uint64_t gpa, uint64_t a, int size)
{
    return gpa - a < (uint64_t)size;
}

static inline int in_ram(const struct xl_cpu *c, uint64_t addr, int size)
{
    uint64_t off = addr - c->mem_base;
    return c->wmem && addr >= c->mem_base && off < c->mem_size && c->mem_size - off >= (uint64_t)size;
}

/* In-place style: the hook reports one access of one element; do exactly that access (Unicorn
 * performs the other operand's access itself and updates rCX/rSI/rDI). */
static uint32_t string_element(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                               const struct xl_insn *d, uint64_t rip)
{
    int size = d->size, asz = d->addr_size;
    int movs = d->kind == XL_K_MOVS;
    uint64_t v = 0;
    uint32_t st;
    if (d->rep && (xl_cpu_get(c, 1) & amask(asz)) == 0)
        return XL_E_MISMATCH;  /* a REP with rCX = 0 accesses nothing */
    if (ex->kind == XL_MMIO_READ) {
        uint64_t src = movs ? linear(c, xl_cpu_get(c, 6), asz, d->seg ? d->seg : XL_SEG_DS) : 0;
        if (!movs || !covers(ex->addr, src, size))
            return XL_E_MISMATCH;
        st = str_check(ctx, ex, c, linear(c, xl_cpu_get(c, 7), asz, XL_SEG_ES), size);
        if (st == XL_OK)
            st = mmio(ctx, r, src, size, 0, &v);
    } else {
        uint64_t dst = linear(c, xl_cpu_get(c, 7), asz, XL_SEG_ES);
        if (!covers(ex->addr, dst, size))
            return XL_E_MISMATCH;
        if (!movs) {
            v = xl_cpu_get(c, 0);
        } else {
            uint64_t src = linear(c, xl_cpu_get(c, 6), asz, d->seg ? d->seg : XL_SEG_DS);
            if (in_ram(c, src, size))
                str_access(ctx, ex, c, r, src, size, 0, &v);
            else
                v = ex->value;  /* the device value Unicorn read through the source's own hook */
        }
        st = mmio(ctx, r, dst, size, 1, &v);
    }
    c->iters = st == XL_OK;
    r->next_rip = (rip + d->len) & rip_mask(c->mode);
    return st;
}

/* Exit style: one exit per trapped execution; iterate until rCX = 0, the remaining budget
 * (c->max_iter), a fault (rule 6: earlier iterations stay done) or a stop request. */
static uint32_t exec_string(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                            const struct xl_insn *d, uint64_t rip)
{
    if (c->flags & XL_CPU_ONE_ELEMENT)
        return string_element(ctx, ex, c, r, d, rip);
    int size = d->size, asz = d->addr_size;
    uint64_t am = amask(asz);
    uint64_t count = d->rep ? (xl_cpu_get(c, 1) & am) : 1;
    uint64_t next = (rip + d->len) & rip_mask(c->mode);
    c->iters = 0;
    if (count == 0) {
        r->next_rip = next;
        return XL_OK;
    }
    uint64_t n = count;
    if (c->max_iter && n > c->max_iter)
        n = c->max_iter;
    int64_t delta = (xl_cpu_get(c, XL_RFLAGS) & 0x400) ? -size : size;
    uint64_t rsi = xl_cpu_get(c, 6), rdi = xl_cpu_get(c, 7);
    int movs = d->kind == XL_K_MOVS;
    int src_seg = d->seg ? d->seg : XL_SEG_DS;
    uint64_t val0 = xl_cpu_get(c, 0) & mask_bytes(size);
    /* the exit's address must be one of the first element's operands */
    uint64_t dst0 = linear(c, rdi, asz, XL_SEG_ES);
    uint64_t src0 = movs ? linear(c, rsi, asz, src_seg) : dst0;
    if (!covers(ex->addr, dst0, size) && !covers(ex->addr, src0, size))
        return XL_E_MISMATCH;
    uint64_t k;
    uint32_t st = XL_OK;
    for (k = 0; k < n; k++) {
        if ((k & (XL_STOP_POLL - 1)) == XL_STOP_POLL - 1 && c->stop_flag && *c->stop_flag)
            break;  /* interrupted between two iterations, as hardware interrupts a REP */
        uint64_t v = val0;
        uint64_t dst = linear(c, rdi, asz, XL_SEG_ES);
        if (movs) {
            uint64_t src = linear(c, rsi, asz, src_seg);
            st = str_check(ctx, ex, c, src, size);
            if (!st)
                st = str_check(ctx, ex, c, dst, size);
            if (!st)
                st = str_access(ctx, ex, c, r, src, size, 0, &v);
            if (st)
                break;
        }
        st = str_access(ctx, ex, c, r, dst, size, 1, &v);
        if (st)
            break;
        if (movs)
            rsi = (rsi & ~am) | ((rsi + (uint64_t)delta) & am);
        rdi = (rdi & ~am) | ((rdi + (uint64_t)delta) & am);
    }
    /* architectural state after k completed iterations (precise, like a fault mid-REP) */
    if (asz == 4) {
        rsi &= am;
        rdi &= am;
    }
    /* entries of the REP as the budget counts them (as Unicorn/QEMU run a REP: one entry per
     * iteration, and one more that finds rCX = 0 and moves on); with the budget spent on the last
     * iteration, RIP stays on the REP (rCX = 0) and the next entry is the budget stop */
    c->iters = k;
    int done = k == count;
    if (done && d->rep) {
        if (c->max_iter && c->max_iter <= k)
            done = 0;
        else
            c->iters = k + 1;
    }
    if (k) {
        if (movs)
            xl_cpu_set(c, 6, rsi);
        xl_cpu_set(c, 7, rdi);
        if (d->rep) {
            uint64_t rcx = xl_cpu_get(c, 1);
            uint64_t left = count - k;
            xl_cpu_set(c, 1, asz == 2 ? ((rcx & ~am) | left) : left);
        }
    }
    if (st)
        return st;
    r->next_rip = done ? next : rip;
    return XL_OK;
}

/* Execute a decoded MMIO instruction against the exit. */
static uint32_t xl_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                        const struct xl_insn *d, uint64_t rip)
{
    /* rule 7: the access Unicorn reported must be one this instruction makes (Unicorn reports the
     * stores of some instructions -- fxsave, maskmovdqu -- at a later RIP) */
    if (ex->size && ex->size != d->size)
        return XL_E_MISMATCH;
    if (d->kind == XL_K_MOVS || d->kind == XL_K_STOS)
        return exec_string(ctx, ex, c, r, d, rip);
    uint64_t a = ea(c, d, rip);
    int write = d->kind == XL_K_WRITE || d->kind == XL_K_WRITE_IMM;
    if (!covers(ex->addr, a, d->size) || (write != (ex->kind == XL_MMIO_WRITE)))
        return XL_E_MISMATCH;
    uint64_t v;
    if (write) {
        if (d->kind == XL_K_WRITE_IMM)
            v = d->imm;
        else
            v = xl_cpu_get(c, d->reg) >> (d->hi8 ? 8 : 0);
        uint32_t st = mmio(ctx, r, a, d->size, 1, &v);
        if (st)
            return st;
    } else {
        uint32_t st = mmio(ctx, r, a, d->size, 0, &v);
        if (st)
            return st;
        if (d->kind == XL_K_READ_SX)
            v = (uint64_t)((int64_t)(v << (64 - 8 * d->size)) >> (64 - 8 * d->size));
        uint64_t nv = merge(xl_cpu_get(c, d->reg), v, d->dst_size, d->hi8);
        xl_cpu_set(c, d->reg, nv);
        r->wb = nv;
    }
    r->next_rip = (rip + d->len) & rip_mask(c->mode);
    return XL_OK;
}

/* ---------------------------------------------------------------- paths */

/* The opcode of the port I/O instruction at p (after legacy prefixes and, in 64-bit mode, REX
 * prefixes in any order -- a REX not right before the opcode is ignored by the CPU, not an error:
 * E4-E7 imm8 port, EC-EF DX port, 6C-6F INS/OUTS), or -1: a port I/O exit whose bytes are no I/O
 * instruction (or one cut short) is a bad record.  emu/iopaths.py pio_length, the Python
 * reference, reads it alike. */
static int pio_opcode(const uint8_t *p, size_t n, int mode)
{
    size_t i = 0;
    if (n > XL_MAX_INSN)
        n = XL_MAX_INSN;
    while (i < n && (p[i] == 0x66 || p[i] == 0x67 || p[i] == 0xF2 || p[i] == 0xF3 || p[i] == 0xF0 ||
                     p[i] == 0x2E || p[i] == 0x36 || p[i] == 0x3E || p[i] == 0x26 || p[i] == 0x64 ||
                     p[i] == 0x65 || (mode == 64 && (p[i] & 0xF0) == 0x40)))
        i++;
    if (i >= n)
        return -1;
    uint8_t op = p[i];
    if ((op >= 0xEC && op <= 0xEF) || (op >= 0x6C && op <= 0x6F))
        return op;
    if (op >= 0xE4 && op <= 0xE7 && i + 1 < n)
        return op;
    return -1;
}

static uint32_t path_pio(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r)
{
    int size = (int)ex->size;
    int write = ex->kind == XL_PIO_OUT;
    if (size != 1 && size != 2 && size != 4)
        return XL_E_RECORD;  /* port I/O is 1, 2 or 4 bytes; anything else is a malformed record */
    /* the exit reports the instruction length (VM-exit instruction length); here: the bytes' */
    uint64_t rip = xl_cpu_get(c, XL_RIP);
    size_t n;
    const uint8_t *p = view(c, rip, &n);
    int op = p ? pio_opcode(p, n, c->mode) : -1;
    int len = op >= 0 ? xl_insn_length(p, n, c->mode) : -1;
    if (len < 0)
        return XL_E_LENGTH;
    uint64_t v = xl_pio(ctx, ex->addr, size, write, write ? ex->value : 0);
    if (write)
        v = ex->value & mask_bytes(size);
    acc(r, ex->addr, size, write, v);
    if (!write && !(op >= 0x6C && op <= 0x6F)) {
        /* IN (not INS, whose element goes to memory): AL/AX merged, EAX zero-extended
         * (KVM complete_fast_pio_in) */
        uint64_t nv = merge(xl_cpu_get(c, 0), v, size, 0);
        xl_cpu_set(c, 0, nv);
        r->wb = nv;
    }
    r->next_rip = (rip + (uint64_t)len) & rip_mask(c->mode);
    return XL_OK;
}

static uint32_t path_hypercall(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r)
{
    (void)ex;
    uint64_t wm = c->mode == 64 ? ~0ull : 0xFFFFFFFFull;
    uint64_t nr = xl_cpu_get(c, 0) & wm;
    uint64_t ret, bad;
    if (nr == XL_HC_MMIO_WRITE) {
        uint64_t gpa = xl_cpu_get(c, 3) & wm, size = xl_cpu_get(c, 1) & wm, value = xl_cpu_get(c, 2) & wm;
        if (!(size == 1 || size == 2 || size == 4 || (size == 8 && c->mode == 64)))
            ret = (0 - (uint64_t)XL_KVM_EINVAL) & wm;
        else if (!xl_dev_claims(ctx, gpa) || !xl_dev_span(ctx, gpa, (int)size, &bad))
            ret = (0 - (uint64_t)XL_KVM_EFAULT) & wm;
        else {
            mmio(ctx, r, gpa, (int)size, 1, &value);
            ret = 0;
        }
    } else {
        ret = (0 - (uint64_t)XL_KVM_ENOSYS) & wm;
    }
    xl_cpu_set(c, 0, ret);
    r->wb = ret;
    r->next_rip = (xl_cpu_get(c, XL_RIP) + XL_HYPERCALL_LEN) & rip_mask(c->mode);
    return XL_OK;
}

static inline int in_pv_window(const struct xl_ctx *ctx, uint64_t gpa)
{
    return gpa - ctx->dev.notify_base < ctx->dev.notify_size || (ctx->tab && xl_tab_in_pv(ctx->tab, gpa, 1));
}

/* pv-fast on a pv window of the table (a PCI device's): the same contract check as xl_pvfast, the
 * write goes to the device through the bus. */
uint32_t xl_pvfast_tab(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r)
{
    if (!ctx->tab || ex->kind != XL_MMIO_WRITE || (c->mode != 64 && c->mode != 32) ||
        !xl_tab_in_pv(ctx->tab, ex->addr, 2) || (ex->size && ex->size != 2))
        return XL_NOT_MINE;
    uint64_t rip;
    if (!xl_pv_insn_at_rip(c, &rip))
        return XL_NOT_MINE;
    uint64_t v = xl_cpu_get(c, 0) & 0xFFFF;
    xl_dev_mmio(ctx, ex->addr, 2, 1, v);
    xl_res_acc(r, ex->addr, 2, 1, v);
    r->next_rip = (rip + 3) & (c->mode == 64 ? ~0ull : 0xFFFFFFFFull);
    return XL_OK;
}

static inline uint32_t path_pvfast(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c,
                                   struct xl_result *r)
{
    return xl_pvfast(ctx, ex, c, r);
}

/* Wildcard: address-only notification in the notify window (like a zero-length ioeventfd):
 * no data is learned; the guest resumes at RIP + the instruction's length.  On the default notify
 * device queue q's wildcard address is NOTIFY_MMIO + 4*q. */
static uint32_t path_wildcard(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r)
{
    if (ex->kind != XL_MMIO_WRITE || !in_pv_window(ctx, ex->addr))
        return XL_NOT_MINE;
    uint64_t rip = xl_cpu_get(c, XL_RIP);
    size_t n;
    const uint8_t *p = view(c, rip, &n);
    if (!p)
        return XL_E_FETCH;
    int len = xl_insn_length(p, n, c->mode);
    if (len < 0)
        return XL_NOT_MINE;
    dev_notify(ctx, ex->addr);
    acc(r, ex->addr, 0, 1, 0);
    r->next_rip = (rip + (uint64_t)len) & rip_mask(c->mode);
    return XL_OK;
}

static uint32_t path_subset(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r)
{
    if (ex->kind != XL_MMIO_WRITE && ex->kind != XL_MMIO_READ)
        return XL_E_KIND;
    uint64_t rip = xl_cpu_get(c, XL_RIP);
    size_t n;
    const uint8_t *p = view(c, rip, &n);
    if (!p)
        return XL_E_FETCH;
    struct xl_insn d;
    if (!xl_decode_subset(p, n, c->mode, &d))
        return XL_NOT_MINE;
    return xl_exec(ctx, ex, c, r, &d, rip);
}

/* ---- Capstone generic path */

/* Capstone register -> (GPR number, width, high-byte) */
int xl_cs_gpr(unsigned reg, uint8_t *num, uint8_t *hi8)
{
    static const unsigned r64[16] = {X86_REG_RAX, X86_REG_RCX, X86_REG_RDX, X86_REG_RBX, X86_REG_RSP, X86_REG_RBP,
                                     X86_REG_RSI, X86_REG_RDI, X86_REG_R8, X86_REG_R9, X86_REG_R10, X86_REG_R11,
                                     X86_REG_R12, X86_REG_R13, X86_REG_R14, X86_REG_R15};
    static const unsigned r32[16] = {X86_REG_EAX, X86_REG_ECX, X86_REG_EDX, X86_REG_EBX, X86_REG_ESP, X86_REG_EBP,
                                     X86_REG_ESI, X86_REG_EDI, X86_REG_R8D, X86_REG_R9D, X86_REG_R10D, X86_REG_R11D,
                                     X86_REG_R12D, X86_REG_R13D, X86_REG_R14D, X86_REG_R15D};
    static const unsigned r16[16] = {X86_REG_AX, X86_REG_CX, X86_REG_DX, X86_REG_BX, X86_REG_SP, X86_REG_BP,
                                     X86_REG_SI, X86_REG_DI, X86_REG_R8W, X86_REG_R9W, X86_REG_R10W, X86_REG_R11W,
                                     X86_REG_R12W, X86_REG_R13W, X86_REG_R14W, X86_REG_R15W};
    static const unsigned r8[16] = {X86_REG_AL, X86_REG_CL, X86_REG_DL, X86_REG_BL, X86_REG_SPL, X86_REG_BPL,
                                    X86_REG_SIL, X86_REG_DIL, X86_REG_R8B, X86_REG_R9B, X86_REG_R10B, X86_REG_R11B,
                                    X86_REG_R12B, X86_REG_R13B, X86_REG_R14B, X86_REG_R15B};
    static const unsigned rh[4] = {X86_REG_AH, X86_REG_CH, X86_REG_DH, X86_REG_BH};
    *hi8 = 0;
    for (int i = 0; i < 16; i++) {
        if (reg == r64[i] || reg == r32[i] || reg == r16[i] || reg == r8[i]) {
            *num = (uint8_t)i;
            return 0;
        }
    }
    for (int i = 0; i < 4; i++) {
        if (reg == rh[i]) {
            *num = (uint8_t)i;
            *hi8 = 1;
            return 0;
        }
    }
    return -1;
}

int xl_cs_mem(const cs_x86_op *op, struct xl_insn *d)
{
    const x86_op_mem *m = &op->mem;
    uint8_t h;
    d->disp = m->disp;
    d->scale = (uint8_t)(m->scale ? m->scale : 1);
    d->base = XL_NOREG;
    d->index = XL_NOREG;
    if (m->base == X86_REG_RIP || m->base == X86_REG_EIP)
        d->base = XL_BASE_RIP;
    else if (m->base != X86_REG_INVALID && xl_cs_gpr(m->base, &d->base, &h) < 0)
        return -1;
    /* Capstone names a SIB without index (100b) "riz"/"eiz": no index */
    if (m->index != X86_REG_INVALID && m->index != X86_REG_RIZ && m->index != X86_REG_EIZ &&
        xl_cs_gpr(m->index, &d->index, &h) < 0)
        return -1;
    if (d->index == XL_NOREG)
        d->scale = 1;
    switch (m->segment) {
    case X86_REG_FS: d->seg = XL_SEG_FS; break;
    case X86_REG_GS: d->seg = XL_SEG_GS; break;
    default: d->seg = XL_SEG_NONE; break;
    }
    return 0;
}

/* An instruction the paths do not emulate: still a precise #PF (rule 6) when its memory operand that
 * holds the exit's address runs off the device window into unmapped space -- the architecture
 * faults before the instruction does anything, whatever it is; otherwise a clean decline. */
static uint32_t unsupported_or_fault(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c,
                                     const cs_x86 *x, uint64_t rip, uint16_t len)
{
    (void)ex;  /* every operand is judged, not only the one holding the exit's address */
    for (int i = 0; i < x->op_count; i++) {
        const cs_x86_op *o = &x->operands[i];
        if (o->type != X86_OP_MEM || o->size == 0)
            continue;
        struct xl_insn d;
        memset(&d, 0, sizeof(d));
        d.len = (uint8_t)len;
        d.addr_size = x->addr_size;
        if (xl_cs_mem(o, &d) < 0)
            continue;
        uint64_t a = ea(c, &d, rip), bad;
        if (!xl_dev_claims(ctx, a)) {
            /* live runs know guest RAM: an operand neither in RAM nor in a device (CMPS's other
             * string, say) faults too, whatever the instruction; a replay has no RAM to judge by */
            if (c->mem_size && (a < c->mem_base || a - c->mem_base >= c->mem_size)) {
                ctx->fault_addr = a;
                return XL_E_UNMAPPED;
            }
            if (c->mem_size && c->mem_size - (a - c->mem_base) < o->size) {
                ctx->fault_addr = c->mem_base + c->mem_size;
                return XL_E_UNMAPPED;
            }
            continue;
        }
        /* any operand, not only the one that exited: Unicorn reaches CMPS's ES:[rdi] first, the
         * architecture DS:[rsi] (SDM order, as the generic path) */
        if (!xl_dev_span(ctx, a, o->size, &bad)) {
            ctx->fault_addr = bad;
            return XL_E_UNMAPPED;
        }
    }
    return XL_E_UNSUPPORTED;
}

/* Forms whose memory operand 0 is only read: CMP/TEST/BT/PUSH, MUL/IMUL/DIV/IDIV r/m name their
 * source first, CMPS its DS:[rSI]; no #GP through CS for them (the map's `readonly` ops, as
 * emu/emulate.py READ_ONLY). */
static int reads_operand0(unsigned id)
{
    switch (id) {
    XL_OPMAP_READONLY_CASES
        return 1;
    default:
        return 0;
    }
}

/* The bytes Capstone is asked to decode (emu/decode.py _for_capstone): for POPCNT/TZCNT/LZCNT
 * (F3 0F B8/BC/BD) with F3 and no F2 among the legacy prefixes, the F3 moved behind the others, same
 * length and meaning.  Capstone drops an F3 that another prefix separates from a later 66
 * (`f3 26 66 0f bd 27` is LZCNT, Capstone says BSR). Returns p, or buf holding the rewrite. */
static const uint8_t *for_capstone(const uint8_t *p, size_t n, int mode, uint8_t *buf)
{
    size_t i = 0, nf3 = 0;
    int f2 = 0;
    for (; i < n && i < XL_MAX_INSN; i++) {
        uint8_t b = p[i];
        if (b == 0xF3)
            nf3++;
        else if (b == 0xF2)
            f2 = 1;
        else if (!(b == 0xF0 || b == 0x66 || b == 0x67 || b == 0x26 || b == 0x2E || b == 0x36 || b == 0x3E ||
                   b == 0x64 || b == 0x65))
            break;
    }
    size_t legacy = i;  /* a REX between legacy prefixes ends the scan early: left as is */
    while (i < n && i < XL_MAX_INSN && mode == 64 && (p[i] & 0xF0) == 0x40)
        i++;
    if (!nf3 || f2 || i + 1 >= n || p[i] != 0x0F || (p[i + 1] != 0xB8 && p[i + 1] != 0xBC && p[i + 1] != 0xBD))
        return p;
    size_t k = 0, len = n < XL_MAX_INSN ? n : XL_MAX_INSN;
    for (size_t j = 0; j < legacy; j++)
        if (p[j] != 0xF3)
            buf[k++] = p[j];
    while (k < legacy)
        buf[k++] = 0xF3;
    memcpy(buf + k, p + k, len - k);
    return buf;
}

static uint32_t path_capstone(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r)
{
    if (ex->kind != XL_MMIO_WRITE && ex->kind != XL_MMIO_READ)
        return XL_E_KIND;
    int k = c->mode == 64 ? 2 : (c->mode == 32 ? 1 : (c->mode == 16 ? 0 : -1));
    if (k < 0)
        return XL_E_MODE;
    if (!ctx->cs_insn[k] && cs_open_one(ctx, k) < 0)
        return XL_E_DECODE;
    uint64_t rip = xl_cpu_get(c, XL_RIP);
    size_t n;
    const uint8_t *p = view(c, rip, &n);
    if (!p)
        return XL_E_FETCH;
    cs_insn *insn = (cs_insn *)ctx->cs_insn[k];
    uint8_t canon[XL_MAX_INSN];
    const uint8_t *code = for_capstone(p, n, c->mode, canon);
    size_t left = n < XL_MAX_INSN || code == p ? n : XL_MAX_INSN;
    uint64_t addr = rip;
    if (!cs_disasm_iter((csh)ctx->cs_handle[k], &code, &left, &addr, insn))
        return XL_E_DECODE;
    /* outside 64-bit mode code segments are not writable: a store through a CS override is #GP
     * (emu/semantics: GuestFault 13), decided before any access */
    if (c->mode != 64) {
        const cs_x86 *xs = &insn->detail->x86;
        int mov = insn->id == X86_INS_MOV || insn->id == X86_INS_MOVABS;
        /* the destination is operand 0 (Capstone's access flags miss CMPXCHG, MOVNTI, SETcc...);
         * the read-only forms are emu/emulate.py's _READ_ONLY */
        if ((mov || xl_sem_known(insn->id)) && xs->op_count > 0 && xs->operands[0].type == X86_OP_MEM &&
            xs->operands[0].mem.segment == X86_REG_CS && !reads_operand0(insn->id))
            return XL_E_GP;
    }
    /* the forms beyond the MOV family and MOVS/STOS: ALU, XCHG*, BT*, SSE moves, LODS (sem.c) */
    uint32_t sem = XL_NOT_MINE;
    switch (insn->id) {
    XL_OPMAP_PATHS_MOV_CASES
    XL_OPMAP_PATHS_MOVX_CASES
        break;  /* the MOV family below (the notify's hot path): no family table claims these ids */
    default:
        sem = xl_sem2_exec(ctx, ex, c, r, insn, p, n, rip);  /* stack, atomics, vector, misc */
        if (sem == XL_NOT_MINE)
            sem = xl_sem_exec(ctx, ex, c, r, insn, p, n, rip);
    }
    if (sem == XL_E_UNSUPPORTED)  /* still a precise #PF when the operand runs off the window */
        return unsupported_or_fault(ctx, ex, c, &insn->detail->x86, rip, insn->size);
    if (sem != XL_NOT_MINE)
        return sem;
    const cs_x86 *x = &insn->detail->x86;
    struct xl_insn d;
    memset(&d, 0, sizeof(d));
    d.len = (uint8_t)insn->size;
    d.addr_size = x->addr_size;
    d.base = d.index = XL_NOREG;
    d.scale = 1;
    /* LOCK MOV/MOVSX/MOVZX/MOVSXD/MOVS/STOS is #UD. From the raw bytes: Capstone keeps only the last
     * of F0/F2/F3 in prefix[0], so `f0 f2 ...` would hide the LOCK. */
    for (size_t i = 0; i < insn->size && i < n; i++) {
        uint8_t b = p[i];
        if (b == 0xF0)
            return XL_E_UNSUPPORTED;
        if (!(b == 0x66 || b == 0x67 || b == 0x26 || b == 0x2E || b == 0x36 || b == 0x3E || b == 0x64 ||
              b == 0x65 || b == 0xF2 || b == 0xF3 || (c->mode == 64 && (b & 0xF0) == 0x40)))
            break;
    }
    const cs_x86_op *o = x->operands;
    switch (insn->id) {
    XL_OPMAP_PATHS_MOV_CASES  /* MOVABS: Capstone's name for the 64-bit moffs forms A0-A3 */
        if (x->op_count != 2)
            return XL_E_UNSUPPORTED;
        if (o[0].type == X86_OP_MEM && o[1].type == X86_OP_REG) {
            d.kind = XL_K_WRITE;
            d.size = o[0].size;
            if (xl_cs_gpr(o[1].reg, &d.reg, &d.hi8) < 0 || xl_cs_mem(&o[0], &d) < 0)
                return XL_E_UNSUPPORTED;  /* e.g. MOV m16, Sreg */
        } else if (o[0].type == X86_OP_MEM && o[1].type == X86_OP_IMM) {
            d.kind = XL_K_WRITE_IMM;
            d.size = o[0].size;
            d.imm = (uint64_t)o[1].imm & mask_bytes(d.size);
            if (xl_cs_mem(&o[0], &d) < 0)
                return XL_E_UNSUPPORTED;
        } else if (o[0].type == X86_OP_REG && o[1].type == X86_OP_MEM) {
            d.kind = XL_K_READ;
            d.size = o[1].size;
            d.dst_size = o[0].size;
            if (xl_cs_gpr(o[0].reg, &d.reg, &d.hi8) < 0 || xl_cs_mem(&o[1], &d) < 0)
                return XL_E_UNSUPPORTED;
        } else {
            return XL_E_UNSUPPORTED;
        }
        break;
    XL_OPMAP_PATHS_MOVX_CASES
        if (x->op_count != 2 || o[0].type != X86_OP_REG || o[1].type != X86_OP_MEM)
            return XL_E_UNSUPPORTED;
        d.size = o[1].size;
        d.dst_size = o[0].size;
        if (insn->id == X86_INS_MOVSXD && d.dst_size == 2)
            d.size = 2;  /* MOVSXD r16, m16 reads 16 bits (Intel SDM; emu/semantics, known-discrepancies) */
        d.kind = insn->id == X86_INS_MOVZX ? XL_K_READ_ZX : XL_K_READ_SX;
        if (d.size >= d.dst_size)
            d.kind = XL_K_READ;
        if (xl_cs_gpr(o[0].reg, &d.reg, &d.hi8) < 0 || xl_cs_mem(&o[1], &d) < 0)
            return XL_E_UNSUPPORTED;
        break;
    XL_OPMAP_PATHS_STRING_CASES {
        uint8_t opc = x->opcode[0];
        if (opc != 0xA4 && opc != 0xA5 && opc != 0xAA && opc != 0xAB)
            return XL_E_UNSUPPORTED;  /* SSE MOVSD */
        d.kind = (opc == 0xA4 || opc == 0xA5) ? XL_K_MOVS : XL_K_STOS;
        switch (insn->id) {
        case X86_INS_MOVSB: case X86_INS_STOSB: d.size = 1; break;
        case X86_INS_MOVSW: case X86_INS_STOSW: d.size = 2; break;
        case X86_INS_MOVSD: case X86_INS_STOSD: d.size = 4; break;
        default: d.size = 8; break;
        }
        /* REP/REPNE from the raw prefix bytes: Capstone drops F2 on MOVS/STOS, the CPU treats it as REP */
        for (size_t i = 0; i < insn->size && i < n; i++) {
            uint8_t b = p[i];
            if (b == 0xF2 || b == 0xF3)
                d.rep = b;
            else if (!(b == 0x66 || b == 0x67 || b == 0x26 || b == 0x2E || b == 0x36 || b == 0x3E || b == 0x64 ||
                       b == 0x65 || b == 0xF0 || (c->mode == 64 && (b & 0xF0) == 0x40)))
                break;
        }
        if (d.kind == XL_K_MOVS) {
            /* the source operand carries the (only overridable) segment */
            for (int i = 0; i < x->op_count; i++)
                if (o[i].type == X86_OP_MEM && (o[i].mem.base == X86_REG_RSI || o[i].mem.base == X86_REG_ESI ||
                                                o[i].mem.base == X86_REG_SI)) {
                    d.seg = o[i].mem.segment == X86_REG_FS ? XL_SEG_FS
                            : o[i].mem.segment == X86_REG_GS ? XL_SEG_GS : XL_SEG_NONE;
                }
        }
        break;
    }
    default:
        return unsupported_or_fault(ctx, ex, c, x, rip, insn->size);
    }
    return xl_exec(ctx, ex, c, r, &d, rip);
}

static uint32_t path_trap(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r)
{
    r->next_rip = (xl_cpu_get(c, XL_RIP) + ctx->trap_len) & rip_mask(c->mode);
    return XL_OK;
}

uint32_t xl_handle(struct xl_ctx *ctx, int path, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r)
{
    uint32_t st;
    int used = path;
    xl_res_init(r);
    c->iters = 0;
    if (c->mode != 16 && c->mode != 32 && c->mode != 64) {
        r->status = XL_E_MODE;
        r->path = (uint8_t)(path >= 0 && path < XL_NPATHS ? path : XL_PATH_CAPSTONE);
        set_err(ctx, XL_E_MODE, r->path, ex, c);
        return XL_E_MODE;
    }
    switch (ex->kind) {
    case XL_PIO_OUT:
    case XL_PIO_IN:
        used = XL_PATH_PIO;
        st = path_pio(ctx, ex, c, r);
        break;
    case XL_HYPERCALL:
        if (path == XL_PATH_TRAP) {  /* baseline: the bare trap of a hypercall, no arguments read */
            used = XL_PATH_TRAP;
            st = path_trap(ctx, c, r);
            break;
        }
        used = XL_PATH_HYPERCALL;
        st = path_hypercall(ctx, ex, c, r);
        break;
    case XL_MMIO_WRITE:
    case XL_MMIO_READ:
        switch (path) {
        case XL_PATH_PVFAST:
            st = path_pvfast(ctx, ex, c, r);
            if (st == XL_NOT_MINE && in_pv_window(ctx, ex->addr))
                ctx->violations++;
            break;
        case XL_PATH_WILDCARD:
            st = path_wildcard(ctx, ex, c, r);
            break;
        case XL_PATH_SUBSET:
            st = path_subset(ctx, ex, c, r);
            break;
        case XL_PATH_TRAP:
            st = path_trap(ctx, c, r);
            break;
        default:
            st = XL_NOT_MINE;
            if (path == XL_PATH_CAPSTONE)
                st = path_capstone(ctx, ex, c, r);
            used = XL_PATH_CAPSTONE;
            break;
        }
        if (st == XL_NOT_MINE) {
            if (used != XL_PATH_CAPSTONE)
                ctx->fallbacks++;
            used = XL_PATH_CAPSTONE;
            /* a fast path that declined must leave no trace */
            r->acc_hash = XL_HASH_INIT;
            r->n_acc = 0;
            st = path_capstone(ctx, ex, c, r);
        }
        break;
    default:
        st = XL_E_KIND;
        break;
    }
    r->status = st;
    r->path = (uint8_t)used;
    if (st == XL_OK)
        ctx->counts[used]++;
    else
        set_err(ctx, st, used, ex, c);
    return st;
}

/* ---------------------------------------------------------------- string elements for sem*.c */

uint32_t xl_str_access(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                       uint64_t addr, int size, int write, uint64_t *v)
{
    return str_access(ctx, ex, c, r, addr, size, write, v);
}

uint32_t xl_str_check(struct xl_ctx *ctx, const struct xl_exit *ex, const struct xl_cpu *c, uint64_t addr, int size)
{
    return str_check(ctx, ex, c, addr, size);
}
