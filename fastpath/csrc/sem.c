/* The forms table of the full-decode C path and its decode/check/dispatch (see sem.h).
 *
 * The table is generated from the opcode map (emu/x86-opcode-map.txt -> opmap.h), as FORMS in
 * emu/decode.py is; decode applies the same refusals in the
 * same spirit (no memory operand, MMX/AVX/x87 registers, LOCK where #UD, 66/F2/F3 on MOVNTI,
 * 16-bit mode, which the Python generic path does not decode) and sizes GPR operations from the
 * raw prefixes as the CPU does (Capstone mis-sizes some 66+F2/F3 forms). */
#include <string.h>

#include "paths.h"
#include "sem.h"

/* The rows of the core table: the [forms] rows of emu/x86-opcode-map.txt with C table `core`. */
static const struct xs_form forms[] = {XL_OPMAP_CORE(XS_FORM_ROW)};

/* The row for a Capstone id, or NULL.  Called on every exit of the path (MOV exits included), so
 * ids outside the table are turned away by one switch (generated from the same rows), not a scan. */
static const struct xs_form *core_form(unsigned id)
{
    switch (id) {
    XL_OPMAP_CORE_CASES
        break;
    default:
        return NULL;
    }
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
        if (forms[i].id == id)
            return &forms[i];
    return NULL;
}

/* The tables: sem.c's own, then one per family file (append a family's lookup at the end). */
static const xs_lookup_fn families[] = {
    core_form, xs_string_form, xs_muldiv_form, xs_shift_form, xs_bitscan_form, xs_cond_form,
};

static const struct xs_form *find_form(unsigned id)
{
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        const struct xs_form *f = families[i](id);
        if (f)
            return f;
    }
    return NULL;
}

/* ---------------------------------------------------------------- shared helpers */

uint64_t xs_dev(struct xl_ctx *ctx, struct xl_result *r, uint64_t gpa, int size, int write, uint64_t value)
{
    /* the operand's span was checked by xs_span before the first access, so this cannot fault */
    (void)xl_mmio_access(ctx, r, gpa, size, write, &value);
    return value;
}

uint32_t xs_span(struct xl_ctx *ctx, uint64_t a, int size)
{
    uint64_t bad;
    if (!xl_dev_claims(ctx, a) || xl_dev_span(ctx, a, size, &bad))
        return XL_OK;  /* unclaimed start: one unclaimed bus access, as paths.c mmio() */
    ctx->fault_addr = bad;  /* SEMANTICS rule 6: a precise #PF-like stop, nothing done */
    return XL_E_UNMAPPED;
}

uint64_t xs_get_reg(struct xl_cpu *c, int num, int hi8, int size)
{
    return (xl_cpu_get(c, num) >> (hi8 ? 8 : 0)) & xs_mask(size);
}

void xs_set_reg(struct xl_cpu *c, int num, int hi8, int size, uint64_t v)
{
    uint64_t old = xl_cpu_get(c, num);
    switch (size) {
    case 1:
        v = hi8 ? (old & ~0xFF00ull) | ((v & 0xFF) << 8) : (old & ~0xFFull) | (v & 0xFF);
        break;
    case 2:
        v = (old & ~0xFFFFull) | (v & 0xFFFF);
        break;
    case 4:
        v &= 0xFFFFFFFFull;
        break;
    default:
        break;
    }
    xl_cpu_set(c, num, v);
}

void xs_set_status(struct xl_cpu *c, uint64_t flags, uint64_t keep)
{
    uint64_t repl = XS_STATUS & ~keep;
    uint64_t rf = xl_cpu_get(c, XL_RFLAGS);
    xl_cpu_set(c, XL_RFLAGS, (rf & ~repl) | (flags & repl));
}

static inline uint64_t amask(int asize)
{
    return asize == 2 ? 0xFFFFull : (asize == 4 ? 0xFFFFFFFFull : ~0ull);
}

uint64_t xs_ea(struct xl_cpu *c, const struct xl_sem *s, uint64_t rip, uint64_t extra)
{
    const struct xl_insn *m = &s->m;
    uint64_t off = (uint64_t)m->disp + extra;
    if (m->base == XL_BASE_RIP)
        off += (rip + m->len) & (c->mode == 64 ? ~0ull : 0xFFFFFFFFull);
    else if (m->base != XL_NOREG)
        off += xl_cpu_get(c, m->base);
    if (m->index != XL_NOREG)
        off += xl_cpu_get(c, m->index) * m->scale;
    off &= amask(m->addr_size);
    if (m->seg == XL_SEG_FS)
        off += xl_cpu_get(c, XL_FS_BASE);
    else if (m->seg == XL_SEG_GS)
        off += xl_cpu_get(c, XL_GS_BASE);
    return c->mode == 64 ? off : (off & 0xFFFFFFFFull);
}

