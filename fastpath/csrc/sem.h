/* Semantics of the full-decode (Capstone) C path beyond the MOV family and MOVS/STOS.
 *
 * Mirrors emu/decode.py + emu/emulate.py (the reference): the same forms, the same refusals, the
 * same device accesses in the same order, the same registers, RFLAGS and next RIP.  The forms
 * are rows of the opcode map (emu/x86-opcode-map.txt, generated into opmap.h), keyed by Capstone
 * instruction id as FORMS in emu/decode.py, one table per C family (sem.c `forms`, sem_<family>.c);
 * each operation class has one executor (sem_alu.c, sem_xchg.c, sem_bit.c, sem_sse.c) and each
 * flags class one helper (xl_add_flags, xl_sub_flags, xl_logic_flags).
 *
 * Every refusal (XL_E_UNSUPPORTED / XL_E_MISMATCH) happens before any device access and leaves
 * the CPU untouched (SEMANTICS rule 5).  Nothing is allocated per exit. */
#ifndef XL_SEM_H
#define XL_SEM_H

#include <stddef.h>
#include <stdint.h>

#include <capstone/capstone.h>

#include "devstate.h"
#include "insn_subset.h"
#include "paths.h"

/* Handle the decoded instruction `insn` (bytes p[0..n) at rip) if its Capstone id is one of the
 * table's forms; XL_NOT_MINE for every other id (the caller's own switch handles those). */
uint32_t xl_sem_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                     const cs_insn *insn, const uint8_t *p, size_t n, uint64_t rip);

/* ---- internal to sem*.c */

/* The operations of the tables of sem.c and sem_<family>.c (binary/unary ALU: sem_alu.c; XCHG/XADD/
 * CMPXCHG: sem_xchg.c; BT*: sem_bit.c; MOVNTI, SSE, LODS: sem_sse.c; CMPS/SCAS: sem_string.c; ...),
 * generated from the opcode map in the order it names them (opmap.h).  Each one's executor and
 * operand shapes come from the map too (XL_OPMAP_XS_SEM): sem.c has no per-operation code. */
enum xl_sem_op { XS_NONE = 0, XL_OPMAP_XS_OPS };

/* One row of a forms table (emu/decode.py Form): sem.c holds the older forms, each issue-14
 * family file (sem_string.c, sem_muldiv.c, ...) its own table, found by its lookup function. */
struct xs_form {
    unsigned id;          /* Capstone instruction id */
    uint8_t op;           /* enum xl_sem_op */
    uint8_t lockable;     /* LOCK allowed with a memory destination */
    uint8_t align16;      /* 16-byte operand must be 16-byte aligned (#GP) */
    uint8_t by_prefix;    /* operand size from 66/REX.W (emu/decode.py _SIZED_BY_PREFIXES) */
    uint8_t cond;         /* CMOVcc/SETcc: the condition code (low nibble of the opcode) */
    uint8_t np;           /* 66/F2/F3 make it #UD ("NP" in the SDM: MOVNTI) */
};

/* A struct xs_form initializer from one row of an opmap.h X-macro (XL_OPMAP_<TABLE>(XS_FORM_ROW)):
 * the tables are generated from emu/x86-opcode-map.txt. */
#define XS_FORM_ROW(id, op, fl, align, cond, pfx) \
    {id, op, !!((fl) & XL_OPMAP_LOCK), !!((fl) & XL_OPMAP_ALIGN16), !!((fl) & XL_OPMAP_SIZED), cond, \
     !!((fl) & XL_OPMAP_NP)},

/* A family's lookup: its row for a Capstone id, or NULL (a switch first: called on every exit). */
typedef const struct xs_form *(*xs_lookup_fn)(unsigned id);
const struct xs_form *xs_string_form(unsigned id);
const struct xs_form *xs_muldiv_form(unsigned id);
const struct xs_form *xs_shift_form(unsigned id);
const struct xs_form *xs_bitscan_form(unsigned id);
const struct xs_form *xs_cond_form(unsigned id);

#define XS_FLAG_CF 0x1ull
#define XS_FLAG_PF 0x4ull
#define XS_FLAG_AF 0x10ull
#define XS_FLAG_ZF 0x40ull
#define XS_FLAG_SF 0x80ull
#define XS_FLAG_DF 0x400ull
#define XS_FLAG_OF 0x800ull
#define XS_STATUS (XS_FLAG_CF | XS_FLAG_PF | XS_FLAG_AF | XS_FLAG_ZF | XS_FLAG_SF | XS_FLAG_OF)

/* One decoded form: the memory operand (in the struct xl_insn fields the MOV family uses) plus
 * what the table and the operands say. */
