/* The instruction-length function's common-case fast path, inlinable (see insn_subset.h for the
 * contract of xl_insn_length).
 *
 * Most real instructions have no legacy prefix, at most a REX, and an opcode of the one-byte or 0F
 * map whose length is ModRM/SIB/displacement plus an immediate fixed by the opcode.  For those the
 * length is one opcode-class entry plus one ModRM entry:
 *
 *   - xl_lt.op[ctx][mode][map][opcode] (64 bits): opcode + immediate bytes, a ModRM mask, and in
 *     the high 32 bits the ModRM (mod, reg) forms that exist (all of them when there is no ModRM;
 *     none for what is not the common case, so that one test is both the validity check and the
 *     "needs the other path" bit); after a REX the one-byte map is xl_lt.op_rex, where B8+r (whose
 *     immediate grows with REX.W) is not the common case;
 *   - xl_lt.ml[addressing][ModRM | (SIB & 7) << 8] (16 bits): ModRM + SIB + displacement bytes
 *     (the SIB's base = 5 rule folded in), and in the high byte 32 + (mod, reg), the bit of the
 *     opcode entry that says whether that form exists.
 *
 * The walk is one serial chain (each instruction starts where the previous one ends) and real code
 * mixes REX / no REX, 0F / one-byte, ModRM / none unpredictably, so the fast path does not find the
 * opcode first and then look it up: it looks up the four places the opcode can be (p[0], p[1] after
 * REX or 0F, p[2] after REX 0F) and the three places the ModRM can be, all at once, and selects with
 * conditional moves.  Two table loads deep, no data-dependent branch.  One segment / 66 / F3 / F2
 * prefix then the common case: the same lookup on that prefix context's tables, inline.  Several
 * prefixes, groups whose immediate depends on ModRM.reg (F6/F7) and B8+r after a REX: an
 * out-of-line path over the same tables (xl_len_other64 and the like).  Everything else -- LOCK, 67,
 * two different 66 / F3 / F2, VEX/EVEX, 0F38/0F3A, mandatory-prefix and ModRM-form rules, fewer
 * than 15 bytes available -- the full walk, xl_insn_length_slow().
 *
 * The tables are generated (fastpath/csrc/len_fast.h, by fastpath/csrc/gen_len_fast.py) from the
 * full walk's own tables and by probing the full walk (xl_len_derive, insn_subset.c), so the two
 * cannot drift: tests/test_len_fast.py derives them again and compares, and the ASan driver and
 * tests/test_c_length_real.py check that the fast path and the full walk agree.
 */
#ifndef XL_INSN_LENGTH_H
#define XL_INSN_LENGTH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* xl_lt.op entry (bits 16-23 are 0 in a common-case entry, so (entry >> 8) & ModRM entry is the
 * ModRM length or 0) */
#define XL_O_BASE 0xFFull          /* opcode byte + immediate bytes */
#define XL_O_MODRM (0xFFull << 8)  /* ModRM mask: a ModRM follows (and with the ModRM entry) */
#define XL_O_KIND_SHIFT 16         /* bits 16-18: what an entry without forms is (0 in the others) */
#define XL_O_GRP_SHIFT 19          /* bits 19-23: group index (XL_K_GRP) */
#define XL_O_FORMS_SHIFT 32        /* bits 32-63: the (mod, reg) forms that exist */
enum {
    XL_K_PLAIN = 0, /* the common case (forms given) */
    XL_K_SLOW = 1,  /* the full walk */
    XL_K_GRP = 2,   /* immediate per (mod, reg): xl_lt.grp */
    XL_K_REX = 3,   /* one-byte map, 64-bit mode */
    XL_K_ESC = 4,   /* 0F */
    XL_K_PREFIX = 5, /* a legacy prefix */
    XL_K_IMMV = 6    /* after a REX: B8+r, whose immediate is 8 bytes with REX.W */
};
#define XL_G_SLOW 0x80 /* xl_lt.grp: that form takes the full walk */
#define XL_NGRP 32

