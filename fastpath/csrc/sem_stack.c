/* PUSH, POP, CALL, JMP through memory, RET, LEAVE, ENTER (emu/semantics/stack.py, emu/decode.py
 * _decode_stack): the instructions whose memory is (also) the stack.
 *
 * They reach the path when the stack sits in a device (every push/pop is a device access) or an
 * explicit operand does (PUSH m, POP m, CALL/JMP through a pointer in a device).  Every access of
 * the instruction is probed before the first (a fault leaves the state untouched); the device
 * sees them in QEMU's order: PUSH m reads the operand then writes the stack, CALL m reads the
 * pointer then pushes, POP m reads the stack then writes the operand, whose address is computed
 * with the incremented RSP.  ENTER follows QEMU's gen_enter.  Element size: 8 in 64-bit mode
 * (2 under 66 without REX.W for PUSH/POP/LEAVE), 4 in 32-bit mode; 66 on CALL/JMP/RET/ENTER is
 * refused (16-bit IP).  A non-canonical branch target is #GP before anything is pushed. */
#include "paths.h"
#include "sem.h"

enum { XL_OPMAP_ST_OPS };  /* ST_PUSH, ST_POP, ... (opmap.h) */

/* The family's table: Capstone id -> operation (the [forms] rows of emu/x86-opcode-map.txt with C
 * table `stack`; no66 from the op's class). */
#define ROW(id, op, fl, align, cond, pfx) {id, op, !!((fl) & XL_OPMAP_NO66)},
static const struct {
    unsigned id;
    uint8_t op;
    uint8_t no66;  /* operand-size override refused (16-bit IP/frame) */
} rows[] = {XL_OPMAP_STACK(ROW)};
#undef ROW

int xs_stack_has(unsigned id)
{
    switch (id) {
    XL_OPMAP_STACK_CASES
        return 1;
    default:
        return 0;
    }
}

#define RSP 4
#define RBP 5

static inline uint64_t msk(int size)
{
    return size >= 8 ? ~0ull : ((1ull << (8 * size)) - 1);
}

/* Write a GPR of `size` bytes (8/16-bit merge, 32-bit zero-extends). */
static void set_gpr(struct xl_cpu *c, int num, int hi8, int size, uint64_t v)
{
    xs_set_reg(c, num, hi8, size, v);
}

static uint32_t target(const struct xs2 *d, uint64_t t, uint64_t *out)
{
    t &= d->mode == 64 ? ~0ull : 0xFFFFFFFFull;
    if (d->mode == 64 && !xs2_canonical(t))
        return XL_E_GP;  /* non-canonical branch target: #GP on the branch */
    *out = t;
    return XL_OK;
}

