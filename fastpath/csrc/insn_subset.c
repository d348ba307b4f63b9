/* MMIO subset decoder and instruction-length function (see insn_subset.h).
 *
 * Both are table-driven in the manner of KVM's opcode table: one flags word per opcode of the
 * one-byte map and of the 0F map; the code only walks prefixes, ModRM/SIB/displacement and
 * immediates as the flags say.  No state, no allocation.
 */
#include "insn_subset.h"
#include "insn_length.h"
#include "opmap_subset.h"
#include "vex_pp.h"

#define XL_MAXLEN 15

/* ---------------------------------------------------------------- shared prefix walk */

struct pfx {
    int pos;        /* index of the opcode byte */
    uint8_t rex;    /* REX that immediately precedes the opcode (64-bit mode), else 0 */
    uint8_t p66, p67, lock, rep, seg, nrep;
    uint8_t last_simd;  /* last of 66/F2/F3 seen (mandatory-prefix selection) */
};

static int walk_prefixes(const uint8_t *p, size_t n, int mode, struct pfx *x)
{
    size_t lim = n < XL_MAXLEN ? n : XL_MAXLEN;
    x->rex = x->p66 = x->p67 = x->lock = x->rep = x->seg = x->nrep = x->last_simd = 0;
    for (size_t i = 0; i < lim; i++) {
        uint8_t b = p[i];
        switch (b) {
        case 0x66: x->p66 = 1; x->rex = 0; x->last_simd = b; continue;
        case 0x67: x->p67 = 1; x->rex = 0; continue;
        case 0x26: x->seg = XL_SEG_ES; x->rex = 0; continue;
        case 0x2E: x->seg = XL_SEG_CS; x->rex = 0; continue;
        case 0x36: x->seg = XL_SEG_SS; x->rex = 0; continue;
        case 0x3E: x->seg = XL_SEG_DS; x->rex = 0; continue;
        case 0x64: x->seg = XL_SEG_FS; x->rex = 0; continue;
        case 0x65: x->seg = XL_SEG_GS; x->rex = 0; continue;
        case 0xF0: x->lock = 1; x->rex = 0; continue;
        case 0xF2: case 0xF3:
            if (x->rep != b) x->nrep++;
            x->rep = b; x->rex = 0; x->last_simd = b; continue;
        default:
            break;
        }
        if (mode == 64 && (b & 0xF0) == 0x40) {
            x->rex = b;
            continue;
        }
        x->pos = (int)i;
        return 0;
    }
    return -1;  /* only prefixes within the limit */
}

/* ---------------------------------------------------------------- subset decoder */

struct sub_ent {
    uint8_t kind;
    uint8_t flags;
};

/* The opcode tables and their S_* flags come from the [subset] rows of emu/x86-opcode-map.txt. */
static const struct sub_ent sub_map0[256] = {XL_OPMAP_SUBSET_MAP0};

static const struct sub_ent sub_map1[256] = {XL_OPMAP_SUBSET_MAP1};

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int64_t sx(uint64_t v, int bytes)
{
    if (bytes >= 8)
        return (int64_t)v;
    int sh = 64 - 8 * bytes;
    return (int64_t)(v << sh) >> sh;
}

static const uint8_t rm16_base[8] = {3, 3, 5, 5, 6, 7, 5, 3};           /* BX BX BP BP SI DI BP BX */
static const uint8_t rm16_index[8] = {6, 7, 6, 7, XL_NOREG, XL_NOREG, XL_NOREG, XL_NOREG};

int xl_decode_subset(const uint8_t *p, size_t n, int mode, struct xl_insn *d)
{
    struct pfx x;
    if ((mode != 16 && mode != 32 && mode != 64) || walk_prefixes(p, n, mode, &x) < 0)
        return 0;
    size_t lim = n < XL_MAXLEN ? n : XL_MAXLEN;
    size_t i = (size_t)x.pos;
    const struct sub_ent *e;
    uint8_t map = 0, op = p[i++];
    if (op == 0x0F) {
        if (i >= lim)
            return 0;
        map = 1;
        op = p[i++];
        e = &sub_map1[op];
    } else {
        e = &sub_map0[op];
    }
    if (e->kind == XL_K_NONE || x.lock || x.nrep > 1)
        return 0;
    int string = e->kind == XL_K_MOVS || e->kind == XL_K_STOS;
    if (x.rep && !string)
        return 0;  /* F2/F3 on MOV: XACQUIRE/XRELEASE or ignored -- not ours to guess */
    if (e->flags & S_REXW) {
        if (mode != 64 || !(x.rex & 8))
            return 0;
    }
    int opsize = mode == 64 ? ((x.rex & 8) ? 8 : (x.p66 ? 2 : 4)) : (mode == 32 ? (x.p66 ? 2 : 4) : (x.p66 ? 4 : 2));
    int asize = mode == 64 ? (x.p67 ? 4 : 8) : (mode == 32 ? (x.p67 ? 2 : 4) : (x.p67 ? 4 : 2));

    d->kind = e->kind;
    d->rep = x.rep;
    d->seg = x.seg;
    d->addr_size = (uint8_t)asize;
    d->rex = x.rex;
    d->opcode = op;
    d->map = map;
    d->pad = 0;
    d->disp = 0;
    d->imm = 0;
    d->base = XL_NOREG;
    d->index = XL_NOREG;
    d->scale = 1;
    d->hi8 = 0;
    d->reg = 0;
    if (e->flags & S_BYTE)
        d->size = 1;
    else if (e->flags & S_SRC1)
        d->size = 1;
    else if (e->flags & S_SRC2)
        d->size = 2;
    else if (e->flags & S_SRC4)
        d->size = 4;
    else
        d->size = (uint8_t)opsize;
    d->dst_size = (e->flags & S_BYTE) ? 1 : (uint8_t)opsize;

    if (e->flags & S_MOFFS) {
        if (i + (size_t)asize > lim)
            return 0;
        d->disp = (int64_t)rd_le(p + i, asize);
        i += (size_t)asize;
        d->reg = 0;  /* AL / AX / EAX / RAX */
        d->len = (uint8_t)i;
        return (int)i;
    }
    if (string) {
        d->reg = 0;
        d->len = (uint8_t)i;
        return (int)i;
    }
    /* ModRM forms */
    if (i >= lim)
        return 0;
    uint8_t m = p[i++];
    int mod = m >> 6, regf = (m >> 3) & 7, rm = m & 7;
    if (mod == 3)
        return 0;  /* register operand: no memory access */
    if ((e->flags & S_GRP0) && regf != 0)
        return 0;
    int reg = regf | ((x.rex & 4) ? 8 : 0);
    if (d->dst_size == 1 && !x.rex && reg >= 4 && reg < 8) {
        d->hi8 = 1;
        reg -= 4;
    }
    d->reg = (uint8_t)reg;
    if (asize == 2) {
        d->base = rm16_base[rm];
        d->index = rm16_index[rm];
        if (mod == 0 && rm == 6) {
            d->base = XL_NOREG;
            if (i + 2 > lim) return 0;
            d->disp = sx(rd_le(p + i, 2), 2);
            i += 2;
        } else if (mod == 1) {
            if (i + 1 > lim) return 0;
            d->disp = sx(p[i], 1);
            i += 1;
        } else if (mod == 2) {
            if (i + 2 > lim) return 0;
            d->disp = sx(rd_le(p + i, 2), 2);
            i += 2;
        }
    } else {
        int dispsz = mod == 1 ? 1 : (mod == 2 ? 4 : 0);
        if (rm == 4) {
            if (i >= lim)
                return 0;
            uint8_t s = p[i++];
            int idx = ((s >> 3) & 7) | ((x.rex & 2) ? 8 : 0);
            int bse = s & 7;
            d->scale = (uint8_t)(1 << (s >> 6));
            d->index = idx == 4 ? XL_NOREG : (uint8_t)idx;
            if (bse == 5 && mod == 0) {
                d->base = XL_NOREG;
                dispsz = 4;
            } else {
                d->base = (uint8_t)(bse | ((x.rex & 1) ? 8 : 0));
            }
        } else if (rm == 5 && mod == 0) {
            d->base = mode == 64 ? XL_BASE_RIP : XL_NOREG;
            dispsz = 4;
        } else {
            d->base = (uint8_t)(rm | ((x.rex & 1) ? 8 : 0));
        }
        if (dispsz) {
            if (i + (size_t)dispsz > lim)
                return 0;
            d->disp = sx(rd_le(p + i, dispsz), dispsz);
            i += (size_t)dispsz;
        }
    }
    if (d->kind == XL_K_WRITE_IMM) {
        int isz = d->size == 1 ? 1 : (d->size == 2 ? 2 : 4);
        if (i + (size_t)isz > lim)
            return 0;
        uint64_t v = (uint64_t)sx(rd_le(p + i, isz), isz);
        i += (size_t)isz;
        d->imm = d->size == 8 ? v : (v & ((1ull << (8 * d->size)) - 1));
    }
    d->len = (uint8_t)i;
    return (int)i;
}