/* prefix classes (xl_lt.pfx) */
enum { XL_P_OP = 0, XL_P_SEG = 1, XL_P_66 = 2, XL_P_F3 = 3, XL_P_F2 = 4, XL_P_REX = 5, XL_P_SLOW = 6 };

struct xl_len_tables {
    /* [context: 0 no prefix, 1 66, 2 F3, 3 F2][mode index 0/1/2: 16/32/64-bit][map: 0 one-byte,
     * 1 0F][opcode] */
    uint64_t op[4][3][2][256];
    /* [context][mode index][opcode]: the one-byte map after a REX (64-bit mode): as op[..][0] but
     * B8+r is XL_K_IMMV, so that REX.W need not be looked at on the common path */
    uint64_t op_rex[4][3][256];
    /* [0: 32/64-bit addressing, 1: 16-bit][ModRM | (SIB & 7) << 8]: length | (32 + ModRM >> 3) << 8 */
    uint16_t ml[2][2048];
    /* [mode index][byte]: prefix class */
    uint8_t pfx[3][256];
    /* [context][mode index][group][ModRM >> 3 (mod, reg)]: immediate bytes, or XL_G_SLOW */
    uint8_t grp[4][3][XL_NGRP][32];
};
#if defined(__GNUC__)
/* hidden: one shared object, so the tables are addressed directly, not through the GOT */
__attribute__((visibility("hidden")))
#endif
extern const struct xl_len_tables xl_lt;
/* The tables derived afresh (gen_len_fast.py writes them out; the tests compare), and the compiled-in
 * ones. */
void xl_len_derive(struct xl_len_tables *t);
const struct xl_len_tables *xl_len_tables_compiled(void);

int xl_insn_length_slow(const uint8_t *p, size_t n, int mode);
/* Not the common case: legacy prefixes, groups, the full walk (insn_subset.c), per mode. */
int xl_len_other16(const uint8_t *p, size_t n);
int xl_len_other32(const uint8_t *p, size_t n);
int xl_len_other64(const uint8_t *p, size_t n);

static inline unsigned xl_ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* The selects below as conditional moves, several on one flag: compilers turn such selects into
 * branches, and on real code those would mispredict. */
#if defined(__GNUC__) && defined(__x86_64__)
/* if (C) { *A0 = A1; *B0 = B1; *C0 = C1; *D0 = D1; *X0 = X1; } */
#define XL_SEL5(C, A0, A1, B0, B1, C0, C1, D0, D1, X0, X1)                                          \
    __asm__("testq %[c], %[c]\n\tcmovneq %[a1], %[a0]\n\tcmovneq %[b1], %[b0]\n\t"                  \
            "cmovneq %[c1], %[c0]\n\tcmovneq %[d1], %[d0]\n\tcmovneq %[x1], %[x0]"                   \
            : [a0] "+r"(A0), [b0] "+r"(B0), [c0] "+r"(C0), [d0] "+r"(D0), [x0] "+r"(X0)            \
            : [c] "r"(C), [a1] "r"(A1), [b1] "r"(B1), [c1] "r"(C1), [d1] "r"(D1), [x1] "r"(X1)      \
            : "cc")
/* if (X == 0x0F) { *A0 = A1; *B0 = B1; } */
#define XL_SEL2_0F(X, A0, A1, B0, B1)                                                                \
    __asm__("cmpq $15, %[x]\n\tcmoveq %[a1], %[a0]\n\tcmoveq %[b1], %[b0]"                          \
            : [a0] "+r"(A0), [b0] "+r"(B0)                                                            \
            : [x] "r"(X), [a1] "r"(A1), [b1] "r"(B1)                                                 \
            : "cc")
#else
#define XL_SEL5(C, A0, A1, B0, B1, C0, C1, D0, D1, X0, X1)                                          \
    do {                                                                                              \
        if (C) { A0 = A1; B0 = B1; C0 = C1; D0 = D1; X0 = X1; }                                       \
    } while (0)