int xs_xmm(struct xl_cpu *c, int idx, int write, uint64_t *lo, uint64_t *hi)
{
    uint64_t v[2] = {*lo, *hi};
    if (!c->vec || c->vec(c, idx, write, v) < 0)
        return -1;
    *lo = v[0];
    *hi = v[1];
    return 0;
}

/* ---------------------------------------------------------------- decode */

static int xmm_index(unsigned reg)
{
    if (reg >= X86_REG_XMM0 && reg <= X86_REG_XMM15)
        return (int)(reg - X86_REG_XMM0);
    return -1;
}

static inline int legacy_prefix(uint8_t b)
{
    return b == 0xF0 || b == 0xF2 || b == 0xF3 || b == 0x2E || b == 0x36 || b == 0x3E || b == 0x26 ||
           b == 0x64 || b == 0x65 || b == 0x66 || b == 0x67;
}

/* Raw prefix scan (emu/decode.py _prefixes/_operand_size/_legacy_prefixes). */
struct prefixes {
    uint8_t lock, rep, has66, has_f2f3, opsize;
    uint8_t repne;  /* the last of F2/F3 was F2 (the CPU's REPNE for CMPS/SCAS) */
    uint8_t seen;   /* XS_PFX_* of every 66/F2/F3 prefix (struct xl_sem pfx) */
};

static void scan_prefixes(const uint8_t *p, size_t n, int mode, struct prefixes *pf)
{
    uint8_t rex = 0;
    memset(pf, 0, sizeof(*pf));
    for (size_t i = 0; i < n && i < XL_MAX_INSN; i++) {
        uint8_t b = p[i];
        if (legacy_prefix(b)) {
            pf->lock |= b == 0xF0;
            pf->rep |= b == 0xF2 || b == 0xF3;
            pf->has_f2f3 |= b == 0xF2 || b == 0xF3;
            if (b == 0xF2 || b == 0xF3)
                pf->repne = b == 0xF2;
            pf->has66 |= b == 0x66;
            pf->seen |= b == 0x66 ? XS_PFX_66 : b == 0xF2 ? XS_PFX_F2 : b == 0xF3 ? XS_PFX_F3 : 0;
            rex = 0;
        } else if (mode == 64 && (b & 0xF0) == 0x40) {
            rex = b;
        } else {
            break;
        }
    }
    pf->opsize = (rex & 0x8) ? 8 : (pf->has66 ? 2 : 4);
}

static int is_other_vector_reg(unsigned reg)
{
    return (reg >= X86_REG_MM0 && reg <= X86_REG_MM7) || (reg >= X86_REG_YMM0 && reg <= X86_REG_YMM31) ||
           (reg >= X86_REG_ZMM0 && reg <= X86_REG_ZMM31) || (reg >= X86_REG_K0 && reg <= X86_REG_K7) ||
           (reg >= X86_REG_ST0 && reg <= X86_REG_ST7) || reg == X86_REG_FP0 || reg == X86_REG_FP1 ||
           reg == X86_REG_FP2 || reg == X86_REG_FP3 || reg == X86_REG_FP4 || reg == X86_REG_FP5 ||
           reg == X86_REG_FP6 || reg == X86_REG_FP7 || (reg >= X86_REG_XMM16 && reg <= X86_REG_XMM31);
}

int xl_sem_known(unsigned id)
{
    return find_form(id) != NULL;
}

/* ---------------------------------------------------------------- executors */

/* One call of an executor: everything any of them takes (sem.h declares each with its own). */
struct xs_call {
    struct xl_ctx *ctx;
    const struct xl_exit *ex;
    struct xl_cpu *c;
    struct xl_result *r;
    const cs_insn *insn;
    const struct xl_sem *s;
    uint64_t rip, a;  /* a = the memory operand's linear address (unset for `string` ops) */
};
typedef uint32_t (*xs_exec_fn)(const struct xs_call *k);

/* One adapter per executor named in the map's [ops] `exec` column (a new family's executor adds
 * one line here; a new operation of an existing family adds none). */