struct xl_sem {
    struct xl_insn m;     /* disp, base, index, scale, seg, addr_size, len; size = operand size */
    uint64_t imm;         /* masked to the operand size (BT*: the low 8 bits) */
    uint8_t op;           /* enum xl_sem_op */
    uint8_t size;         /* operand size in bytes: 1, 2, 4, 8 or 16 */
    uint8_t mem_is_dest;  /* the memory operand is operand 0 */
    uint8_t has_imm;
    uint8_t has_reg;
    uint8_t reg;          /* GPR number (AH..BH: 0-3 with hi8) or XMM index */
    uint8_t hi8;
    uint8_t reg_size;     /* width of the register operand in bytes */
    uint8_t xmm;          /* the register operand is an XMM register */
    uint8_t rep;
    uint8_t align16;
    uint8_t cond;         /* CMOVcc/SETcc condition code */
    uint8_t repne;        /* CMPS/SCAS: the last of F2/F3 was F2 */
    uint8_t pfx;          /* XS_PFX_*: the 66/F2/F3 prefixes the instruction carries (any order) */
};
#define XS_PFX_66 0x1
#define XS_PFX_F2 0x2
#define XS_PFX_F3 0x4

/* Executors: all checks that can refuse are done by the caller; these only act. */
uint32_t xs_binary(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a);
uint32_t xs_unary(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a);
uint32_t xs_xchg(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a);
/* BT*: a register offset moves the operand; the moved operand must cover the exit's address. */
uint32_t xs_bit(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                const struct xl_sem *s, uint64_t rip);
uint32_t xs_sse(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a);
uint32_t xs_lods(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                 const struct xl_sem *s, uint64_t rip);

/* issue-14 families: one executor per file */
uint32_t xs_strcmp(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                   const cs_insn *insn, const struct xl_sem *s, uint64_t rip);
uint32_t xs_muldiv(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a);
uint32_t xs_shift(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a);
uint32_t xs_bitscan(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a);
uint32_t xs_cond(struct xl_ctx *ctx, struct xl_cpu *c, struct xl_result *r, const struct xl_sem *s, uint64_t a);
/* The x86 condition cc (0..15) on rflags (emu/semantics/core.py condition). */
int xs_condition(int cc, uint64_t rflags);

/* Flags helpers, one per class (emu/emulate.py add_flags / sub_flags / logic_flags). */
uint64_t xl_add_flags(uint64_t a, uint64_t b, uint64_t carry, int size, uint64_t *flags);
uint64_t xl_sub_flags(uint64_t a, uint64_t b, uint64_t borrow, int size, uint64_t *flags);
uint64_t xl_logic_flags(uint64_t r, int size);

/* Shared helpers (sem.c). */
static inline uint64_t xs_mask(int size)
{
    return size >= 8 ? ~0ull : ((1ull << (8 * size)) - 1);
}
/* One device access of at most 8 bytes (recorded in the result's access hash); reads return the value. */
uint64_t xs_dev(struct xl_ctx *ctx, struct xl_result *r, uint64_t gpa, int size, int write, uint64_t value);
/* XL_OK when devices claim every byte of [a, a+size); else XL_E_UNMAPPED with ctx->fault_addr set. */
uint32_t xs_span(struct xl_ctx *ctx, uint64_t a, int size);
/* Capstone operands -> exitlab's register numbers and memory-operand form (defined in paths.c) */
int xl_cs_gpr(unsigned reg, uint8_t *num, uint8_t *hi8);
int xl_cs_mem(const cs_x86_op *op, struct xl_insn *d);
/* 1 when the Capstone instruction id is one of sem.c's forms */
int xl_sem_known(unsigned id);
uint64_t xs_get_reg(struct xl_cpu *c, int num, int hi8, int size);
/* 8/16-bit writes merge, 32-bit writes zero-extend (emu/emulate.py _Exec.set_reg). */
void xs_set_reg(struct xl_cpu *c, int num, int hi8, int size, uint64_t v);
/* Replace the status flags except `keep`. */
void xs_set_status(struct xl_cpu *c, uint64_t flags, uint64_t keep);
/* Linear address of the memory operand with `extra` added to the displacement. */
uint64_t xs_ea(struct xl_cpu *c, const struct xl_sem *s, uint64_t rip, uint64_t extra);
/* XMM access: 0 on success, -1 when the CPU view has no vector registers (replay records). */
int xs_xmm(struct xl_cpu *c, int idx, int write, uint64_t *lo, uint64_t *hi);

/* Return a status other than XL_OK from the calling semantics function (the multi-access families). */
#define XS_TRY(e)               \
    do {                        \
        uint32_t st_ = (e);     \
        if (st_ != XL_OK)       \
            return st_;         \
    } while (0)