/* ---------------------------------------------------------------- length function */

enum {
    L_M = 1 << 0,      /* ModRM follows */
    L_I8 = 1 << 1,
    L_IZ = 1 << 2,     /* imm16/32 by operand size */
    L_I16 = 1 << 3,
    L_IV = 1 << 4,     /* imm16/32/64 (B8+r) */
    L_MOFFS = 1 << 5,
    L_INV64 = 1 << 6,  /* invalid in 64-bit mode */
    L_INV = 1 << 7,    /* invalid or not covered: -1 */
    L_SPEC = 1 << 8,   /* handled in code */
    L_LK = 1 << 9,     /* LOCK allowed with a memory operand */
    L_REL = 1 << 10,   /* near branch: 66 ignored in 64-bit mode (rel32) */
    L_MEMONLY = 1 << 11,
    L_NOMOD = 1 << 12, /* ModRM always register form (MOV CR/DR): no displacement */
};

#define M L_M
static const uint16_t len_map0[256] = {
    [0x00] = M | L_LK, [0x01] = M | L_LK, [0x02] = M, [0x03] = M, [0x04] = L_I8, [0x05] = L_IZ,
    [0x06] = L_INV64, [0x07] = L_INV64,
    [0x08] = M | L_LK, [0x09] = M | L_LK, [0x0A] = M, [0x0B] = M, [0x0C] = L_I8, [0x0D] = L_IZ,
    [0x0E] = L_INV64, [0x0F] = L_SPEC,
    [0x10] = M | L_LK, [0x11] = M | L_LK, [0x12] = M, [0x13] = M, [0x14] = L_I8, [0x15] = L_IZ,
    [0x16] = L_INV64, [0x17] = L_INV64,
    [0x18] = M | L_LK, [0x19] = M | L_LK, [0x1A] = M, [0x1B] = M, [0x1C] = L_I8, [0x1D] = L_IZ,
    [0x1E] = L_INV64, [0x1F] = L_INV64,
    [0x20] = M | L_LK, [0x21] = M | L_LK, [0x22] = M, [0x23] = M, [0x24] = L_I8, [0x25] = L_IZ,
    [0x27] = L_INV64,
    [0x28] = M | L_LK, [0x29] = M | L_LK, [0x2A] = M, [0x2B] = M, [0x2C] = L_I8, [0x2D] = L_IZ,
    [0x2F] = L_INV64,
    [0x30] = M | L_LK, [0x31] = M | L_LK, [0x32] = M, [0x33] = M, [0x34] = L_I8, [0x35] = L_IZ,
    [0x37] = L_INV64,
    [0x38] = M, [0x39] = M, [0x3A] = M, [0x3B] = M, [0x3C] = L_I8, [0x3D] = L_IZ,
    [0x3F] = L_INV64,
    [0x60] = L_INV64, [0x61] = L_INV64, [0x62] = L_SPEC, [0x63] = M,
    [0x68] = L_IZ, [0x69] = M | L_IZ, [0x6A] = L_I8, [0x6B] = M | L_I8,
    [0x70 ... 0x7F] = L_I8,
    [0x80] = M | L_I8 | L_LK, [0x81] = M | L_IZ | L_LK, [0x82] = M | L_I8 | L_LK | L_INV64,
    [0x83] = M | L_I8 | L_LK,
    [0x84] = M, [0x85] = M, [0x86] = M | L_LK, [0x87] = M | L_LK,
    [0x88 ... 0x8B] = M, [0x8C] = M, [0x8D] = M | L_MEMONLY, [0x8E] = M, [0x8F] = L_SPEC,
    [0x9A] = L_SPEC,
    [0xA0 ... 0xA3] = L_MOFFS, [0xA8] = L_I8, [0xA9] = L_IZ,
    [0xB0 ... 0xB7] = L_I8, [0xB8 ... 0xBF] = L_IV,
    [0xC0] = M | L_I8, [0xC1] = M | L_I8, [0xC2] = L_I16, [0xC4] = L_SPEC, [0xC5] = L_SPEC,
    [0xC6] = L_SPEC, [0xC7] = L_SPEC, [0xC8] = L_SPEC, [0xCA] = L_I16, [0xCD] = L_I8,
    [0xCE] = L_INV64,
    [0xD0 ... 0xD3] = M, [0xD4] = L_I8 | L_INV64, [0xD5] = L_I8 | L_INV64, [0xD6] = L_INV64,
    [0xD8 ... 0xDF] = M,
    [0xE0 ... 0xE7] = L_I8, [0xE8] = L_IZ | L_REL, [0xE9] = L_IZ | L_REL, [0xEA] = L_SPEC, [0xEB] = L_I8,
    [0xF6] = L_SPEC, [0xF7] = L_SPEC, [0xFE] = L_SPEC, [0xFF] = L_SPEC,
};

