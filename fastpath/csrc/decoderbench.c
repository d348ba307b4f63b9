/* Decoder benchmark loops (see decoderbench.h): each walks a whole buffer in C, so one cffi call
 * times millions of instructions and the call overhead is not what gets measured. */
#include "decoderbench.h"

#include <time.h>

#include <capstone/capstone.h>

#include "insn_length.h"
#include "insn_subset.h"

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cs_mode_of(int mode)
{
    return mode == 16 ? CS_MODE_16 : mode == 32 ? CS_MODE_32 : CS_MODE_64;
}

/* One decoder's length at p[0..n): > 0, or <= 0 for "invalid / not mine". */
static int one_length(int decoder, const uint8_t *p, size_t n, int mode, csh h, cs_insn *ci)
{
    switch (decoder) {
    case XL_DEC_LENGTH:
        return xl_insn_length(p, n, mode);
    case XL_DEC_LENGTH_SLOW:
        return xl_insn_length_slow(p, n, mode);
    case XL_DEC_SUBSET: {
        struct xl_insn d;
        return xl_decode_subset(p, n, mode, &d);
    }
    default: {
        const uint8_t *code = p;
        size_t left = n < 15 ? n : 15;
        uint64_t addr = 0x1000;
        if (!cs_disasm_iter(h, &code, &left, &addr, ci))
            return -1;
        return (int)ci->size;
    }
    }
}

static int cs_setup(int decoder, int mode, csh *h, cs_insn **ci)
{
    *h = 0;
    *ci = NULL;
    if (decoder != XL_DEC_CAPSTONE && decoder != XL_DEC_CAPSTONE_DETAIL)
        return 0;
    if (cs_open(CS_ARCH_X86, (cs_mode)cs_mode_of(mode), h) != CS_ERR_OK)
        return -1;
    cs_option(*h, CS_OPT_DETAIL, decoder == XL_DEC_CAPSTONE_DETAIL ? CS_OPT_ON : CS_OPT_OFF);
    *ci = cs_malloc(*h);
    if (!*ci) {
        cs_close(h);
        return -1;
    }
    return 0;
}

static void cs_teardown(csh *h, cs_insn *ci)
{
    if (ci)
        cs_free(ci, 1);
    if (*h)
        cs_close(h);
}

int xl_bench_sweep(int decoder, const uint8_t *buf, size_t n, int mode, struct xl_sweep *out)
{
    csh h;
    cs_insn *ci;
    if (decoder < XL_DEC_LENGTH || decoder > XL_DEC_LENGTH_SLOW || cs_setup(decoder, mode, &h, &ci) < 0)
        return -1;
    uint64_t insns = 0, bad = 0, w0 = now_ns(CLOCK_MONOTONIC), t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    size_t pos = 0;
    if (decoder == XL_DEC_LENGTH) {
        /* one loop per mode over xl_insn_length_mi (insn_length.h), walking a pointer (the walk is
         * one serial chain: no index arithmetic on it).  GCC keeps xl_insn_length_mi out of line
         * here, one copy for the three loops; forcing it inline, or one out-of-line copy per mode,
         * measured 2-4% slower (code layout), so it is left to the compiler. */
        const uint8_t *q = buf, *end = buf + n;
#define XL_SWEEP(MI)                                                       \
    while (q < end) {                                                      \
        int len = xl_insn_length_mi(q, (size_t)(end - q), MI);             \
        if (len > 0) {                                                     \
            insns++;                                                       \
            q += (unsigned)len;                                            \
        } else {                                                           \
            bad++;                                                         \
            q++;                                                           \
        }                                                                  \
    }
        if (mode == 64)
            XL_SWEEP(2)
        else if (mode == 32)
            XL_SWEEP(1)
        else
            XL_SWEEP(0)
#undef XL_SWEEP
    } else if (decoder == XL_DEC_LENGTH_SLOW) {
        while (pos < n) {
            int len = xl_insn_length_slow(buf + pos, n - pos, mode);
            if (len > 0) {
                insns++;
                pos += (size_t)len;
            } else {
                bad++;
                pos++;
            }
        }
    } else if (decoder == XL_DEC_SUBSET) {
        struct xl_insn d;
        while (pos < n) {
            int len = xl_decode_subset(buf + pos, n - pos, mode, &d);
            if (len > 0) {
                insns++;
                pos += (size_t)len;
            } else {
                bad++;
                pos++;
            }
        }
    } else {
        const uint8_t *code = buf;
        size_t left = n;
        uint64_t addr = 0x1000;
        while (left) {
            if (cs_disasm_iter(h, &code, &left, &addr, ci)) {
                insns++;
            } else {
                bad++;
                code++;
                left--;
                addr++;
            }
        }
    }
    out->ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
    out->wall_ns = now_ns(CLOCK_MONOTONIC) - w0;
    out->insns = insns;
    out->bad = bad;
    out->bytes = n;
    cs_teardown(&h, ci);
    return 0;
}

int xl_bench_lengths_at(int decoder, const uint8_t *buf, size_t n, int mode, const uint32_t *offs, size_t k,
                        int8_t *out)
{
    csh h;
    cs_insn *ci;
    if (decoder < XL_DEC_LENGTH || decoder > XL_DEC_LENGTH_SLOW || cs_setup(decoder, mode, &h, &ci) < 0)
        return -1;
    for (size_t j = 0; j < k; j++) {
        size_t o = offs[j];
        int len = o < n ? one_length(decoder, buf + o, n - o, mode, h, ci) : -1;
        out[j] = (int8_t)(len > 0 ? len : -1);
    }
    cs_teardown(&h, ci);
    return 0;
}
