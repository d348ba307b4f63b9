/* The instruction-length function's common-case fast path, inlinable (see insn_subset.h for the
 * contract of xl_insn_length).
 *
 * Most real instructions have no legacy prefix, at most a REX, and an opcode of the one-byte or 0F
 * map whose length is ModRM/SIB/displacement plus an immediate fixed by the opcode.  For those, one
 * opcode-class table (per prefix context, mode and map) and one 256-entry ModRM table give the length;
 * opcodes whose forms differ (groups) carry a row of the (mod, reg) forms that exist, or, when the
 * immediate depends on the form (F6/F7), a per-form group table.  Segment prefixes and one of
 * 66 / F3 / F2 go through a 256-entry prefix-class table to the same tables.  Everything else --
 * LOCK, 67, VEX/EVEX, 0F38/0F3A, mandatory-prefix and ModRM-form rules, short buffers -- takes the
 * full walk, xl_insn_length_slow().  The tables are derived at load time from the full walk's own
 * tables (insn_subset.c; group rows by probing the full walk), so the two cannot drift; the ASan
 * driver and tests/test_c_length_real.py check that they agree.
 */
#ifndef XL_INSN_LENGTH_H
#define XL_INSN_LENGTH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define XL_F_SLOW 0x80  /* take the full walk */
#define XL_F_ROW_SHIFT 9 /* bits 9-15: row of xl_len_formok (which ModRM mod/reg forms exist) */
#define XL_F_MODRM 0x40 /* a ModRM follows the opcode */
#define XL_F_IV 0x20    /* B8+r: 4 more immediate bytes with REX.W (group opcodes: group index bit 4) */
#define XL_F_GRP 0x10   /* group opcode: index (low nibble, bit 4 in XL_F_IV) into xl_len_grp */
#define XL_M_SIB5 0x10  /* ModRM table: SIB with mod 0, a disp32 follows when SIB.base = 5 */
/* one-byte map, no prefix context: the bytes that are not opcodes carry XL_F_SLOW and a kind */
#define XL_C_REX (XL_F_SLOW | 1)
#define XL_C_ESC (XL_F_SLOW | 2)    /* 0F */
#define XL_C_PREFIX (XL_F_SLOW | 3) /* a legacy prefix */
#define XL_NGRP 32

/* prefix classes (xl_len_pfx) */
enum { XL_P_OP = 0, XL_P_SEG = 1, XL_P_66 = 2, XL_P_F3 = 3, XL_P_F2 = 4, XL_P_REX = 5, XL_P_SLOW = 6 };

/* [mode index: 0 16-bit, 1 32-bit, 2 64-bit][byte]: prefix class */
extern uint8_t xl_len_pfx[3][256];
/* [context: 0 no prefix, 1 66, 2 F3, 3 F2][mode index][map: 0 one-byte, 1 0F][opcode]:
 * flags | immediate bytes */
extern uint16_t xl_len_class[4][3][2][256];
/* [row][(ModRM >> 3)]: bit set when that mod/reg form exists (row 0: all of them) */
#define XL_NFORMROWS 128
extern uint32_t xl_len_formok[XL_NFORMROWS];
/* [0: 32/64-bit addressing, 1: 16-bit][ModRM]: ModRM + SIB + displacement bytes | XL_M_SIB5 */
extern uint8_t xl_len_modrm[2][256];
/* [context][mode index][group][ModRM >> 3 (mod, reg)]: immediate bytes, or XL_F_SLOW */
extern uint8_t xl_len_grp[4][3][XL_NGRP][32];

int xl_insn_length_slow(const uint8_t *p, size_t n, int mode);

/* Immediate, ModRM, SIB and displacement of class e whose ModRM (if any) is at p[i]. */
static inline int xl_len_tail(const uint8_t *p, size_t n, unsigned i, unsigned w, unsigned e, unsigned ctx,
                              int mi)
{
    if (e & XL_F_GRP)
        e = XL_F_MODRM | xl_len_grp[ctx][mi][(e & 0xF) | ((e & XL_F_IV) >> 1)][p[i] >> 3];
    if (__builtin_expect((e & XL_F_SLOW) || !((xl_len_formok[e >> XL_F_ROW_SHIFT] >> (p[i] >> 3)) & 1), 0))
        return xl_insn_length_slow(p, n, 16 << mi);
    unsigned len = i + (e & 0xF);
    if (w && (e & XL_F_IV))
        len += 4;
    if (e & XL_F_MODRM) {
        unsigned m = xl_len_modrm[mi == 0][p[i]];
        len += m & 0xF;
        if ((m & XL_M_SIB5) && (p[i + 1] & 7) == 5)
            len += 4;
    }
    return (int)len;
}

/* The opcode at p[i] (after prefix context ctx, REX.W w). */
static inline int xl_len_core(const uint8_t *p, size_t n, unsigned i, unsigned w, unsigned ctx, int mi)
{
    unsigned e;
    if (p[i] == 0x0F) {
        e = xl_len_class[ctx][mi][1][p[i + 1]];
        i += 2;
    } else {
        e = xl_len_class[ctx][mi][0][p[i]];
        i += 1;
    }
    int len = xl_len_tail(p, n, i, w, e, ctx, mi);
    return len <= 15 ? len : -1;
}