static const uint16_t len_map1[256] = {
    [0x00] = L_SPEC, [0x01] = L_SPEC, [0x02] = M, [0x03] = M, [0x04] = L_INV,
    [0x0A] = L_INV, [0x0C] = L_INV, [0x0D] = M, [0x0F] = L_SPEC,
    [0x10 ... 0x1F] = M,
    [0x20 ... 0x23] = M | L_NOMOD, [0x24 ... 0x27] = L_INV,
    [0x28 ... 0x2F] = M,
    [0x36] = L_INV, [0x38] = L_SPEC, [0x39] = L_INV, [0x3A] = L_SPEC, [0x3B ... 0x3F] = L_INV,
    [0x40 ... 0x4F] = M,
    [0x50 ... 0x6F] = M,
    [0x70] = M | L_I8, [0x71 ... 0x73] = L_SPEC, [0x74 ... 0x76] = M,
    [0x78] = L_SPEC, [0x79] = L_SPEC, [0x7A] = L_INV, [0x7B] = L_INV, [0x7C ... 0x7F] = M,
    [0x80 ... 0x8F] = L_IZ | L_REL,
    [0x90 ... 0x9F] = M,
    [0xA3] = M, [0xA4] = M | L_I8, [0xA5] = M, [0xA6] = L_SPEC, [0xA7] = L_SPEC,
    [0xAB] = M | L_LK, [0xAC] = M | L_I8, [0xAD] = M, [0xAE] = M, [0xAF] = M,
    [0xB0] = M | L_LK, [0xB1] = M | L_LK, [0xB2] = M | L_MEMONLY, [0xB3] = M | L_LK,
    [0xB4] = M | L_MEMONLY, [0xB5] = M | L_MEMONLY, [0xB6] = M, [0xB7] = M,
    [0xB8] = L_SPEC, [0xB9] = M, [0xBA] = L_SPEC, [0xBB] = M | L_LK, [0xBC ... 0xBF] = M,
    [0xC0] = M | L_LK, [0xC1] = M | L_LK, [0xC2] = M | L_I8, [0xC3] = M | L_MEMONLY,
    [0xC4 ... 0xC6] = M | L_I8, [0xC7] = L_SPEC,
    [0xD0 ... 0xFF] = M,
};
#undef M

/* SSE/MMX opcodes of the 0F map: the mandatory prefixes that make them exist (P_N: none, P_66,
 * P_F3, P_F2; F2/F3 take precedence over 66) and their ModRM restrictions.  Only consulted where
 * non-zero; a combination outside the set is #UD, so the length function says -1. */
enum { P_N = 1, P_66 = 2, P_F3 = 4, P_F2 = 8, P_MEM = 16, P_REG = 32 };
#define P_ALL (P_N | P_66 | P_F3 | P_F2)
#define P_NX (P_N | P_66)
static const uint8_t sse_pfx[256] = {
    [0x10] = P_ALL, [0x11] = P_ALL, [0x12] = P_ALL, [0x13] = P_NX | P_MEM, [0x14] = P_NX, [0x15] = P_NX,
    [0x16] = P_N | P_66 | P_F3, [0x17] = P_NX | P_MEM,
    [0x37] = P_N,  /* GETSEC: NP (fuzz finding) */
    [0x28] = P_NX, [0x29] = P_NX, [0x2A] = P_ALL, [0x2B] = P_NX | P_MEM, [0x2C] = P_ALL, [0x2D] = P_ALL,
    [0x2E] = P_NX, [0x2F] = P_NX,
    [0x50] = P_NX | P_REG, [0x51] = P_ALL, [0x52] = P_N | P_F3, [0x53] = P_N | P_F3,
    [0x54 ... 0x57] = P_NX, [0x58 ... 0x5A] = P_ALL, [0x5B] = P_N | P_66 | P_F3, [0x5C ... 0x5F] = P_ALL,
    [0x60 ... 0x6B] = P_NX, [0x6C] = P_66, [0x6D] = P_66, [0x6E] = P_NX, [0x6F] = P_N | P_66 | P_F3,
    [0x70] = P_ALL, [0x71 ... 0x73] = P_NX | P_REG, [0x74 ... 0x76] = P_NX, [0x77] = P_N,
    [0x7C] = P_66 | P_F2, [0x7D] = P_66 | P_F2, [0x7E] = P_N | P_66 | P_F3, [0x7F] = P_N | P_66 | P_F3,
    [0xC2] = P_ALL, [0xC3] = P_N | P_MEM, [0xC4] = P_NX, [0xC5] = P_NX | P_REG, [0xC6] = P_NX,
    [0xD0] = P_66 | P_F2, [0xD1 ... 0xD5] = P_NX, [0xD6] = P_66 | P_F3 | P_F2, [0xD7] = P_NX | P_REG,
    [0xD8 ... 0xDF] = P_NX, [0xE0 ... 0xE5] = P_NX, [0xE6] = P_66 | P_F3 | P_F2, [0xE7] = P_NX | P_MEM,
    [0xE8 ... 0xEF] = P_NX, [0xF0] = P_F2 | P_MEM, [0xF1 ... 0xF6] = P_NX, [0xF7] = P_NX | P_REG,
    [0xF8 ... 0xFE] = P_NX,
};

static int sse_ok(uint8_t op, const struct pfx *x, int mod)
{
    uint8_t f = sse_pfx[op];
    if (!f)
        return 1;
    int mp = x->rep == 0xF3 ? P_F3 : x->rep == 0xF2 ? P_F2 : x->p66 ? P_66 : P_N;
    if (!(f & mp))
        return 0;
    if ((f & P_MEM) && mod == 3)
        return 0;
    if ((f & P_REG) && mod != 3)
        return 0;
    /* per-prefix ModRM forms */
    if ((op == 0x12 || op == 0x16) && mp == P_66 && mod == 3)
        return 0;  /* MOVLPD / MOVHPD take memory only */
    if (op == 0xD6 && mp != P_66 && mod != 3)
        return 0;  /* MOVQ2DQ / MOVDQ2Q take registers only */
    return 1;
}

/* 0F 38 / 0F 3A: the opcodes that exist, with their mandatory prefixes (all have ModRM; 0F3A an
 * imm8).  Same encoding as sse_pfx. */
