/* IDIV r/m32 host-trap guard for the live engine (divguard.h).  No allocation per exit or per hook. */
#include <stdlib.h>
#include <string.h>

#include "divguard.h"
#include "insn_subset.h"

#define MAX_INSN 15
#define TRAP_EDX 0x80000000ull /* EDX:EAX = 0x80000000_00000000 = INT64_MIN */
#define TRAP_DIVISOR 0xFFFFFFFFull

int xl_idiv32(const uint8_t *p, size_t n, int mode, struct xl_idiv32 *out)
{
    size_t i = 0;
    int has66 = 0, locked = 0;
    uint8_t rex = 0;
    for (; i < n && i < MAX_INSN && xl_is_prefix(p[i], mode); i++) {
        has66 |= p[i] == 0x66;
        locked |= p[i] == 0xF0;
        rex = (mode == 64 && p[i] >= 0x40 && p[i] <= 0x4F) ? p[i] : 0; /* counts only right before F7 */
    }
    if (i + 1 >= n || i + 2 > MAX_INSN || p[i] != 0xF7 || ((p[i + 1] >> 3) & 7) != 7)
        return 0;
    int size = mode == 64 ? ((rex & 8) ? 64 : has66 ? 16 : 32) : mode == 32 ? (has66 ? 16 : 32) : (has66 ? 32 : 16);
    if (size != 32)
        return 0;
    out->opcode = (int)i;
    out->modrm = p[i + 1];
    out->rex = rex;
    out->locked = (uint8_t)locked;
    return 1;
}

size_t xl_idiv32_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap)
{
    size_t found = 0;
    struct xl_idiv32 f;
    for (size_t k = 0; k + 1 < n; k++) {
        if (data[k] != 0xF7 || ((data[k + 1] >> 3) & 7) != 7)
            continue;
        size_t first = k;
        while (first > 0 && k - first < MAX_INSN - 2 && xl_is_prefix(data[first - 1], mode))
            first--;
        for (size_t s = first; s <= k; s++) {
            size_t left = n - s < MAX_INSN ? n - s : MAX_INSN;
            if (xl_idiv32(data + s, left, mode, &f)) {
                if (found < cap)
                    out[found] = base + s;
                found++;
            }
        }
    }
    return found;
}

int xl_dg_init(struct xl_divguard *g, uc_engine *uc, const int *ids, const struct xl_ctx *ctx, const uint8_t *ram,
               uint64_t ram_base, uint64_t ram_size, int mode, int inplace,
               void (*stop)(void *ud, uint64_t rip, int vector), void *ud)
{
    memset(g, 0, sizeof(*g));
    g->uc = uc;
    g->ids = ids;
    g->ctx = ctx;
    g->ram = ram;
    g->ram_base = ram_base;
    g->ram_size = ram_size;
    g->mode = mode;
    g->inplace = inplace;
    g->stop = stop;
    g->ud = ud;
    g->de_at = XL_DG_NONE;
    return xl_sh_init(&g->hooks, uc, XL_DG_MAX_SITES);
}

void xl_dg_free(struct xl_divguard *g)
{
    xl_sh_free(&g->hooks);
}

static int trapping_dividend(uc_engine *uc)
{
    uint64_t edx = 0, eax = 0;
    uc_reg_read(uc, UC_X86_REG_EDX, &edx);
    if ((edx & 0xFFFFFFFFull) != TRAP_EDX)
        return 0;
    uc_reg_read(uc, UC_X86_REG_EAX, &eax);
    return (eax & 0xFFFFFFFFull) == 0;
}

/* The instruction at rip, or NULL (outside RAM); *n the bytes available (at most 15). */
static const uint8_t *code_at(const struct xl_divguard *g, uint64_t rip, size_t *n)
{
    uint64_t off = rip - g->ram_base;
    if (rip < g->ram_base || off >= g->ram_size)
        return NULL;
    uint64_t left = g->ram_size - off;
    *n = left < MAX_INSN ? (size_t)left : MAX_INSN;
    return g->ram + off;
}

enum { DIV_NONE, DIV_VALUE, DIV_DEVICE };

/* The memory divisor of the IDIV r/m32 at p: DIV_VALUE with *v for a dword in RAM, DIV_DEVICE for a
 * device window in place, DIV_NONE otherwise (exit style device, unmapped: the read faults first;
 * bytes the subset decoder refuses or longer than 15: Unicorn raises #GP/#UD itself).  Decoded as
 * the MOV load 8B with the same ModRM (the subset decoder takes neither F7 nor LOCK/F2/F3, which
 * become 66: they leave the address, and a REX before them, as they are). */