uint32_t xs_stack_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                       const struct xs2 *d)
{
    int op = -1, no66 = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].id == d->insn->id) {
            op = rows[i].op;
            no66 = rows[i].no66;
        }
    if (op < 0)
        return XL_NOT_MINE;
    if (d->lock)
        return XL_E_UNSUPPORTED;  /* LOCK is #UD on all of them */
    if (no66 && d->has66)
        return XL_E_UNSUPPORTED;  /* 16-bit IP/frame (Intel and AMD differ in 64-bit mode) */
    if ((op == ST_CALL || op == ST_JMP) && d->x->opcode[0] == 0xFF && ((d->x->modrm >> 3) & 7) != 2 &&
        ((d->x->modrm >> 3) & 7) != 4)
        return XL_E_UNSUPPORTED;  /* FF /3, FF /5: far CALL/JMP m16:32 (Capstone names them CALL/JMP) */
    int width = d->mode == 64 ? 8 : 4;
    uint64_t am = msk(width);
    int explicit_mem = d->nmem == 1 && (op == ST_PUSH || op == ST_POP || op == ST_CALL || op == ST_JMP);
    if (d->nmem > 1 || (d->nmem == 1 && !explicit_mem))
        return XL_E_UNSUPPORTED;
    if (op == ST_JMP && !explicit_mem)
        return XL_E_UNSUPPORTED;  /* JMP rel / JMP reg: no memory operand */
    /* the register operand (PUSH/POP/CALL r): a GPR (not a segment register) */
    uint8_t rnum = 0, rhi = 0;
    int rsize = 0, has_reg = 0;
    if (d->nreg) {
        if (d->nreg > 1 || xl_cs_gpr(d->reg[0], &rnum, &rhi) < 0)
            return XL_E_UNSUPPORTED;
        has_reg = 1;
        rsize = d->reg_size[0];
    }
    /* element size: 2 under 66, else the stack width -- but REX.W wins over 66 in 64-bit mode
     * (`66 48 ff 30` is PUSH m64: SDM vol. 1 table 3-4, iced-x86; Capstone says word; found by
     * `exitlab fuzz --family stack`; emu/decode.py _stack_size) */
    int n = (d->has66 && d->opsize != 8) ? 2 : width;
    if (n != 2 && n != 4 && n != 8)
        return XL_E_UNSUPPORTED;
    uint64_t sp = xl_cpu_get(c, RSP) & am;
    uint64_t src = explicit_mem ? xs2_ea(c, d, 0) : 0;

    /* the decoded operand must be the one that exited (emu/generic.py _check_address): the explicit
     * operand, or the stack slot, full width (CALL m pushes a full-width return address) */
    if (op != ST_ENTER && op != ST_LEAVE) {
        int down = op == ST_PUSH || op == ST_CALL;
        uint64_t span = (uint64_t)(n > 8 ? n : 8);
        uint64_t slot = (sp - (down ? (uint64_t)n : 0)) & am;
        if (!(explicit_mem && xs2_covers(ex, src, span)) && !xs2_covers(ex, slot, span))
            return XL_E_MISMATCH;
    }
    /* outside 64-bit mode a write through a CS override is #GP (POP m is the only writer here) */
    if (d->mode != 64 && explicit_mem && op == ST_POP && d->cs_override)
        return XL_E_GP;

    uint64_t v, t, frame;
    switch (op) {
    case ST_PUSH: {
        uint64_t slot = (sp - (uint64_t)n) & am;
        if (explicit_mem)
            XS_TRY(xs2_probe(ctx, ex, c, src, n));
        XS_TRY(xs2_probe(ctx, ex, c, slot, n));
        if (explicit_mem)
            xs2_read_u(ctx, ex, c, r, src, n, &v);
        else if (has_reg)
            v = xs_get_reg(c, rnum, rhi, rsize);
        else
            v = (uint64_t)d->imm[0] & msk(n);
        xs2_write_u(ctx, ex, c, r, slot, n, v);
        set_gpr(c, RSP, 0, width, slot);
        return XL_OK;
    }
    case ST_POP: {
        uint64_t new_sp = (sp + (uint64_t)n) & am;
        if (!explicit_mem) {
            if (!has_reg)
                return XL_E_UNSUPPORTED;
            XS_TRY(xs2_probe(ctx, ex, c, sp, n));
            xs2_read_u(ctx, ex, c, r, sp, n, &v);
            set_gpr(c, RSP, 0, width, new_sp);
            set_gpr(c, rnum, rhi, rsize, v);
            r->wb = xl_cpu_get(c, rnum);
            return XL_OK;
        }
        /* the destination's address with the incremented RSP (SDM: POP with an RSP-based operand) */
        uint64_t old = xl_cpu_get(c, RSP);
        c->regs[RSP] = new_sp;
        uint64_t dst = xs2_ea(c, d, 0);
        c->regs[RSP] = old;
        XS_TRY(xs2_probe(ctx, ex, c, sp, n));
        XS_TRY(xs2_probe(ctx, ex, c, dst, n));
        xs2_read_u(ctx, ex, c, r, sp, n, &v);
        xs2_write_u(ctx, ex, c, r, dst, n, v);
        set_gpr(c, RSP, 0, width, new_sp);
        return XL_OK;
    }
    case ST_CALL: {
        uint64_t slot = (sp - (uint64_t)width) & am;
        if (has_reg) {
            t = xs_get_reg(c, rnum, rhi, rsize);
        } else if (!explicit_mem) {
            if (!d->nimm)
                return XL_E_UNSUPPORTED;
            t = (uint64_t)d->imm[0];
        } else {
            XS_TRY(xs2_probe(ctx, ex, c, src, n));
            XS_TRY(xs2_probe(ctx, ex, c, slot, width));
            /* the target is checked after the pointer is read: a non-canonical one is #GP with the
             * read done (as the Python path: the read, then _target) */
            uint64_t ptr;
            xs2_read_u(ctx, ex, c, r, src, n, &ptr);
            XS_TRY(target(d, ptr, &t));
            xs2_write_u(ctx, ex, c, r, slot, width, d->next);
            set_gpr(c, RSP, 0, width, slot);
            r->next_rip = t;
            return XL_OK;
        }
        XS_TRY(target(d, t, &t));
        XS_TRY(xs2_probe(ctx, ex, c, slot, width));
        xs2_write_u(ctx, ex, c, r, slot, width, d->next);
        set_gpr(c, RSP, 0, width, slot);
        r->next_rip = t;
        return XL_OK;
    }
    case ST_JMP:
        XS_TRY(xs2_probe(ctx, ex, c, src, n));
        xs2_read_u(ctx, ex, c, r, src, n, &v);
        XS_TRY(target(d, v, &t));
        r->next_rip = t;
        return XL_OK;
    case ST_RET: {
        uint64_t imm = d->nimm ? ((uint64_t)d->imm[0] & 0xFFFF) : 0;
        XS_TRY(xs2_probe(ctx, ex, c, sp, n));
        xs2_read_u(ctx, ex, c, r, sp, n, &v);
        XS_TRY(target(d, v, &t));
        set_gpr(c, RSP, 0, width, (sp + (uint64_t)n + imm) & am);
        r->next_rip = t;
        return XL_OK;
    }
    case ST_LEAVE:
        /* RSP = RBP, then pop RBP (BP under 66) */
        frame = xl_cpu_get(c, RBP) & am;
        XS_TRY(xs2_probe(ctx, ex, c, frame, n));
        xs2_read_u(ctx, ex, c, r, frame, n, &v);
        set_gpr(c, RSP, 0, width, (frame + (uint64_t)n) & am);
        set_gpr(c, RBP, 0, n, v);
        r->wb = xl_cpu_get(c, RBP);
        return XL_OK;
    default: { /* ENTER imm16, level: QEMU's gen_enter order */
        if (d->nimm != 2)
            return XL_E_UNSUPPORTED;
        uint64_t alloc = (uint64_t)d->imm[0] & 0xFFFF;
        int level = (int)(d->imm[1] & 31);
        uint64_t bp = xl_cpu_get(c, RBP) & am;
        frame = (sp - (uint64_t)n) & am;
        XS_TRY(xs2_probe(ctx, ex, c, frame, n));
        for (int i = 1; i < level; i++) {
            XS_TRY(xs2_probe(ctx, ex, c, (bp - (uint64_t)(n * i)) & am, n));
            XS_TRY(xs2_probe(ctx, ex, c, (frame - (uint64_t)(n * i)) & am, n));
        }
        if (level)
            XS_TRY(xs2_probe(ctx, ex, c, (frame - (uint64_t)(n * level)) & am, n));
        xs2_write_u(ctx, ex, c, r, frame, n, xl_cpu_get(c, RBP));
        for (int i = 1; i < level; i++) {
            xs2_read_u(ctx, ex, c, r, (bp - (uint64_t)(n * i)) & am, n, &v);
            xs2_write_u(ctx, ex, c, r, (frame - (uint64_t)(n * i)) & am, n, v);
        }
        if (level)
            xs2_write_u(ctx, ex, c, r, (frame - (uint64_t)(n * level)) & am, n, frame);
        set_gpr(c, RBP, 0, width, frame);
        set_gpr(c, RSP, 0, width, (frame - alloc - (uint64_t)(n * level)) & am);
        return XL_OK;
    }
    }
}
