/* The MMIO subset decoder and the x86 instruction-length function.
 *
 * xl_decode_subset() knows exactly the instructions a guest uses to touch MMIO (the shape of
 * Linux's insn_decode_mmio()): MOV 88/89/8A/8B/C6/C7, moffs A0-A3, MOVZX/MOVSX 0F B6/B7/BE/BF,
 * MOVSXD (63 with REX.W), MOVS/STOS A4/A5/AA/AB with REP (the [subset] rows of
 * emu/x86-opcode-map.txt, generated into opmap_subset.h).  Everything else is "not mine" (0).
 *
 * xl_insn_length() returns the length of any instruction of the legacy, 0F, 0F38 and 0F3A maps
 * (with prefixes and REX, 3DNow! included) and of VEX (maps 1-3) and EVEX (maps 1-3, 5, 6) ones, or
 * -1: invalid as iced-x86 decodes it (the VEX/EVEX validity is generated from iced-x86, see
 * gen_vex_pp.py), or a class it does not cover (AMD XOP).  It never guesses.
 */
#ifndef XL_INSN_SUBSET_H
#define XL_INSN_SUBSET_H

#include <stddef.h>
#include <stdint.h>

#include "opmap.h"  /* enum xl_mmio_kind, generated from emu/x86-opcode-map.txt */

enum xl_seg { XL_SEG_NONE = 0, XL_SEG_ES, XL_SEG_CS, XL_SEG_SS, XL_SEG_DS, XL_SEG_FS, XL_SEG_GS };

#define XL_NOREG 0xff
#define XL_BASE_RIP 16

struct xl_insn {
    int64_t disp;        /* displacement (sign-extended), or the moffs address */
    uint64_t imm;        /* WRITE_IMM: immediate, sign-extended to the operand size, masked */
    uint8_t kind;        /* enum xl_mmio_kind */
    uint8_t size;        /* memory operand size in bytes (1/2/4/8) */
    uint8_t dst_size;    /* register size for reads/extensions; register source size for writes */
    uint8_t reg;         /* register number 0-15 (for AH..BH: 0-3 with hi8 = 1) */
    uint8_t hi8;         /* reg is AH/CH/DH/BH */
    uint8_t len;         /* instruction length */
    uint8_t rep;         /* 0, 0xF3 (REP) or 0xF2 (REPNE, which MOVS/STOS treat as REP) */
    uint8_t seg;         /* enum xl_seg override, XL_SEG_NONE if none */
    uint8_t addr_size;   /* 2/4/8 */
    uint8_t base;        /* 0-15, XL_BASE_RIP, or XL_NOREG */
    uint8_t index;       /* 0-15 or XL_NOREG */
    uint8_t scale;       /* 1/2/4/8 */
    uint8_t rex;
    uint8_t opcode;
    uint8_t map;         /* 0: one-byte, 1: 0F */
    uint8_t pad;
};

/* Decode one instruction of the subset at p[0..n).  Returns its length (>0) with *out filled,
 * or 0 if the bytes are outside the subset (including LOCK, register-only forms and truncation). */
int xl_decode_subset(const uint8_t *p, size_t n, int mode, struct xl_insn *out);

/* Length of the instruction at p[0..n), or -1.  A fast path for the common cases (insn_length.h,
 * inlinable there) in front of the full walk, xl_insn_length_slow(), which gives the same answer. */
int xl_insn_length(const uint8_t *p, size_t n, int mode);
int xl_insn_length_slow(const uint8_t *p, size_t n, int mode);

#endif