static uint32_t exec_binary(const struct xs_call *k) { return xs_binary(k->ctx, k->c, k->r, k->s, k->a); }
static uint32_t exec_unary(const struct xs_call *k) { return xs_unary(k->ctx, k->c, k->r, k->s, k->a); }
static uint32_t exec_xchg(const struct xs_call *k) { return xs_xchg(k->ctx, k->c, k->r, k->s, k->a); }
static uint32_t exec_bit(const struct xs_call *k) { return xs_bit(k->ctx, k->ex, k->c, k->r, k->s, k->rip); }
static uint32_t exec_sse(const struct xs_call *k) { return xs_sse(k->ctx, k->c, k->r, k->s, k->a); }
static uint32_t exec_lods(const struct xs_call *k) { return xs_lods(k->ctx, k->ex, k->c, k->r, k->s, k->rip); }
static uint32_t exec_strcmp(const struct xs_call *k)
{
    return xs_strcmp(k->ctx, k->ex, k->c, k->r, k->insn, k->s, k->rip);
}
static uint32_t exec_muldiv(const struct xs_call *k) { return xs_muldiv(k->ctx, k->c, k->r, k->s, k->a); }
static uint32_t exec_shift(const struct xs_call *k) { return xs_shift(k->ctx, k->c, k->r, k->s, k->a); }
static uint32_t exec_bitscan(const struct xs_call *k) { return xs_bitscan(k->ctx, k->c, k->r, k->s, k->a); }
static uint32_t exec_cond(const struct xs_call *k) { return xs_cond(k->ctx, k->c, k->r, k->s, k->a); }

/* Per operation (enum xl_sem_op): its executor and the operand shapes it takes (XL_SHAPE_*), both
 * from the map's [ops] rows (opmap.h XL_OPMAP_XS_SEM). */
static const struct {
    xs_exec_fn exec;
    unsigned shape;
} sem_ops[] = {
#define XS_SEM_ROW(op, fn, shape) [op] = {exec_##fn, shape},
    XL_OPMAP_XS_SEM(XS_SEM_ROW)
#undef XS_SEM_ROW
};

/* ---------------------------------------------------------------- entry */