static const uint8_t map38_pfx[256] = {
    [0x00 ... 0x0B] = P_NX, [0x10] = P_66, [0x14] = P_66, [0x15] = P_66, [0x17] = P_66,
    [0x1C ... 0x1E] = P_NX, [0x20 ... 0x25] = P_66, [0x28 ... 0x29] = P_66,
    [0x2A] = P_66 | P_MEM,  /* MOVNTDQA: memory only (fuzz finding) */ [0x2B] = P_66, [0x30 ... 0x35] = P_66,
    [0x37 ... 0x41] = P_66, [0x80 ... 0x82] = P_66 | P_MEM, [0xC8 ... 0xCD] = P_N, [0xCF] = P_66,
    [0xDB ... 0xDF] = P_66, [0xF0] = P_N | P_66 | P_F2, [0xF1] = P_N | P_66 | P_F2,  /* no F3 form (fuzz) */ [0xF5] = P_66 | P_MEM,
    [0xF6] = P_N | P_66 | P_F3, [0xF8] = P_66 | P_F3 | P_F2 | P_MEM, [0xF9] = P_N | P_MEM, [0xFC] = P_ALL | P_MEM,
};
static const uint8_t map3a_pfx[256] = {
    [0x08 ... 0x0E] = P_66, [0x0F] = P_NX, [0x14 ... 0x17] = P_66, [0x20 ... 0x22] = P_66,
    [0x40 ... 0x42] = P_66, [0x44] = P_66, [0x60 ... 0x63] = P_66, [0xCC] = P_N, [0xCE] = P_66, [0xCF] = P_66,
    [0xDF] = P_66,
};

static int map3_ok(int map38, uint8_t op, const struct pfx *x, int mod)
{
    uint8_t f = map38 ? map38_pfx[op] : map3a_pfx[op];
    if (!f)
        return 0;
    int mp = x->rep == 0xF3 ? P_F3 : x->rep == 0xF2 ? P_F2 : x->p66 ? P_66 : P_N;
    if (!(f & mp))
        return 0;
    if ((f & P_MEM) && mod == 3)
        return 0;
    if (map38 && (op == 0xF0 || op == 0xF1) && mp != P_F2 && mod == 3)
        return 0;  /* MOVBE takes memory; CRC32 (F2) either */
    if (map38 && op == 0xF6 && mp == P_N && mod == 3)
        return 0;  /* WRSS */
    return 1;
}

/* x87 (D8-DF): the reserved encodings, which are #UD (found by exitlab fuzz; iced-x86 agrees).
 * Memory forms D9 /1, DB /4, DB /6, DD /5; the register forms listed per opcode. */
static int x87_ok(uint8_t op, uint8_t m)
{
    int reg = (m >> 3) & 7;
    if (m < 0xC0)
        return !((op == 0xD9 && reg == 1) || (op == 0xDB && (reg == 4 || reg == 6)) || (op == 0xDD && reg == 5));
    switch (op) {
    case 0xD9: return !((m >= 0xD1 && m <= 0xD7) || m == 0xE2 || m == 0xE3 || m == 0xE6 || m == 0xE7 || m == 0xEF);
    case 0xDA: return m < 0xE0 || m == 0xE9;
    case 0xDB: return !((m >= 0xE5 && m <= 0xE7) || m >= 0xF8);
    case 0xDD: return m < 0xF0;
    case 0xDE: return m < 0xD8 || m == 0xD9 || m >= 0xE0;
    case 0xDF: return !((m >= 0xE1 && m <= 0xE7) || m >= 0xF8);
    default: return 1;
    }
}

/* Group 15 (0F AE): which ModRM.reg forms exist, memory (bit 2*reg) or register (bit 2*reg+1),
 * per mandatory prefix (none, 66, F3, F2); read off iced-x86 (found by exitlab fuzz: `0f ae c2`
 * is RDFSBASE without its F3, #UD). The F3 register forms /0-/3 (RD/WRFS/GSBASE) are 64-bit only. */
static int grp15_ok(const struct pfx *x, int mod, int regf, int mode)
{
    /* columns: none, 66, F3, F2, F3 with a 66 too (PTWRITE, F3 /4, then does not exist) */
    static const uint16_t ok[2][5] = {{0xfd55, 0x7000, 0x3b00, 0x2000, 0x3800},
                                      {0xfd55, 0x7000, 0x3baa, 0x2000, 0x38aa}};
    int pf = x->rep == 0xF3 ? (x->p66 ? 4 : 2) : x->rep == 0xF2 ? 3 : x->p66 ? 1 : 0;
    return (ok[mode == 64][pf] >> (regf * 2 + (mod == 3))) & 1;
}

/* 0F 01 / 0F A6 / 0F A7 register forms (the ModRM byte names the instruction): which exist, per
 * mode and mandatory prefix, read off iced-x86 (regform_ok in vex_pp.h). */
static int regform_ok(int which, const struct pfx *x, uint8_t m, int mode)
{
    int pf = x->rep == 0xF3 ? 2 : x->rep == 0xF2 ? 3 : x->p66 ? 1 : 0;
    return (regform_ok_tab[((mode == 64 ? 2 : mode == 32) * 3 + which) * 4 + pf] >> (m - 0xC0)) & 1;
}

/* ModRM (+SIB +disp) starting at p[i]; returns the index after it or -1. */
static int modrm_len(const uint8_t *p, size_t lim, size_t i, int asize, int nomod)
{
    if (i >= lim)
        return -1;
    uint8_t m = p[i++];
    int mod = m >> 6, rm = m & 7;
    if (nomod || mod == 3)
        return (int)i;
    if (asize == 2) {
        if (mod == 1) i += 1;
        else if (mod == 2 || (mod == 0 && rm == 6)) i += 2;
    } else {
        if (rm == 4) {
            if (i >= lim)
                return -1;
            uint8_t s = p[i++];
            if (mod == 0 && (s & 7) == 5)
                i += 4;
        }
        if (mod == 1) i += 1;
        else if (mod == 2 || (mod == 0 && rm == 5)) i += 4;
    }
    return i <= lim ? (int)i : -1;
}

static int finish(size_t i, size_t lim)
{
    return (i <= lim && i <= XL_MAXLEN) ? (int)i : -1;
}

/* VEX (C4/C5) and EVEX (62).  Whether an encoding exists is read from the tables iced-x86 gave
 * (vex_pp.h, generated by gen_vex_pp.py): per mode, map, opcode, pp, (L,) W and ModRM form, which
 * vvvv classes, extended registers, L'L / broadcast / masking / zeroing combinations are valid, plus
 * the few instructions that require distinct registers.  The length is escape + opcode +
 * ModRM/SIB/disp + an imm8 on the opcodes that take one (the generator checks this model). */

static int vex_has_imm8(int map, int op)
{
    return map == 3 || (map == 1 && ((op >= 0x70 && op <= 0x73) || (op >= 0xC2 && op <= 0xC6)));
}

/* The distinct-register rules (gathers, AMX TDP*, FP16 complex multiplies). */
static int vex_rules_ok(int m64, int evex, int map, int op, int pp, int l, int w, int reg, int vv, int other)
{
    for (int k = 0; k < XL_VEX_NRULES; k++) {
        const struct xl_vex_rule *r = &vex_rules_list[k];
        if (r->op != op || r->map != map || r->mode64 != m64 || r->evex != evex || r->pp != pp || r->l != l ||
            r->w != w)
            continue;
        if (((r->rules & 1) && reg == vv) || ((r->rules & 2) && reg == other) || ((r->rules & 4) && vv == other))
            return 0;
        return 1;
    }
    return 1;
}

