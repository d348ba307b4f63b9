/* Entry, decode and memory routing of the stack, atomic, vector-move and misc families (sem.h).
 *
 * These instructions may touch more than their one memory operand (the stack, ES:[reg] of
 * MOVDIR64B) and operands wider than 8 bytes (16/32/64), in RAM as well as in devices, so they
 * route every access as emu/semantics/core.py Exec does: plan (fault before anything), then one
 * device access per device window and per 8 bytes, low address first (KVM's 8-byte MMIO chunks),
 * or the RAM view.  Nothing here allocates. */
#include <string.h>

#include "paths.h"
#include "sem.h"

/* ---------------------------------------------------------------- entry and decode */

static inline int legacy(uint8_t b)
{
    return b == 0xF0 || b == 0xF2 || b == 0xF3 || b == 0x2E || b == 0x36 || b == 0x3E || b == 0x26 ||
           b == 0x64 || b == 0x65 || b == 0x66 || b == 0x67;
}

/* Raw prefixes (emu/decode.py _prefixes, _operand_size, _opcode_at, _segment_override). */
static void scan(struct xs2 *d, const uint8_t *p, size_t n, int mode)
{
    uint8_t rex = 0;
    size_t i;
    for (i = 0; i < n && i < XL_MAX_INSN; i++) {
        uint8_t b = p[i];
        if (legacy(b)) {
            d->lock |= b == 0xF0;
            d->has66 |= b == 0x66;
            d->has_f2f3 |= b == 0xF2 || b == 0xF3;
            if (b == 0xF2 || b == 0xF3)
                d->last_f2f3 = b;
            if (b == 0x64)
                d->seg = XL_SEG_FS;
            else if (b == 0x65)
                d->seg = XL_SEG_GS;
            else if (b == 0x2E || b == 0x36 || b == 0x3E || b == 0x26)
                d->seg = XL_SEG_NONE;
            rex = 0;
        } else if (mode == 64 && (b & 0xF0) == 0x40) {
            rex = b;
        } else {
            break;
        }
    }
    d->opsize = (rex & 0x8) ? 8 : (d->has66 ? 2 : 4);
    d->vex = i < n && (p[i] == 0xC4 || p[i] == 0xC5);
}

static const struct {
    xs2_has_fn has;
    xs2_exec_fn exec;
} families[] = {
    {xs_stack_has, xs_stack_exec},
    {xs_atomic_has, xs_atomic_exec},
    {xs_vector_has, xs_vector_exec},
    {xs_misc_has, xs_misc_exec},
};

uint32_t xl_sem2_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                      const cs_insn *insn, const uint8_t *p, size_t n, uint64_t rip)
{
    size_t f;
    for (f = 0; f < sizeof(families) / sizeof(families[0]); f++)
        if (families[f].has(insn->id))
            break;
    if (f == sizeof(families) / sizeof(families[0]))
        return XL_NOT_MINE;
    /* emu/decode.py decodes 32- and 64-bit code only; the in-place hook (one element per call,
     * Unicorn doing the rest) cannot carry these: refuse both */
    if ((c->mode != 64 && c->mode != 32) || (c->flags & XL_CPU_ONE_ELEMENT))
        return XL_E_UNSUPPORTED;
    if (ex->kind != XL_MMIO_READ && ex->kind != XL_MMIO_WRITE)
        return XL_E_KIND;
    struct xs2 d;
    memset(&d, 0, sizeof(d));
    d.insn = insn;
    d.x = &insn->detail->x86;
    d.rip = rip;
    d.mode = (uint8_t)c->mode;
    d.next = (rip + insn->size) & (c->mode == 64 ? ~0ull : 0xFFFFFFFFull);
    d.m.len = (uint8_t)insn->size;
    d.m.addr_size = d.x->addr_size;
    d.m.base = d.m.index = XL_NOREG;
    d.m.scale = 1;
    d.mem_i = -1;
    scan(&d, p, insn->size < n ? insn->size : n, c->mode);
    for (int i = 0; i < d.x->op_count; i++) {
        const cs_x86_op *o = &d.x->operands[i];
        if (o->type == X86_OP_MEM) {
            if (d.nmem++ == 0) {
                d.mem_i = i;
                d.mem_size = o->size;
                d.mem_is_dest = i == 0;
                d.cs_override = o->mem.segment == X86_REG_CS;
            }
        } else if (o->type == X86_OP_REG) {
            if (d.nreg == 4)
                return XL_E_UNSUPPORTED;
            d.reg[d.nreg] = o->reg;
            d.reg_size[d.nreg++] = o->size;
        } else if (o->type == X86_OP_IMM) {
            if (d.nimm == 2)
                return XL_E_UNSUPPORTED;
            d.imm[d.nimm++] = o->imm;
        }
    }
    if (d.nmem && xl_cs_mem(&d.x->operands[d.mem_i], &d.m) < 0)
        return XL_E_UNSUPPORTED;
    r->next_rip = d.next;  /* a branch sets its target */
    return families[f].exec(ctx, ex, c, r, &d);
}