uint32_t xl_sem_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                     const cs_insn *insn, const uint8_t *p, size_t n, uint64_t rip)
{
    const struct xs_form *f = find_form(insn->id);
    if (!f)
        return XL_NOT_MINE;
    /* emu/decode.py decodes 32- and 64-bit code only; the in-place hook (one element per call,
     * Unicorn doing the rest) cannot carry a read-modify-write: refuse both, as before. */
    if ((c->mode != 64 && c->mode != 32) || (c->flags & XL_CPU_ONE_ELEMENT))
        return XL_E_UNSUPPORTED;
    if (f->op >= sizeof(sem_ops) / sizeof(sem_ops[0]) || !sem_ops[f->op].exec)
        return XL_E_UNSUPPORTED;  /* not reachable: every operation of the tables has a row */
    const unsigned shape = sem_ops[f->op].shape;
    const cs_x86 *x = &insn->detail->x86;
    const cs_x86_op *o = x->operands;
    struct xl_sem s;
    memset(&s, 0, sizeof(s));
    s.op = f->op;
    s.cond = f->cond;
    s.m.len = (uint8_t)insn->size;
    s.m.addr_size = x->addr_size;
    size_t raw_n = insn->size < n ? insn->size : n;
    struct prefixes pf;
    scan_prefixes(p, raw_n, c->mode, &pf);
    s.pfx = pf.seen;
    struct xs_call k = {ctx, ex, c, r, insn, &s, rip, 0};
    if (shape & XL_SHAPE_OWNOPS) {
        /* two memory operands (CMPS) or ES:[rdi] and the accumulator (SCAS): the executor decodes */
        if (pf.lock)
            return XL_E_UNSUPPORTED;  /* LOCK CMPS/SCAS is #UD */
        s.rep = pf.rep;
        s.repne = pf.repne;
        if (ex->kind != XL_MMIO_READ && ex->kind != XL_MMIO_WRITE)
            return XL_E_KIND;
        return sem_ops[f->op].exec(&k);
    }
    int nmem = 0, mem_i = -1, reg_i = -1;
    for (int i = 0; i < x->op_count; i++) {
        if (o[i].type == X86_OP_MEM) {
            nmem++;
            if (mem_i < 0)
                mem_i = i;
        } else if (o[i].type == X86_OP_REG) {
            if (is_other_vector_reg(o[i].reg))
                return XL_E_UNSUPPORTED;  /* MMX/AVX/x87 register */
            if (reg_i < 0)
                reg_i = i;
        } else if (o[i].type == X86_OP_IMM && !s.has_imm) {
            s.has_imm = 1;
            s.imm = (uint64_t)o[i].imm;
        }
    }
    if (nmem != 1)
        return XL_E_UNSUPPORTED;  /* no memory operand (or two: not a form of the table) */
    if (xl_cs_mem(&o[mem_i], &s.m) < 0)
        return XL_E_UNSUPPORTED;
    if (shape & XL_SHAPE_STRING) {
        /* LODS: the executor walks the elements (and the REP count) itself */
        if (pf.lock)
            return XL_E_UNSUPPORTED;  /* LOCK LODS is #UD */
        s.size = o[mem_i].size;
        s.rep = pf.rep;
        if (ex->kind != XL_MMIO_READ && ex->kind != XL_MMIO_WRITE)
            return XL_E_KIND;
        return sem_ops[f->op].exec(&k);
    }
    s.mem_is_dest = mem_i == 0;
    s.size = o[mem_i].size;
    if (f->by_prefix && (s.size == 2 || s.size == 4 || s.size == 8))
        s.size = pf.opsize;
    if (f->np && (pf.has66 || pf.has_f2f3))
        return XL_E_UNSUPPORTED;  /* NP (the map's np: MOVNTI): 66/F2/F3 make it #UD */
    if (s.has_imm)
        s.imm &= (shape & XL_SHAPE_IMM8) ? 0xFF : xs_mask(s.size);  /* bit offsets and shift counts: imm8 */
    if (reg_i >= 0) {
        s.has_reg = 1;
        s.reg_size = o[reg_i].size;
        int xi = xmm_index(o[reg_i].reg);
        if (xi >= 0) {
            s.xmm = 1;
            s.reg = (uint8_t)xi;
        } else if (xl_cs_gpr(o[reg_i].reg, &s.reg, &s.hi8) < 0) {
            return XL_E_UNSUPPORTED;  /* e.g. a segment register */
        }
    }
    if ((shape & XL_SHAPE_XMM) ? !(s.has_reg && s.xmm) : s.xmm)
        return XL_E_UNSUPPORTED;
    if (pf.lock && !(f->lockable && s.mem_is_dest))
        return XL_E_UNSUPPORTED;  /* LOCK is #UD here */
    /* the operand shapes of the op (the map's [ops]): any other shape Capstone gives is not a form */
    if ((shape & XL_SHAPE_NEEDREG) && !s.has_reg)
        return XL_E_UNSUPPORTED;
    if ((shape & XL_SHAPE_REGORIMM) && !s.has_reg && !s.has_imm)
        return XL_E_UNSUPPORTED;
    if ((shape & XL_SHAPE_MEMDST) && !s.mem_is_dest)
        return XL_E_UNSUPPORTED;
    if ((shape & XL_SHAPE_MEMSRC) && s.has_reg && s.mem_is_dest)
        return XL_E_UNSUPPORTED;
    s.align16 = f->align16 && s.size == 16;
    if (ex->kind != XL_MMIO_READ && ex->kind != XL_MMIO_WRITE)
        return XL_E_KIND;

    /* The decoded operand must be the one that exited (emu/generic.py _check_address); BT* with a
     * register offset moves the operand, checked by xs_bit at the moved address. */
    uint64_t a = xs_ea(c, &s, rip, 0);
    int span = s.size ? s.size : 1;
    int bit_reg = (shape & XL_SHAPE_BITREG) && !s.has_imm;
    if (!bit_reg && ex->addr - a >= (uint64_t)span)
        return XL_E_MISMATCH;
    if (s.align16 && (a & 15))
        return XL_E_UNSUPPORTED;  /* #GP: misaligned 16-byte operand */
    /* an operand running off its window into unmapped space faults before any access (rule 6);
     * one crossing into a neighbouring device is split per device by xs_dev (rule 4) */
    if (!bit_reg && xs_span(ctx, a, span) != XL_OK)
        return XL_E_UNMAPPED;
    if (s.size > 8 && s.size != 16)
        return XL_E_UNSUPPORTED;

    k.a = a;
    uint32_t st = sem_ops[f->op].exec(&k);
    if (st == XL_OK)
        r->next_rip = (rip + s.m.len) & (c->mode == 64 ? ~0ull : 0xFFFFFFFFull);
    return st;
}