/* Segment prefixes and one of 66 / F3 / F2 (then REX in 64-bit mode): the prefix class table. */
int xl_len_prefixed(const uint8_t *p, size_t n, int mi);
static inline int xl_len_prefixed_inl(const uint8_t *p, size_t n, int mi)
{
    unsigned i = 0, w = 0, ctx = 0, b = p[0];
    unsigned pc = xl_len_pfx[mi][b];
    for (;;) {
        if (pc == XL_P_OP)
            break;
        if (pc == XL_P_REX) {
            w = (b >> 3) & 1;
            b = p[++i];
            if (xl_len_pfx[mi][b] != XL_P_OP)
                return xl_insn_length_slow(p, n, 16 << mi);
            break;
        }
        if (pc >= XL_P_SLOW || i >= 4 || (pc >= XL_P_66 && ctx))
            return xl_insn_length_slow(p, n, 16 << mi);
        if (pc >= XL_P_66)
            ctx = pc - 1;
        b = p[++i];
        pc = xl_len_pfx[mi][b];
    }
    if (ctx == 1 && w)  /* 66 with REX.W: REX.W wins the operand size */
        return xl_insn_length_slow(p, n, 16 << mi);
    return xl_len_core(p, n, i, w, ctx, mi);
}

/* Not the common case: REX then a prefix, 0F with a group, legacy prefixes, groups whose immediate
 * depends on ModRM.reg (F6/F7), or the full walk. */
static inline int xl_len_other(const uint8_t *p, size_t n, int mi)
{
    unsigned e = xl_len_class[0][mi][0][p[0]], i = 1, w = 0;
    if (e & XL_F_SLOW) {
        if (e == XL_C_REX) {
            w = (p[0] >> 3) & 1;
            e = xl_len_class[0][mi][0][p[1]];
            i = 2;
        }
        if (e == XL_C_ESC) {
            e = xl_len_class[0][mi][1][p[i]];
            i += 1;
        } else if (e == XL_C_REX || e == XL_C_PREFIX) {
            return xl_len_prefixed(p, n, mi);
        }
    }
    return xl_len_tail(p, n, i, w, e, 0, mi);  /* at most 14 bytes: no length check */
}

/* mi: 0, 1, 2 for 16-, 32-, 64-bit mode (a constant where inlined, so each mode is specialised).
 *
 * The walk is one serial chain (the next instruction starts where this one ends), and real code
 * mixes REX / no REX, 0F / one-byte, ModRM / none unpredictably: so the common case loads the first
 * five bytes at once and selects REX, the 0F escape and the ModRM length with conditional moves,
 * leaving two dependent table loads (class and ModRM, in parallel) on the chain and only rarely
 * taken branches (prefixes, F6/F7, forms that do not exist, the full walk). */
static inline int xl_insn_length_mi(const uint8_t *p, size_t n, int mi)
{
    /* the fast paths read at most p[8] and measure at most 15 bytes: with 15 bytes available
     * neither reading nor a length can run past the buffer */
    if (__builtin_expect(n < 15, 0))
        return xl_insn_length_slow(p, n, 16 << mi);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t q;
    memcpy(&q, p, 8);  /* shifts, not branches, select past REX and 0F */
    unsigned b0 = (unsigned)q & 0xFF;
    unsigned rex = mi == 2 && (b0 & 0xF0) == 0x40;
    q >>= rex * 8;
    unsigned esc = (q & 0xFF) == 0x0F;
    q >>= esc * 8;
    unsigned op = (unsigned)q & 0xFF, mb = (unsigned)(q >> 8) & 0xFF, sb = (unsigned)(q >> 16) & 0xFF;
#else
    unsigned b0 = p[0];
    unsigned rex = mi == 2 && (b0 & 0xF0) == 0x40;
    unsigned esc = p[rex] == 0x0F;
    unsigned op = p[rex + esc], mb = p[rex + esc + 1], sb = p[rex + esc + 2];
#endif
    unsigned e = xl_len_class[0][mi][esc][op];
    unsigned m = xl_len_modrm[mi == 0][mb];
    if (__builtin_expect(e & (XL_F_SLOW | XL_F_GRP), 0))
        return xl_len_other(p, n, mi);
    if (__builtin_expect(!((xl_len_formok[e >> XL_F_ROW_SHIFT] >> (mb >> 3)) & 1), 0))
        return xl_insn_length_slow(p, n, 16 << mi);
    unsigned w = rex & (b0 >> 3);
    unsigned len = 1 + rex + esc + (e & 0xF) + ((w && (e & XL_F_IV)) ? 4 : 0);
    unsigned ml = (m & 0xF) + (((m & XL_M_SIB5) && (sb & 7) == 5) ? 4 : 0);
    len += (e & XL_F_MODRM) ? ml : 0;
    return (int)len;
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