uint64_t xs2_ea(struct xl_cpu *c, const struct xs2 *d, uint64_t extra)
{
    const struct xl_insn *m = &d->m;
    uint64_t off = (uint64_t)m->disp + extra;
    if (m->base == XL_BASE_RIP)
        off += d->next;
    else if (m->base != XL_NOREG)
        off += xl_cpu_get(c, m->base);
    if (m->index != XL_NOREG)
        off += xl_cpu_get(c, m->index) * m->scale;
    off &= m->addr_size == 2 ? 0xFFFFull : (m->addr_size == 4 ? 0xFFFFFFFFull : ~0ull);
    if (m->seg == XL_SEG_FS)
        off += xl_cpu_get(c, XL_FS_BASE);
    else if (m->seg == XL_SEG_GS)
        off += xl_cpu_get(c, XL_GS_BASE);
    return c->mode == 64 ? off : (off & 0xFFFFFFFFull);
}

/* ---------------------------------------------------------------- memory routing */

static inline uint64_t wrap(const struct xl_cpu *c, uint64_t a)
{
    return c->mode == 64 ? a : (a & 0xFFFFFFFFull);
}

static inline int in_ram(const struct xl_cpu *c, uint64_t a)
{
    return c->wmem && a >= c->mem_base && a - c->mem_base < c->mem_size;
}

/* Where [addr, addr+size) goes: 1 = devices, 0 = RAM, or a refusal status as xs2_probe. */
static int route(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, uint64_t addr, int size,
                 uint32_t *st)
{
    uint64_t last = wrap(c, addr + (uint64_t)size - 1), bad;
    if (c->mode == 64 && !(xs2_canonical(addr) && xs2_canonical(last))) {
        *st = XL_E_GP;  /* SDM vol. 3 6.15: #GP before any access */
        return -1;
    }
    if (xl_dev_claims(ctx, addr) || addr == ex->addr) {
        if (xl_dev_claims(ctx, addr) && !xl_dev_span(ctx, addr, size, &bad)) {
            ctx->fault_addr = bad;  /* rule 6: runs off the device into unmapped space */
            *st = XL_E_UNMAPPED;
            return -1;
        }
        return 1;  /* an unclaimed exit address (replay of another board): the bus */
    }
    if (!c->wmem) {
        *st = XL_E_NOMEM;  /* a replay record carries no RAM */
        return -1;
    }
    if (!in_ram(c, addr)) {
        ctx->fault_addr = addr;
        *st = XL_E_UNMAPPED;
        return -1;
    }
    for (int i = 1; i < size; i++) {
        uint64_t a = wrap(c, addr + (uint64_t)i);
        if (!in_ram(c, a)) {
            if (xl_dev_claims(ctx, a)) {
                *st = XL_E_UNSUPPORTED;  /* one access from RAM into a device: not split here */
                return -1;
            }
            ctx->fault_addr = a;
            *st = XL_E_UNMAPPED;
            return -1;
        }
    }
    return 0;
}

uint32_t xs2_probe(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, uint64_t addr, int size)
{
    uint32_t st = XL_OK;
    route(ctx, ex, c, wrap(c, addr), size, &st);
    return st;
}

static inline uint64_t load_le(const uint8_t *b, int k)
{
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

static inline void store_le(uint8_t *b, uint64_t v, int k)
{
    for (int i = 0; i < k; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

/* Device side: one piece per device window, each as accesses of at most 8 bytes from the piece's
 * start (emu/semantics/core.py Exec.read/write). */
static void dev_rw(struct xl_ctx *ctx, struct xl_result *r, uint64_t addr, int size, int write, uint8_t *buf)
{
    int done = 0;
    while (done < size) {
        uint64_t a = addr + (uint64_t)done;
        uint64_t left = xl_dev_left(ctx, a);
        int piece = (left == 0 || left >= (uint64_t)(size - done)) ? size - done : (int)left;
        for (int off = 0; off < piece; off += 8) {
            int k = piece - off < 8 ? piece - off : 8;
            uint64_t v = write ? load_le(buf + done + off, k) : 0;
            (void)xl_mmio_access(ctx, r, a + (uint64_t)off, k, write, &v);
            if (!write)
                store_le(buf + done + off, v, k);
        }
        done += piece;
    }
}

static uint32_t rw(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                   uint64_t addr, int size, int write, uint8_t *buf)
{
    uint32_t st = XL_OK;
    addr = wrap(c, addr);
    int where = route(ctx, ex, c, addr, size, &st);
    if (where < 0)
        return st;
    if (where == 1) {
        dev_rw(ctx, r, addr, size, write, buf);
        return XL_OK;
    }
    for (int i = 0; i < size; i++) {
        uint64_t off = wrap(c, addr + (uint64_t)i) - c->mem_base;
        if (write)
            c->wmem[off] = buf[i];
        else
            buf[i] = c->mem[off];
    }
    if (write) {
        uint64_t end = addr + (uint64_t)size;
        if (c->wlo >= c->whi || addr < c->wlo)
            c->wlo = addr;
        if (end > c->whi)
            c->whi = end;
    }
    return XL_OK;
}

uint32_t xs2_read(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                  uint64_t addr, int size, uint8_t *buf)
{
    return rw(ctx, ex, c, r, addr, size, 0, buf);
}

uint32_t xs2_write(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                   uint64_t addr, int size, const uint8_t *buf)
{
    return rw(ctx, ex, c, r, addr, size, 1, (uint8_t *)buf);
}

uint32_t xs2_read_u(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                    uint64_t addr, int size, uint64_t *v)
{
    uint8_t b[8] = {0};
    uint32_t st = rw(ctx, ex, c, r, addr, size, 0, b);
    *v = load_le(b, size);
    return st;
}

uint32_t xs2_write_u(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                     uint64_t addr, int size, uint64_t v)
{
    uint8_t b[8];
    store_le(b, v, size);
    return rw(ctx, ex, c, r, addr, size, 1, b);
}