static int mem_divisor(const struct xl_divguard *g, const uint8_t *p, size_t n, const struct xl_idiv32 *f,
                       uint64_t rip, uint64_t *v)
{
    uint8_t buf[MAX_INSN];
    memcpy(buf, p, n);
    for (int i = 0; i < f->opcode; i++)
        if (buf[i] == 0xF0 || buf[i] == 0xF2 || buf[i] == 0xF3)
            buf[i] = 0x66;
    buf[f->opcode] = 0x8B;
    struct xl_insn d;
    int len = xl_decode_subset(buf, n, g->mode, &d);
    if (len <= 0 || d.kind != XL_K_READ)
        return DIV_NONE;
    uint64_t ea = (uint64_t)d.disp;
    if (d.base == XL_BASE_RIP)
        ea += rip + (uint64_t)len;
    else if (d.base != XL_NOREG)
        ea += xl_uc_reg(g->uc, g->ids, d.base);
    if (d.index != XL_NOREG)
        ea += xl_uc_reg(g->uc, g->ids, d.index) * d.scale;
    if (d.addr_size < 8)
        ea &= (1ull << (8 * d.addr_size)) - 1;
    if (d.seg == XL_SEG_FS || d.seg == XL_SEG_GS)
        ea += xl_uc_reg(g->uc, g->ids, d.seg == XL_SEG_FS ? XL_FS_BASE : XL_GS_BASE);
    if (g->mode != 64)
        ea &= 0xFFFFFFFFull;
    if (ea >= g->ram_base && ea - g->ram_base <= g->ram_size - 4) {
        uint32_t w;
        memcpy(&w, g->ram + (ea - g->ram_base), 4);
        *v = w;
        return DIV_VALUE;
    }
    return g->inplace && xl_dev_claims(g->ctx, ea) ? DIV_DEVICE : DIV_NONE;
}

/* EDX:EAX is the trapping dividend at rip: stop when the IDIV r/m32 there divides by -1. */
static void check(struct xl_divguard *g, uint64_t rip)
{
    size_t n;
    const uint8_t *p = code_at(g, rip, &n);
    struct xl_idiv32 f;
    if (!p || !xl_idiv32(p, n, g->mode, &f))
        return;
    uint64_t v = 0;
    if (f.modrm >> 6 == 3) {
        v = xl_uc_reg(g->uc, g->ids, (f.modrm & 7) | ((f.rex & 1) ? 8 : 0));
    } else {
        int where = mem_divisor(g, p, n, &f, rip, &v);
        if (where == DIV_NONE)
            return;
        if (where == DIV_DEVICE) {
            if (!f.locked) {
                g->de_at = rip; /* the device read decides (xl_dg_device_value) */
                return;
            }
            v = TRAP_DIVISOR; /* LOCK: #UD comes before the read */
        }
    }
    if ((v & 0xFFFFFFFFull) == TRAP_DIVISOR)
        g->stop(g->ud, rip, f.locked ? 6 : 0);
}

static void hook_site(uc_engine *uc, uint64_t address, uint32_t size, void *ud)
{
    (void)size;
    if (trapping_dividend(uc))
        check((struct xl_divguard *)ud, address);
}

uint64_t xl_dg_device_value(struct xl_divguard *g, uint64_t rip, int size, uint64_t value)
{
    uint64_t armed = g->de_at;
    g->de_at = XL_DG_NONE;
    size_t n;
    const uint8_t *p;
    struct xl_idiv32 f;
    if (armed != rip || size != 4 || (value & 0xFFFFFFFFull) != TRAP_DIVISOR || !trapping_dividend(g->uc) ||
        !(p = code_at(g, rip, &n)) || !xl_idiv32(p, n, g->mode, &f))
        return value;
    return 0; /* QEMU raises #DE for a zero divisor before dividing */
}

static void add_hook(struct xl_divguard *g, uint64_t begin, uint64_t end, uint64_t site)
{
    xl_sh_add(&g->hooks, (void *)hook_site, g, begin, end, site);
}

void xl_dg_scan(struct xl_divguard *g, uint64_t lo, uint64_t hi)
{
    if (g->all)
        return;
    uint64_t found[64];
    size_t n = xl_idiv32_scan(g->ram + (lo - g->ram_base), (size_t)(hi - lo), lo, g->mode, found, 64);
    for (size_t i = 0; i < n && !g->all; i++) {
        if (i < 64 && xl_sh_known(&g->hooks, found[i]))
            continue;
        if (n > 64 || g->hooks.n >= XL_DG_MAX_SITES) {
            add_hook(g, 1, 0, lo); /* begin > end: every instruction (hook_site re-checks the bytes) */
            g->all = 1;
        } else {
            add_hook(g, found[i], found[i], found[i]);
        }
    }
}