static int vex_len(const uint8_t *p, size_t lim, size_t i, int asize, const struct pfx *x, int mode)
{
    uint8_t esc = p[i];
    int m64 = mode == 64;
    int map, op, pp, l = 0, w = 0, e, rbar, xbar = 1, bbar = 1;
    uint8_t p2 = 0;
    if (x->p66 || x->rep || x->lock || x->rex)
        return -1;
    if (esc == 0xC5) {
        if (i + 2 >= lim) return -1;
        uint8_t b1 = p[i + 1];
        map = 1;
        rbar = b1 >> 7;
        e = (b1 >> 3) & 15;
        l = (b1 >> 2) & 1;
        pp = b1 & 3;
        i += 2;
    } else if (esc == 0xC4) {
        if (i + 3 >= lim) return -1;
        uint8_t b1 = p[i + 1], b2 = p[i + 2];
        map = b1 & 0x1F;
        rbar = b1 >> 7;
        xbar = (b1 >> 6) & 1;
        bbar = (b1 >> 5) & 1;
        w = b2 >> 7;
        e = (b2 >> 3) & 15;
        l = (b2 >> 2) & 1;
        pp = b2 & 3;
        i += 3;
    } else {  /* 62: EVEX */
        if (i + 4 >= lim) return -1;
        uint8_t p0 = p[i + 1], p1 = p[i + 2];
        if ((p0 & 0x08) || !(p1 & 0x04))
            return -1;
        map = p0 & 0x07;
        rbar = p0 >> 7;
        xbar = (p0 >> 6) & 1;
        bbar = (p0 >> 5) & 1;
        w = p1 >> 7;
        e = (p1 >> 3) & 15;
        pp = p1 & 3;
        p2 = p[i + 3];
        i += 4;
        if (!(map >= 1 && map <= 3) && map != 5 && map != 6)
            return -1;
    }
    if (esc != 0x62 && (map < 1 || map > 3))
        return -1;
    op = p[i++];
    if (esc != 0x62 && map == 1 && op == 0x77) {  /* vzeroupper / vzeroall: no ModRM */
        int idx = vex_key[(m64 * 3 * 256 + op) * 16 + pp * 4 + l * 2 + w];
        int cls = e == 15 ? 0 : (e & 8) ? 2 : 1;
        if (!idx || !((vex_rows[idx * 3] >> (cls * 2 + (m64 && !rbar))) & 1))
            return -1;
        return finish(i, lim);
    }
    if (i >= lim)
        return -1;
    uint8_t m = p[i];
    int mod = m >> 6, reg3 = (m >> 3) & 7, rm3 = m & 7;
    /* 16-bit addressing has no SIB: rm 4 is [si], a memory form without SIB */
    int kind = mod == 3 ? (rm3 != 0) : (rm3 == 4 && asize != 2 ? 3 : 2);
    int form = reg3 * 4 + kind;
    int other = -1;
    if (kind <= 1)
        other = rm3 | ((m64 && !bbar) << 3);
    else if (kind == 3) {  /* VSIB index */
        if (i + 1 >= lim) return -1;
        other = ((p[i + 1] >> 3) & 7) | ((m64 && !xbar) << 3);
    }
    int reg = reg3 | ((m64 && !rbar) << 3);
    int vv = m64 ? (~e & 15) : (~e & 7);
    if (esc != 0x62) {
        int idx = vex_key[((m64 * 3 + map - 1) * 256 + op) * 16 + pp * 4 + l * 2 + w];
        int cls = e == 15 ? 0 : (e & 8) ? 2 : 1;
        int bit = form * 6 + cls * 2 + (m64 && !rbar);
        if (!idx || !((vex_rows[idx * 3 + (bit >> 6)] >> (bit & 63)) & 1))
            return -1;
        if (map == 2 && !vex_rules_ok(m64, 0, map, op, pp, l, w, reg, vv, other))
            return -1;
    } else {
        static const int8_t evex_map_index[8] = {-1, 0, 1, 2, -1, 3, 4, -1};
        int idx = evex_key[((m64 * 5 + evex_map_index[map]) * 256 + op) * 8 + pp * 2 + w];
        if (!idx)
            return -1;
        uint32_t r = evex_rows[idx * 32 + form];
        int z = p2 >> 7, ll = (p2 >> 5) & 3, b = (p2 >> 4) & 1, vbar = (p2 >> 3) & 1, aaa = p2 & 7;
        int r2bar = (p[i - 4] >> 4) & 1;  /* P0 */
        if (!((r >> (ll + 4 * b)) & 1) || !((r >> (aaa ? 9 : 8)) & 1) || (z && !((r >> (aaa ? 10 : 11)) & 1)))
            return -1;
        if (!((r >> (12 + (e == 15 ? 0 : 2) + (1 - vbar))) & 1))
            return -1;
        if ((!rbar && !((r >> 16) & 1)) || (!r2bar && !((r >> 17) & 1)) || (!xbar && !((r >> 18) & 1)) ||
            (!bbar && !((r >> 19) & 1)))
            return -1;
        if (map == 2 || map == 6) {
            if (m64) {
                reg |= !r2bar << 4;
                vv |= !vbar << 4;
                if (kind <= 1)
                    other |= !xbar << 4;
                else if (kind == 3)
                    other |= !vbar << 4;
            }
            if (!vex_rules_ok(m64, 1, map, op, pp, 0, w, reg, vv, other))
                return -1;
        }
    }
    int rr = modrm_len(p, lim, i, asize, 0);
    if (rr < 0)
        return -1;
    return finish((size_t)rr + (vex_has_imm8(map, op) && map <= 3 ? 1 : 0), lim);
}