#define XL_SEL2_0F(X, A0, A1, B0, B1)                                                                \
    do {                                                                                              \
        if ((X) == 0x0F) { A0 = A1; B0 = B1; }                                                        \
    } while (0)
#endif

/* Whether the instruction at p after prefix context ctx is the common case, and its length in *len
 * (at most 13) if so.  Reads p[0..4]. */
static inline int xl_len_core(const uint8_t *p, int mi, unsigned ctx, unsigned *len)
{
    const uint64_t(*op)[256] = xl_lt.op[ctx][mi];
    const uint16_t *ml = xl_lt.ml[mi == 0];
    uint64_t b0 = p[0], b1 = p[1];
    /* the opcode at p[0] (map 0) or p[1] (0F), the ModRM after it */
    uint64_t e = op[0][b0], e_esc = op[1][b1];
    uint64_t m = ml[xl_ld16(p + 1) & 0x7FF], m_esc = ml[xl_ld16(p + 2) & 0x7FF];
    uint64_t k, c = b0;
    if (mi == 2) {
        /* after a REX: the opcode at p[1] (map 0) or p[2] (0F) */
        uint64_t e_rex = xl_lt.op_rex[ctx][mi][b1], e_rexesc = op[1][p[2]];
        uint64_t m_rex = m_esc, m_rexesc = ml[xl_ld16(p + 3) & 0x7FF];
        uint64_t rex = (b0 >> 4) == 4;
        XL_SEL5(rex, e, e_rex, e_esc, e_rexesc, m, m_rex, m_esc, m_rexesc, c, b1);
        k = rex;
    } else {
        k = 0;
    }
    k += c == 0x0F;
    XL_SEL2_0F(c, e, e_esc, m, m_esc);
    *len = (unsigned)(k + (e & XL_O_BASE) + ((e >> 8) & m));
    return (e >> (m >> 8)) & 1;
}

/* mi: 0, 1, 2 for 16-, 32-, 64-bit mode (a constant where inlined, so each mode is specialised). */
static inline int xl_insn_length_mi(const uint8_t *p, size_t n, int mi)
{
    /* the fast path reads at most p[4] and measures at most 15 bytes: with 15 bytes available
     * neither reading nor a length can run past the buffer */
    if (__builtin_expect(n < 15, 0))
        return xl_insn_length_slow(p, n, 16 << mi);
    unsigned len;
    if (__builtin_expect(xl_len_core(p, mi, 0, &len), 1)) {
        if (len - 1 > 14)
            __builtin_unreachable();  /* 1..13: a caller's "len > 0" and its sign extension fold away */
        return (int)len;
    }
    {
        /* one segment / 66 / F3 / F2 prefix, then the common case (not REX.W after 66) */
        unsigned pc = xl_lt.pfx[mi][p[0]], pc1 = xl_lt.pfx[mi][p[1]];
        unsigned ctx = pc >= XL_P_66 ? pc - 1 : 0;
        if (pc - XL_P_SEG <= XL_P_F2 - XL_P_SEG &&
            (pc1 == XL_P_OP || (pc1 == XL_P_REX && !(ctx == 1 && (p[1] & 8)))) &&
            xl_len_core(p + 1, mi, ctx, &len)) {
            if (len > 13)
                __builtin_unreachable();
            return (int)len + 1;
        }
    }
    return mi == 2 ? xl_len_other64(p, n) : mi == 1 ? xl_len_other32(p, n) : xl_len_other16(p, n);
}

static inline int xl_insn_length_inline(const uint8_t *p, size_t n, int mode)
{
    switch (mode) {
    case 64: return xl_insn_length_mi(p, n, 2);
    case 32: return xl_insn_length_mi(p, n, 1);
    case 16: return xl_insn_length_mi(p, n, 0);
    default: return -1;
    }
}

#endif