#endif

/* ---- the stack, atomics, vector-move and misc families (issue 14, C side part 2):
 * sem_route.c (entry, decode, memory routing), sem_stack.c, sem_atomic.c, sem_vector.c,
 * sem_misc.c.  Each family file has one table of rows keyed by Capstone id; the entry tries the
 * tables in turn before sem.c's (path_capstone calls xl_sem2_exec first). */

/* Handle `insn` if its id is a row of one of the four family tables; XL_NOT_MINE otherwise. */
uint32_t xl_sem2_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                      const cs_insn *insn, const uint8_t *p, size_t n, uint64_t rip);

/* Vector-register numbers for xl_cpu.vec beyond XMM0-15 (idx 0-15, v[0..1]): YMM i (v[0..3], low
 * quadword first), MMX i (v[0]) and CR0 (v[0], read-only; SMSW).  A view without them returns -1. */
#define XS_VEC_YMM 32
#define XS_VEC_MM 64
#define XS_VEC_CR0 96

/* One decoded instruction of the four families: Capstone's operands plus the raw prefixes. */
struct xs2 {
    const cs_insn *insn;
    const cs_x86 *x;
    uint64_t rip, next;   /* next = RIP + length, wrapped at the mode's width */
    struct xl_insn m;     /* the memory operand (if nmem) */
    int nmem, mem_i, mem_size, mem_is_dest;
    int nreg, nimm;
    unsigned reg[4];      /* Capstone register ids, in operand order */
    uint8_t reg_size[4];
    int64_t imm[2];
    uint8_t lock, has66, has_f2f3, opsize, vex, mode;
    uint8_t seg;          /* last segment-override prefix as XL_SEG_* (only FS/GS have a base) */
    uint8_t cs_override;  /* a 2E prefix (the memory operand's segment is CS) */
    uint8_t last_f2f3;    /* the last F2/F3 prefix byte, 0 if none (SSE mandatory prefix) */
};

/* A family: `has` says whether a Capstone id is a row of its table (a switch: every exit of the
 * path asks, MOV exits included); `exec` carries the decoded row out and returns a status (every
 * refusal before any device access and with the CPU untouched, SEMANTICS rule 5). */
typedef int (*xs2_has_fn)(unsigned id);
typedef uint32_t (*xs2_exec_fn)(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                                const struct xs2 *d);
int xs_stack_has(unsigned id);
int xs_atomic_has(unsigned id);
int xs_vector_has(unsigned id);
int xs_misc_has(unsigned id);
uint32_t xs_stack_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                       const struct xs2 *d);
uint32_t xs_atomic_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                        const struct xs2 *d);
uint32_t xs_vector_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                        const struct xs2 *d);
uint32_t xs_misc_exec(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                      const struct xs2 *d);

/* Memory routing of these families (emu/semantics/core.py Exec.plan/read/write): a device access
 * (a claimed address, or the exit's own) is split per device window, then into 8-byte device
 * accesses low address first; a RAM access (live runs) goes to the RAM view.  xs2_probe checks
 * an access that will happen later without doing it: XL_OK, XL_E_UNMAPPED (ctx->fault_addr),
 * XL_E_GP (non-canonical), XL_E_NOMEM (a replay has no RAM) or XL_E_UNSUPPORTED (RAM and a device
 * in one access).  xs2_read/xs2_write do it (size <= 64, buffers little-endian). */
uint32_t xs2_probe(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, uint64_t addr, int size);
uint32_t xs2_read(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                  uint64_t addr, int size, uint8_t *buf);
uint32_t xs2_write(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                   uint64_t addr, int size, const uint8_t *buf);
/* The same for values of at most 8 bytes. */
uint32_t xs2_read_u(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                    uint64_t addr, int size, uint64_t *v);
uint32_t xs2_write_u(struct xl_ctx *ctx, const struct xl_exit *ex, struct xl_cpu *c, struct xl_result *r,
                     uint64_t addr, int size, uint64_t v);
/* Linear address of d->m with `extra` added to the displacement (emu/decode.py effective_address). */
uint64_t xs2_ea(struct xl_cpu *c, const struct xs2 *d, uint64_t extra);
/* 1 when the exit's address lies in [a, a + span) (emu/generic.py _check_address). */
static inline int xs2_covers(const struct xl_exit *ex, uint64_t a, uint64_t span)
{
    return ex->addr - a < span;
}
/* 64-bit mode: bits 63..47 all equal. */
static inline int xs2_canonical(uint64_t a)
{
    uint64_t top = a >> 47;
    return top == 0 || top == 0x1FFFFull;
}