int xl_insn_length_slow(const uint8_t *p, size_t n, int mode)
{
    struct pfx x;
    if (mode != 16 && mode != 32 && mode != 64)
        return -1;
    if (walk_prefixes(p, n, mode, &x) < 0)
        return -1;
    size_t lim = n < XL_MAXLEN ? n : XL_MAXLEN;
    size_t i = (size_t)x.pos;
    int opsize = mode == 64 ? ((x.rex & 8) ? 8 : (x.p66 ? 2 : 4)) : (mode == 32 ? (x.p66 ? 2 : 4) : (x.p66 ? 4 : 2));
    int asize = mode == 64 ? (x.p67 ? 4 : 8) : (mode == 32 ? (x.p67 ? 2 : 4) : (x.p67 ? 4 : 2));
    int iz = opsize == 2 ? 2 : 4;
    uint8_t op = p[i];
    uint16_t f;
    int map = 0;
    int lockable = 0;

    if (op == 0x0F) {
        if (i + 1 >= lim)
            return -1;
        op = p[i + 1];
        if (op == 0x38 || op == 0x3A) {
            if (i + 2 >= lim)
                return -1;
            uint8_t op3 = p[i + 2];
            if (x.lock || i + 3 >= lim || !map3_ok(op == 0x38, op3, &x, p[i + 3] >> 6))
                return -1;
            int r = modrm_len(p, lim, i + 3, asize, 0);
            if (r < 0)
                return -1;
            return finish((size_t)r + (op == 0x3A ? 1 : 0), lim);
        }
        map = 1;
        i += 2;
        f = len_map1[op];
    } else {
        i += 1;
        f = len_map0[op];
    }
    if (f & L_INV)
        return -1;
    if ((f & L_INV64) && mode == 64)
        return -1;

    uint8_t m = i < lim ? p[i] : 0;
    int mod = m >> 6, regf = (m >> 3) & 7;
    int imm = 0;
    int nomod = (f & L_NOMOD) != 0;
    if (map == 0 && op >= 0xD8 && op <= 0xDF && i < lim && !x87_ok(op, m))
        return -1;

    if (f & L_SPEC) {
        if (i >= lim && !(map == 0 && (op == 0x9A || op == 0xEA || op == 0xC8)))
            return -1;
        if (map == 0) {
            switch (op) {
            case 0x62: case 0xC4: case 0xC5:
                if (mode == 64 || mod == 3)
                    return vex_len(p, lim, i - 1, asize, &x, mode);
                if (op == 0x62 && mode != 64) { f = L_M | L_MEMONLY; break; }  /* BOUND */
                f = L_M | L_MEMONLY;  /* LES / LDS */
                break;
            case 0x8F:
                if ((m & 0x1F) >= 8 && mode == 64) return -1;  /* XOP */
                if (regf != 0) return -1;                        /* XOP or reserved */
                f = L_M;
                break;
            case 0x9A: case 0xEA:
                if (mode == 64) return -1;
                if (x.lock) return -1;
                return finish(i + (size_t)iz + 2, lim);
            case 0xC6: case 0xC7:
                if (regf == 0) { f = L_M | (op == 0xC6 ? L_I8 : L_IZ); break; }
                if (m == 0xF8) {  /* XABORT imm8 / XBEGIN rel16/32 */
                    if (x.lock) return -1;
                    return finish(i + 1 + (op == 0xC6 ? 1 : (size_t)iz), lim);
                }
                return -1;
            case 0xC8:
                if (x.lock) return -1;
                return finish(i + 3, lim);
            case 0xF6: case 0xF7:
                f = L_M;
                if (regf <= 1) f |= op == 0xF6 ? L_I8 : L_IZ;
                if (regf == 2 || regf == 3) lockable = 1;
                break;
            case 0xFE:
                if (regf > 1) return -1;
                f = L_M;
                lockable = 1;
                break;
            case 0xFF:
                if (regf == 7) return -1;
                if ((regf == 3 || regf == 5) && mod == 3) return -1;
                f = L_M;
                lockable = regf <= 1;
                break;
            default:
                return -1;
            }
        } else {
            switch (op) {
            case 0x00:
                if (regf >= 6) return -1;
                f = L_M;
                break;
            case 0x01:
                if (mod == 3) {
                    if (x.lock) return -1;
                    if (!regform_ok(0, &x, m, mode)) return -1;
                    return finish(i + 1, lim);
                }
                if (regf == 5) return -1;
                f = L_M;
                break;
            case 0x0F: {  /* 3DNow!: ModRM, then the opcode suffix in the imm8 position */
                static const uint8_t ok3dnow[256] = {
                    [0x0C] = 1, [0x0D] = 1, [0x1C] = 1, [0x1D] = 1, [0x8A] = 1, [0x8E] = 1, [0x90] = 1,
                    [0x94] = 1, [0x96] = 1, [0x97] = 1, [0x9A] = 1, [0x9E] = 1, [0xA0] = 1, [0xA4] = 1,
                    [0xA6] = 1, [0xA7] = 1, [0xAA] = 1, [0xAE] = 1, [0xB0] = 1, [0xB4] = 1, [0xB6] = 1,
                    [0xB7] = 1, [0xBB] = 1, [0xBF] = 1,
                };
                int r = modrm_len(p, lim, i, asize, 0);
                if (r < 0 || (size_t)r >= lim || !ok3dnow[p[r]] || x.lock) return -1;
                return finish((size_t)r + 1, lim);
            }
            case 0xA6: case 0xA7:  /* VIA PadLock: register forms only */
                if (mod != 3 || x.lock || !regform_ok(op - 0xA5, &x, m, mode)) return -1;
                return finish(i + 1, lim);
            case 0x71: case 0x72: case 0x73:
                if (mod != 3) return -1;
                f = L_M | L_I8;
                break;
            case 0x78: case 0x79:
                if (x.rep == 0xF3) return -1;
                if (x.rep == 0xF2 || x.p66) {  /* AMD SSE4a INSERTQ (F2) / EXTRQ (66): registers only */
                    if (mod != 3 || x.lock || (op == 0x78 && x.rep != 0xF2 && regf != 0)) return -1;
                    return finish(i + 1 + (op == 0x78 ? 2 : 0), lim);  /* 0F 78: imm8, imm8 */
                }
                f = L_M;  /* VMREAD / VMWRITE */
                break;
            case 0xB8:
                if (x.rep != 0xF3) return -1;  /* JMPE */
                f = L_M;
                break;
            case 0xBA:
                if (regf < 4) return -1;
                f = L_M | L_I8;
                lockable = regf >= 5;
                break;
            case 0xC7: {  /* group 9: the mandatory prefix selects the form (found by exitlab fuzz) */
                int pf = x.rep ? x.rep : (x.p66 ? 0x66 : 0);
                if (mod == 3) {
                    if (regf < 6 || pf == 0xF2) return -1;      /* RDRAND/RDSEED/RDPID/SENDUIPI */
                    if (regf == 6 && pf == 0xF3 && mode != 64) return -1;  /* SENDUIPI: 64-bit only */
                } else if (regf == 0 || regf == 2) {
                    return -1;
                } else if ((regf >= 3 && regf <= 5) || regf == 7) {
                    if (pf) return -1;                          /* XRSTORS/XSAVEC/XSAVES/VMPTRST: NP */
                } else if (regf == 6 && pf == 0xF2) {
                    return -1;                                  /* VMPTRLD/VMCLEAR/VMXON */
                }
                f = L_M;
                lockable = regf == 1;
                break;
            }
            default:
                return -1;
            }
        }
    }
    if (map == 1 && !sse_ok(op, &x, mod))
        return -1;
    if (map == 1 && op == 0xAE && !grp15_ok(&x, mod, regf, mode))
        return -1;
    if (map == 1 && op >= 0x71 && op <= 0x73) {  /* shift groups 12-14 */
        static const uint8_t grp_ok[3] = {0x54, 0x54, 0xCC};  /* /2 /4 /6 ; /2 /3 /6 /7 */
        if (!(grp_ok[op - 0x71] & (1 << regf)) || ((regf == 3 || regf == 7) && !x.p66))
            return -1;
    }
    if (map == 1 && (op == 0x20 || op == 0x22)) {  /* MOV CRn */
        int cr = regf | ((x.rex & 4) ? 8 : 0);
        if (!(cr == 0 || cr == 2 || cr == 3 || cr == 4 || cr == 8))
            return -1;
    }
    if (map == 1 && (op == 0x21 || op == 0x23) && (x.rex & 4))
        return -1;  /* DR8-15 */
    if ((f & L_LK) && !(map == 0 && op >= 0x80 && op <= 0x83 && regf == 7))
        lockable = 1;  /* LOCK CMP (group 1 /7) is #UD (random-bytes sweep against iced-x86) */
    if (x.lock && (!lockable || mod == 3 || !(f & L_M)))
        return -1;
    if ((f & L_MEMONLY) && mod == 3)
        return -1;
    if (map == 0 && op == 0x8C && regf > 5) return -1;
    if (map == 0 && op == 0x8E && (regf > 5 || regf == 1)) return -1;

    if (f & L_M) {
        int r = modrm_len(p, lim, i, asize, nomod);
        if (r < 0)
            return -1;
        i = (size_t)r;
    }
    if (f & L_I8) imm += 1;
    if (f & L_I16) imm += 2;
    if (f & L_IZ) imm += (f & L_REL) && mode == 64 ? 4 : iz;
    if (f & L_IV) imm += opsize;
    if (f & L_MOFFS) imm += asize;
    return finish(i + (size_t)imm, lim);
}

