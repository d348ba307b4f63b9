/* Standalone sanitizer driver: the decoder, the length function, every path and the replay loop
 * built with -fsanitize=address,undefined, fed the committed corpus and seeded random inputs.
 * Any sanitizer report aborts (-fno-sanitize-recover=all).  No Python, no Unicorn.
 *
 *   exitlab_asan CORPUS_DIR N_RANDOM SEED
 *
 * An input is: byte 0 mode selector, byte 1 exit kind, bytes 2..16 instruction bytes, the rest
 * seeds the registers.  Instruction bytes are copied into a heap buffer of exactly the length
 * under test, so any read past the end is an ASan report. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "insn_subset.h"
#include "lockguard.h"
#include "paths.h"
#include "replay.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static const int modes[3] = {16, 32, 64};
static uint64_t n_inputs, n_subset, n_len_ok;

static uint64_t pick_reg(uint64_t seed, uint64_t salt)
{
    static const uint64_t interesting[] = {0, 1, 0xFEB00000ull, 0xFEB01000ull, 0xFEB00FFFull, 0xFFFFFFFFull,
                                           0x8000, 0x7FFFFFFFFFFFFFFFull, 0xFFFFFFFFFFFFFFFFull, 0x1000};
    uint64_t v = seed * 0x9E3779B97F4A7C15ull + salt;
    v ^= v >> 31;
    return (v & 1) ? interesting[(v >> 1) % 10] + ((v >> 8) & 0xFF) : v;
}

static void run_input(struct xl_ctx *ctx, const uint8_t *data, size_t len)
{
    int mode = modes[len > 0 ? data[0] % 3 : 2];
    uint8_t kind = len > 1 ? data[1] % 5 : 0;
    size_t ilen = len > 2 ? len - 2 : 0;
    if (ilen > XL_MAX_INSN)
        ilen = XL_MAX_INSN;
    const uint8_t *insn = data + (len > 2 ? 2 : len);
    n_inputs++;

    /* decoder and length on every truncation, each in an exact-size heap buffer */
    for (size_t n = 0; n <= ilen; n++) {
        uint8_t *buf = malloc(n ? n : 1);
        memcpy(buf, insn, n);
        struct xl_insn d;
        for (int m = 0; m < 3; m++) {
            int a = xl_decode_subset(buf, n, modes[m], &d);
            int b = xl_insn_length(buf, n, modes[m]);
            if (a > 0) {
                n_subset++;
                if (a > (int)n || d.len != a) { fprintf(stderr, "subset length out of range\n"); abort(); }
                if (b >= 0 && b != a) { fprintf(stderr, "subset/length disagree\n"); abort(); }
            }
            if (b > (int)n || b > 15) { fprintf(stderr, "length %d > available %zu\n", b, n); abort(); }
            /* the code guard's classifier and page scan on the same exact-size buffer */
            struct xl_guarded g;
            xl_guard_classify(buf, n, modes[m], &g);
            if (g.length < 0 || g.length > (int)n) { fprintf(stderr, "guard length out of range\n"); abort(); }
            uint64_t sites[8];
            size_t ns = xl_lock_scan(buf, n, 0x8000, modes[m], sites, 8);
            for (size_t q = 0; q < ns && q < 8; q++)
                if (sites[q] < 0x8000 || sites[q] >= 0x8000 + n) { fprintf(stderr, "site out of range\n"); abort(); }
            if (b > 0)
                n_len_ok++;
        }
        free(buf);
    }

    /* every path on a record built from the input */
    struct xl_record *rec = calloc(1, sizeof(*rec));
    uint64_t seed = 0;
    for (size_t i = 0; i < len; i++)
        seed = seed * 131 + data[i];
    for (int i = 0; i < XL_NREGS; i++)
        rec->regs[i] = pick_reg(seed, (uint64_t)i);
    rec->regs[XL_RIP] = 0x8000;
    rec->rip = 0x8000;
    rec->regs[1] &= 0xFF;  /* keep REP counts small */
    memcpy(rec->insn, insn, ilen);
    rec->insn_len = (uint8_t)ilen;
    rec->kind = kind;
    rec->mode = (uint8_t)mode;
    rec->size = (uint8_t)(1u << (seed % 4));
    rec->addr = (seed & 2) ? 0xFEB00000ull + (seed >> 8) % 0x2000 : pick_reg(seed, 99);
    rec->value = seed;
    struct xl_result res;
    uint64_t regs[XL_NREGS];
    for (int p = 0; p < XL_NPATHS; p++)
        xl_replay_one(ctx, p, rec, &res, regs);

    /* a RAM-backed CPU (as in live mode) with a small RAM, so string operands hit its edges */
    size_t ram_size = 1 + (size_t)(seed % 64);
    uint8_t *ram = malloc(ram_size);
    memset(ram, (int)(seed & 0xFF), ram_size);
    memcpy(ram, insn, ilen < ram_size ? ilen : ram_size);
    struct xl_cpu cpu;
    memset(&cpu, 0, sizeof(cpu));
    cpu.src = rec->regs;
    cpu.mode = mode;
    cpu.mem = ram;
    cpu.wmem = ram;
    cpu.mem_base = 0x8000;
    cpu.mem_size = ram_size;
    rec->regs[6] = 0x8000 + (seed % 80);   /* rSI near/inside RAM */
    rec->regs[7] = (seed & 4) ? 0xFEB00000ull + (seed % 16) : 0x8000 + ((seed >> 4) % 80);
    struct xl_exit ex = {rec->addr, rec->value, (uint32_t)(kind % 2), rec->size};
    for (int p = 2; p < XL_NPATHS; p++) {
        cpu.valid = cpu.dirty = 0;
        xl_handle(ctx, p, &ex, &cpu, &res);
        cpu.flags ^= XL_CPU_ONE_ELEMENT;
    }
    free(ram);
    free(rec);
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CORPUS_DIR N_RANDOM SEED\n", argv[0]);
        return 2;
    }
    struct xl_ctx *ctx = malloc(sizeof(*ctx));
    xl_ctx_init(ctx);
    if (xl_ctx_open_capstone(ctx) != 0) {
        fprintf(stderr, "capstone: cs_open failed\n");
        return 2;
    }
    uint8_t buf[256];
    size_t ncorpus = 0;
    DIR *dir = opendir(argv[1]);
    if (!dir) {
        fprintf(stderr, "cannot open corpus %s\n", argv[1]);
        return 2;
    }
    struct dirent *de;
    static uint8_t tmpl[4096][32];
    static size_t tmpl_len[4096];
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
        size_t n = read_file(path, buf, sizeof(buf));
        run_input(ctx, buf, n);
        if (ncorpus < 4096) {
            tmpl_len[ncorpus] = n < 32 ? n : 32;
            memcpy(tmpl[ncorpus], buf, tmpl_len[ncorpus]);
        }
        ncorpus++;
    }
    closedir(dir);

    unsigned long long nrand = strtoull(argv[2], NULL, 0);
    rng_state = strtoull(argv[3], NULL, 0) * 0x9E3779B97F4A7C15ull + 1;
    size_t nt = ncorpus < 4096 ? ncorpus : 4096;
    for (unsigned long long i = 0; i < nrand; i++) {
        size_t n = 2 + (size_t)(rnd() % 30);
        uint64_t r = rnd();
        if (nt && (r & 1)) {  /* mutate a corpus entry */
            size_t k = (size_t)(rnd() % nt);
            n = tmpl_len[k];
            memcpy(buf, tmpl[k], n);
            for (int j = 0; j < 1 + (int)(rnd() % 3) && n; j++)
                buf[rnd() % n] = (uint8_t)rnd();
        } else {
            for (size_t j = 0; j < n; j++)
                buf[j] = (uint8_t)rnd();
        }
        run_input(ctx, buf, n);
    }

    /* the hot loop over a packed array */
    size_t nrec = 4096;
    struct xl_record *recs = calloc(nrec, sizeof(*recs));
    struct xl_result *results = calloc(nrec, sizeof(*results));
    for (size_t i = 0; i < nrec; i++) {
        for (int j = 0; j < XL_NREGS; j++)
            recs[i].regs[j] = rnd() & 0xFF;
        recs[i].regs[XL_RIP] = 0x8000;
        recs[i].rip = 0x8000;
        recs[i].insn_len = (uint8_t)(rnd() % 16);
        for (int j = 0; j < 15; j++)
            recs[i].insn[j] = (uint8_t)rnd();
        if (rnd() & 1)
            memcpy(recs[i].insn, "\x66\x89\x02", 3);
        recs[i].kind = (uint8_t)(rnd() % 6);  /* includes an invalid kind */
        recs[i].mode = (uint8_t)modes[rnd() % 3];
        recs[i].addr = 0xFEB00000ull + rnd() % 0x2000;
    }
    struct xl_replay_stats st;
    for (int p = 0; p < XL_NPATHS + 1; p++) {
        xl_replay(ctx, p, recs, nrec, results, &st);
        xl_replay(ctx, p, recs, nrec, NULL, &st);
    }

    /* malformed records (issue 13 C2): every header byte garbage -- PIO sizes 0/3/5-255 (a size of
     * 9 was a "shift exponent 64" in xl_pio), modes other than 16/32/64, insn_len > 15, unknown
     * kinds.  The replay must reject each one (status XL_E_RECORD) and touch nothing. */
    static const uint8_t bad_sizes[] = {0, 3, 5, 7, 8, 9, 16, 64, 65, 128, 255};
    static const uint8_t bad_modes[] = {0, 1, 8, 15, 17, 31, 33, 63, 65, 128, 255};
    uint64_t console0 = ctx->dev.console_len, rejected = 0;
    for (size_t i = 0; i < nrec; i++) {
        struct xl_record *r = &recs[i];
        switch (i % 4) {
        case 0:
            r->kind = (uint8_t)(XL_PIO_OUT + (rnd() & 1));
            r->size = bad_sizes[rnd() % sizeof(bad_sizes)];
            r->addr = 0x3F8;
            break;
        case 1:
            r->mode = bad_modes[rnd() % sizeof(bad_modes)];
            break;
        case 2:
            r->insn_len = (uint8_t)(16 + rnd() % 240);
            break;
        default:
            r->kind = (uint8_t)(5 + rnd() % 251);
            break;
        }
    }
    for (int p = 0; p < XL_NPATHS + 1; p++) {
        xl_replay(ctx, p, recs, nrec, results, &st);
        for (size_t i = 0; i < nrec; i++)
            rejected += results[i].status == XL_E_RECORD;
        uint64_t regs_out[XL_NREGS];
        for (size_t i = 0; i < 64; i++)
            if (xl_replay_one(ctx, p, &recs[i], &results[0], regs_out) != XL_E_RECORD) {
                fprintf(stderr, "malformed record %zu accepted by xl_replay_one\n", i);
                abort();
            }
    }
    if (rejected != (uint64_t)nrec * (XL_NPATHS + 1) || ctx->dev.console_len != console0) {
        fprintf(stderr, "malformed records: %llu of %llu rejected\n", (unsigned long long)rejected,
                (unsigned long long)nrec * (XL_NPATHS + 1));
        abort();
    }

    /* the paths called directly (as the live hooks do) with out-of-range exit sizes and modes */
    {
        uint8_t ram[64];
        memset(ram, 0xEE, sizeof(ram));
        struct xl_cpu cpu;
        struct xl_result res;
        static const uint64_t regs0[XL_NREGS] = {0x41, 3, 0x3F8, 0, 0, 0, 0x8000, 0xFEB00000ull};
        for (int k = 0; k < 5; k++) {
            for (size_t j = 0; j < sizeof(bad_sizes); j++) {
                memset(&cpu, 0, sizeof(cpu));
                cpu.src = regs0;
                cpu.mode = (j & 1) ? bad_modes[j % sizeof(bad_modes)] : 64;
                cpu.mem = cpu.wmem = ram;
                cpu.mem_base = 0x8000;
                cpu.mem_size = sizeof(ram);
                struct xl_exit ex = {k < 2 ? 0xFEB00000ull : 0x3F8, ~0ull, (uint32_t)k, bad_sizes[j]};
                for (int p = 0; p < XL_NPATHS + 1; p++)
                    xl_handle(ctx, p, &ex, &cpu, &res);
            }
        }
    }
    free(recs);
    free(results);
    printf("asan driver: %zu corpus files, %llu random inputs, %llu inputs total, %llu subset decodes, "
           "%llu lengths; no sanitizer report\n",
           ncorpus, nrand, (unsigned long long)n_inputs, (unsigned long long)n_subset,
           (unsigned long long)n_len_ok);
    xl_ctx_close(ctx);
    free(ctx);
    return 0;
}
