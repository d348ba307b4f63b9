/* Decoder benchmark loops for `exitlab bench --decoders` (exitlab/tools/decoderbench.py).
 *
 * xl_bench_sweep() walks a whole buffer (a .text section) with one decoder, in C, and times the
 * walk; an invalid position advances one byte.  xl_bench_lengths_at() gives the decoder's length
 * at given offsets (the instruction boundaries of the reference decoder), for the exactness counts.
 */
#ifndef XL_DECODERBENCH_H
#define XL_DECODERBENCH_H

#include <stddef.h>
#include <stdint.h>

enum xl_decoder {
    XL_DEC_LENGTH = 0,          /* xl_insn_length */
    XL_DEC_SUBSET = 1,          /* xl_decode_subset */
    XL_DEC_CAPSTONE = 2,        /* cs_disasm_iter, CS_OPT_DETAIL off */
    XL_DEC_CAPSTONE_DETAIL = 3, /* cs_disasm_iter, CS_OPT_DETAIL on */
    XL_DEC_LENGTH_SLOW = 4,     /* xl_insn_length_slow: the full walk without the fast path */
};

struct xl_sweep {
    uint64_t insns;  /* instructions decoded */
    uint64_t bad;    /* positions skipped (invalid / not mine), one byte each */
    uint64_t bytes;
    uint64_t ns;     /* CPU time of the walk (CLOCK_THREAD_CPUTIME_ID): robust on a shared machine */
    uint64_t wall_ns; /* wall time of the walk (CLOCK_MONOTONIC) */
};

/* 0, or -1 for an unknown decoder / a Capstone handle that cannot be opened. */
int xl_bench_sweep(int decoder, const uint8_t *buf, size_t n, int mode, struct xl_sweep *out);

/* out[j] = length at buf + offs[j] (bounded by n), or -1. */
int xl_bench_lengths_at(int decoder, const uint8_t *buf, size_t n, int mode, const uint32_t *offs, size_t k,
                        int8_t *out);

#endif