/* ---------------------------------------------------------------- fast-path tables (insn_length.h) */

/* The tables the fast path reads, generated (gen_len_fast.py calls xl_len_derive below and writes
 * them out as constants): see insn_length.h. */
#include "len_fast.h"

/* Opcodes whose ModRM (reg, mod, sometimes rm) select the form or its validity: the immediate
 * size per (mod, reg) is probed from the full walk. */
static const struct { uint8_t map, op; } fast_groups[] = {
    {0, 0x8C}, {0, 0x8D}, {0, 0x8E}, {0, 0x8F}, {0, 0xC6}, {0, 0xC7}, {0, 0xF6}, {0, 0xF7},
    {0, 0xFE}, {0, 0xFF}, {0, 0xD8}, {0, 0xD9}, {0, 0xDA}, {0, 0xDB}, {0, 0xDC}, {0, 0xDD},
    {0, 0xDE}, {0, 0xDF}, {1, 0x00}, {1, 0x01}, {1, 0xAE}, {1, 0xB2}, {1, 0xB4}, {1, 0xB5},
    {1, 0xBA}, {1, 0xC3}, {1, 0xC7}, {1, 0x71}, {1, 0x72}, {1, 0x73},
};
#define N_FAST_GROUPS ((int)(sizeof fast_groups / sizeof fast_groups[0]))
_Static_assert(sizeof fast_groups / sizeof fast_groups[0] <= XL_NGRP, "group index has 5 bits");

static const uint8_t ctx_prefix[4] = {0, 0x66, 0xF3, 0xF2};

static int is_legacy_prefix(int b)
{
    return b == 0x66 || b == 0x67 || b == 0x26 || b == 0x2E || b == 0x36 || b == 0x3E || b == 0x64 ||
           b == 0x65 || b == 0xF0 || b == 0xF2 || b == 0xF3;
}

static uint8_t prefix_class(int mode, int b)
{
    switch (b) {
    case 0x26: case 0x2E: case 0x36: case 0x3E: case 0x64: case 0x65: return XL_P_SEG;
    case 0x66: return XL_P_66;
    case 0xF3: return XL_P_F3;
    case 0xF2: return XL_P_F2;
    case 0x67: case 0xF0: return XL_P_SLOW;
    default: return mode == 64 && (b & 0xF0) == 0x40 ? XL_P_REX : XL_P_OP;
    }
}

/* ModRM + SIB + displacement bytes (SIB.base = 5 with mod 0: a disp32). */
static int modrm_sib_len(int a16, int m, int sib)
{
    int mod = m >> 6, rm = m & 7, len = 1;
    if (mod == 3)
        return len;
    if (a16) {
        if (mod == 1) len += 1;
        else if (mod == 2 || (mod == 0 && rm == 6)) len += 2;
        return len;
    }
    if (rm == 4) {
        len += 1;
        if (mod == 0 && (sib & 7) == 5) len += 4;
    }
    if (mod == 1) len += 1;
    else if (mod == 2 || (mod == 0 && rm == 5)) len += 4;
    return len;
}

/* Immediate bytes of group g after prefix context ctx, ModRM mod/reg, mode: the same for every rm
 * (else slow), read off the full walk. */
static uint8_t fast_group(int ctx, int mode, int g, int modreg)
{
    int map = fast_groups[g].map, imm = -1;
    for (int rm = 0; rm < 8; rm++) {
        uint8_t buf[16] = {0};
        int k = 0;
        if (ctx)
            buf[k++] = ctx_prefix[ctx];
        if (map)
            buf[k++] = 0x0F;
        buf[k++] = fast_groups[g].op;
        uint8_t m = (uint8_t)(modreg << 3 | rm);
        buf[k] = m;
        int len = xl_insn_length_slow(buf, sizeof buf, mode);
        int base = k + modrm_sib_len(mode == 16, m, 0);
        if (len < 0 || len - base < 0 || len - base > 4 || (imm >= 0 && len - base != imm))
            return XL_G_SLOW;
        imm = len - base;
    }
    return (uint8_t)imm;
}

#define IV4 (1ull << 24) /* fast_class: B8+r (REX.W: 4 more immediate bytes); split off by xl_len_derive */

static uint64_t kind(int k)
{
    return (uint64_t)k << XL_O_KIND_SHIFT;
}

/* Class of an opcode after the prefix context ctx (none, 66, F3, F2; REX allowed): its immediate
 * size, ModRM and forms, or a kind for what the common case does not cover. */
