/* CMPS and SCAS with REPE/REPNE (see sem.h); emu/semantics/string.py is the reference, the REP
 * machinery the one of MOVS/STOS (paths.c exec_string) and LODS (sem_sse.c).
 *
 * CMPS compares DS:[rSI] (segment overridable) with ES:[rDI], reading the source first (the SDM's
 * operand order; Unicorn reads ES:[rDI] first: docs/known-discrepancies.md
 * unicorn-cmps-reads-rdi-first); SCAS compares the accumulator with ES:[rDI].  Flags as SUB.
 * Each element is probed whole (both operands) before its first access, so a fault (SEMANTICS
 * rule 6) leaves that element undone and the earlier ones done.  With REP, rCX (ECX/CX under
 * the address size) counts down after each element and REPE stops early when ZF=0, REPNE when
 * ZF=1 (the last of F2/F3 decides).  At most c->max_iter elements (the remaining budget, SEMANTICS
 * rules 1 and 8) run per exit; then RIP stays on the instruction. */
#include "sem.h"

/* The family's rows: the [forms] rows of emu/x86-opcode-map.txt with C table `string`. */
static const struct xs_form rows[] = {XL_OPMAP_STRING(XS_FORM_ROW)};

const struct xs_form *xs_string_form(unsigned id)
{
    switch (id) {
    XL_OPMAP_STRING_CASES
        break;
    default:
        return NULL;
    }
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].id == id)
            return &rows[i];
    return NULL;
}

/* rSI/rDI/rCX at the address size: 32-bit writes zero-extend, 16-bit writes merge */
static void step_reg(struct xl_cpu *c, int num, int asz, uint64_t step)
{
    xs_set_reg(c, num, 0, asz, xs_get_reg(c, num, 0, asz) + step);
}

uint32_t xs_strcmp(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                   const cs_insn *insn, const struct xl_sem *s0, uint64_t rip)
{
    const cs_x86 *x = &insn->detail->x86;
    struct xl_sem dst = *s0, src = *s0;
    int have_dst = 0, have_src = 0, size = 0;
    for (int i = 0; i < x->op_count; i++) {
        const cs_x86_op *o = &x->operands[i];
        if (o->type != X86_OP_MEM)
            continue;
        unsigned b = o->mem.base;
        int is_di = b == X86_REG_RDI || b == X86_REG_EDI || b == X86_REG_DI;
        int is_si = b == X86_REG_RSI || b == X86_REG_ESI || b == X86_REG_SI;
        struct xl_sem *t = is_di ? &dst : is_si ? &src : NULL;
        if (!t || xl_cs_mem(o, &t->m) < 0)
            return XL_E_UNSUPPORTED;
        t->m.len = (uint8_t)insn->size;
        t->m.addr_size = x->addr_size;
        have_dst |= is_di;
        have_src |= is_si;
        size = o->size;
    }
    int cmps = s0->op == XS_CMPS;
    if (!have_dst || have_src != cmps || (size != 1 && size != 2 && size != 4 && size != 8))
        return XL_E_UNSUPPORTED;
    int asz = x->addr_size;
    uint64_t next = (rip + insn->size) & (c->mode == 64 ? ~0ull : 0xFFFFFFFFull);
    uint64_t count = s0->rep ? xs_get_reg(c, 1, 0, asz) : 1;
    c->iters = 0;
    if (count == 0) {
        r->next_rip = next;
        return XL_OK;
    }
    /* the exit's address must be one of the first element's operands (emu/generic.py) */
    if (ex->addr - xs_ea(c, &dst, rip, 0) >= (uint64_t)size &&
        (!cmps || ex->addr - xs_ea(c, &src, rip, 0) >= (uint64_t)size))
        return XL_E_MISMATCH;
    uint64_t step = (xl_cpu_get(c, XL_RFLAGS) & XS_FLAG_DF) ? (uint64_t)-(int64_t)size : (uint64_t)size;
    uint64_t n = c->max_iter && count > c->max_iter ? c->max_iter : count;
    uint64_t k;
    uint32_t st = XL_OK;
    int early = 0;
    for (k = 0; k < n; k++) {
        if ((k & (XL_STOP_POLL - 1)) == XL_STOP_POLL - 1 && c->stop_flag && *c->stop_flag)
            break;  /* interrupted between two iterations, as hardware interrupts a REP */
        uint64_t da = xs_ea(c, &dst, rip, 0), sa = 0, lhs, rhs = 0, flags;
        if (cmps) {
            sa = xs_ea(c, &src, rip, 0);
            st = xl_str_check(ctx, ex, c, sa, size);
            if (st == XL_OK)
                st = xl_str_check(ctx, ex, c, da, size);
            if (st == XL_OK)
                st = xl_str_access(ctx, ex, c, r, sa, size, 0, &lhs);
        } else {
            lhs = xs_get_reg(c, 0, 0, size);
            st = xl_str_check(ctx, ex, c, da, size);
        }
        if (st == XL_OK)
            st = xl_str_access(ctx, ex, c, r, da, size, 0, &rhs);
        if (st != XL_OK)
            break;  /* earlier iterations stay done; this one did nothing architectural */
        xl_sub_flags(lhs & xs_mask(size), rhs & xs_mask(size), 0, size, &flags);
        xs_set_status(c, flags, 0);
        if (cmps)
            step_reg(c, 6, asz, step);
        step_reg(c, 7, asz, step);
        if (s0->rep) {
            xs_set_reg(c, 1, 0, asz, count - k - 1);
            if (!!(flags & XS_FLAG_ZF) == !!s0->repne) {
                early = 1;  /* REPE found a difference, REPNE a match */
                k++;
                break;
            }
        }
    }
    /* REP entries as the budget counts them (paths.c exec_string): one per element, and one more
     * that finds rCX = 0; an early REPE/REPNE exit leaves from the element's own entry */
    c->iters = k;
    int done = early || k == count;
    if (done && s0->rep && !early) {
        if (c->max_iter && c->max_iter <= k)
            done = 0;
        else
            c->iters = k + 1;
    }
    if (st != XL_OK)
        return st;
    r->next_rip = done ? next : rip;
    return XL_OK;
}