static uint64_t fast_class(int ctx, int mode, int map, int op)
{
    uint16_t f = map ? len_map1[op] : len_map0[op];
    for (int g = 0; g < N_FAST_GROUPS; g++) {
        if (fast_groups[g].map != map || fast_groups[g].op != op)
            continue;
        /* one immediate size over every existing (mod, reg) form: a plain class with those forms;
         * else the group table decides per form */
        uint64_t forms = 0;
        int imm = -1, uniform = 1;
        for (int mr = 0; mr < 32; mr++) {
            uint8_t v = fast_group(ctx, mode, g, mr);
            if (v & XL_G_SLOW)
                continue;
            forms |= 1ull << mr;
            if (imm >= 0 && v != imm)
                uniform = 0;
            imm = v;
        }
        if (!forms || !uniform)
            return kind(XL_K_GRP) | (uint64_t)g << XL_O_GRP_SHIFT;
        return (1 + (uint64_t)imm) | XL_O_MODRM | forms << XL_O_FORMS_SHIFT;
    }
    if (map == 0) {
        if (mode == 64 && (op & 0xF0) == 0x40)
            return kind(XL_K_REX);
        if (op == 0x0F)
            return kind(XL_K_ESC);
        if (is_legacy_prefix(op))
            return kind(XL_K_PREFIX);
    }
    if (f & (L_INV | L_SPEC | L_MEMONLY | L_NOMOD) || ((f & L_INV64) && mode == 64))
        return kind(XL_K_SLOW);
    if (map == 1) {
        static const uint8_t mp[4] = {P_N, P_66, P_F3, P_F2};
        uint8_t s = sse_pfx[op];
        if (s && (!(s & mp[ctx]) || (s & (P_MEM | P_REG))))
            return kind(XL_K_SLOW);  /* mandatory prefix or ModRM form rules */
        if (s && ((ctx == 1 && (op == 0x12 || op == 0x16)) || (ctx != 1 && op == 0xD6)))
            return kind(XL_K_SLOW);  /* per-prefix ModRM forms (sse_ok) */
    }
    int opsize = ctx == 1 ? (mode == 16 ? 4 : 2) : (mode == 16 ? 2 : 4);
    if ((f & L_IV) && ctx == 1 && mode == 64)
        return kind(XL_K_SLOW);
    int imm = 0;
    if (f & L_I8) imm += 1;
    if (f & L_I16) imm += 2;
    if (f & L_IZ) imm += (f & L_REL) && mode == 64 ? 4 : opsize;
    if (f & L_IV) imm += opsize;
    if (f & L_MOFFS) imm += mode / 8;
    uint64_t e = (1 + (uint64_t)imm) | 0xFFFFFFFFull << XL_O_FORMS_SHIFT;
    if (f & L_M) e |= XL_O_MODRM;
    if ((f & L_IV) && mode == 64) e |= IV4;
    return e;
}

void xl_len_derive(struct xl_len_tables *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 2048; i++) {
        int m = i & 0xFF, sib = i >> 8;
        uint16_t form = (uint16_t)((32 + (m >> 3)) << 8);
        t->ml[0][i] = (uint16_t)(modrm_sib_len(0, m, sib) | form);
        t->ml[1][i] = (uint16_t)(modrm_sib_len(1, m, sib) | form);
    }
    for (int mi = 0; mi < 3; mi++) {
        for (int b = 0; b < 256; b++)
            t->pfx[mi][b] = prefix_class(16 << mi, b);
        for (int ctx = 0; ctx < 4; ctx++) {
            for (int map = 0; map < 2; map++)
                for (int op = 0; op < 256; op++) {
                    uint64_t e = fast_class(ctx, 16 << mi, map, op);
                    t->op[ctx][mi][map][op] = e & ~IV4;
                    if (map == 0)
                        t->op_rex[ctx][mi][op] = e & IV4 ? kind(XL_K_IMMV) | (e & XL_O_BASE) : e;
                }
            for (int g = 0; g < N_FAST_GROUPS; g++)
                for (int mr = 0; mr < 32; mr++)
                    t->grp[ctx][mi][g][mr] = fast_group(ctx, 16 << mi, g, mr);
        }
    }
}

const struct xl_len_tables *xl_len_tables_compiled(void)
{
    return &xl_lt;
}

/* A group opcode at p[i] after prefix context ctx (REX allowed): its immediate per (mod, reg); or
 * B8+r after a REX. */
static inline __attribute__((always_inline)) int len_group(const uint8_t *p, size_t n, unsigned i,
                                                           unsigned ctx, int mi)
{
    const uint64_t(*op)[256] = xl_lt.op[ctx][mi];
    uint64_t e = op[0][p[i]];
    if (((e >> XL_O_KIND_SHIFT) & 7) == XL_K_REX) {
        unsigned w = (p[i] >> 3) & 1;
        e = xl_lt.op_rex[ctx][mi][p[++i]];
        if (((e >> XL_O_KIND_SHIFT) & 7) == XL_K_IMMV) {
            unsigned len = i + (unsigned)(e & XL_O_BASE) + 4 * w;
            return len <= 15 ? (int)len : -1;
        }
    }
    if (((e >> XL_O_KIND_SHIFT) & 7) == XL_K_ESC)
        e = op[1][p[++i]];
    i++;
    if (((e >> XL_O_KIND_SHIFT) & 7) != XL_K_GRP)
        return xl_insn_length_slow(p, n, 16 << mi);
    uint8_t imm = xl_lt.grp[ctx][mi][(e >> XL_O_GRP_SHIFT) & 0x1F][p[i] >> 3];
    if (imm & XL_G_SLOW)
        return xl_insn_length_slow(p, n, 16 << mi);
    unsigned len = i + imm + (xl_lt.ml[mi == 0][xl_ld16(p + i) & 0x7FF] & 0xFF);
    return len <= 15 ? (int)len : -1;
}

/* Out of line: the minority (legacy prefixes, groups whose immediate depends on ModRM.reg, the full
 * walk), and the hot loop stays small.  Called with at least 15 bytes at p. */
static inline __attribute__((always_inline)) int len_other(const uint8_t *p, size_t n, int mi)
{
    /* (one prefix then the common case was handled inline in xl_insn_length_mi) */
    unsigned i = 0, ctx = 0, pc = xl_lt.pfx[mi][p[0]];
    if (pc != XL_P_OP && pc != XL_P_REX) {
        /* segment prefixes and one of 66 / F3 / F2 (repeated or not: nop padding has 66 66 2E),
         * at most 8, so that neither xl_len_core (p[i + 4]) nor len_group (p[i + 5]) reads past
         * the 15 bytes */
        for (;;) {
            if (pc >= XL_P_SLOW || i >= 8 || (pc >= XL_P_66 && ctx && ctx != pc - 1))
                return xl_insn_length_slow(p, n, 16 << mi);
            if (pc >= XL_P_66)
                ctx = pc - 1;
            pc = xl_lt.pfx[mi][p[++i]];
            if (pc == XL_P_OP || pc == XL_P_REX)
                break;
        }
        if (ctx == 1 && pc == XL_P_REX && (p[i] & 8))  /* 66 with REX.W: REX.W wins the operand size */
            return xl_insn_length_slow(p, n, 16 << mi);
        unsigned len;
        if (xl_len_core(p + i, mi, ctx, &len))
            return i + len <= 15 ? (int)(i + len) : -1;
    }
    return len_group(p, n, i, ctx, mi);
}

/* one per mode, so that the mode is a constant there as in the inlined fast path */
int xl_len_other16(const uint8_t *p, size_t n)
{
    return len_other(p, n, 0);
}
int xl_len_other32(const uint8_t *p, size_t n)
{
    return len_other(p, n, 1);
}
int xl_len_other64(const uint8_t *p, size_t n)
{
    return len_other(p, n, 2);
}

int xl_insn_length(const uint8_t *p, size_t n, int mode)
{
    return xl_insn_length_inline(p, n, mode);
}
