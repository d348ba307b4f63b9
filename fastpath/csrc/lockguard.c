/* LOCK #UD detection for the live engine's code guard (see lockguard.h).  The same rule as
 * emu/codeguard.py (the Python engine's guard): SDM Vol. 2 "LOCK" -- the prefix is allowed only on
 * ADD ADC AND BTC BTR BTS CMPXCHG CMPXCHG8B/16B DEC INC NEG NOT OR SBB SUB XOR XADD XCHG, and only
 * with a memory destination; anything else is #UD.  Prefixes, REX, opcode and ModRM only. */
#include "lockguard.h"

#define LOCK 0xF0

static int is_prefix(uint8_t b, int mode)
{
    switch (b) {
    case 0x26: case 0x2E: case 0x36: case 0x3E: case 0x64: case 0x65: case 0x66: case 0x67:
    case 0xF0: case 0xF2: case 0xF3:
        return 1;
    default:
        /* REX in 64-bit code (also when more prefixes follow, as Unicorn reads it); else INC/DEC */
        return mode == 64 && b >= 0x40 && b <= 0x4F;
    }
}

/* allowed ModRM.reg values of the lockable group opcodes, as a bit set; -1: not a group */
static int one_byte_group(uint8_t op)
{
    switch (op) {
    case 0x80: case 0x81: case 0x82: case 0x83:
        return 0x7F;  /* ADD OR ADC SBB AND SUB XOR, not /7 CMP */
    case 0xF6: case 0xF7:
        return 0x0C;  /* NOT NEG */
    case 0xFE: case 0xFF:
        return 0x03;  /* INC DEC */
    default:
        return -1;
    }
}

static int one_byte_rm(uint8_t op)
{
    switch (op) {
    case 0x00: case 0x01: case 0x08: case 0x09: case 0x10: case 0x11: case 0x18: case 0x19:
    case 0x20: case 0x21: case 0x28: case 0x29: case 0x30: case 0x31: case 0x86: case 0x87:
        return 1;
    default:
        return 0;
    }
}

int xl_lock_ud(const uint8_t *p, size_t n, int mode)
{
    size_t i = 0;
    int locked = 0;
    while (i < n && is_prefix(p[i], mode)) {
        locked |= p[i] == LOCK;
        i++;
    }
    if (!locked || i >= XL_LOCK_MAX_INSN || i >= n)
        return 0;
    uint8_t op = p[i];
    if (op == 0x0F) {
        if (i + 2 >= n)
            return 0;
        uint8_t op2 = p[i + 1], modrm = p[i + 2];
        int reg = (modrm >> 3) & 7;
        switch (op2) {
        case 0xAB: case 0xB3: case 0xBB: case 0xB0: case 0xB1: case 0xC0: case 0xC1:
            return modrm >> 6 == 3;  /* BTS BTR BTC CMPXCHG XADD: memory destination only */
        case 0xBA:
            return modrm >> 6 == 3 || !(reg == 5 || reg == 6 || reg == 7);  /* not /4 BT */
        case 0xC7:
            return modrm >> 6 == 3 || reg != 1;  /* CMPXCHG8B/16B */
        default:
            return 1;
        }
    }
    int group = one_byte_group(op);
    if (one_byte_rm(op) || (group >= 0 && !(op == 0x82 && mode == 64))) {
        if (i + 1 >= n)
            return 0;
        uint8_t modrm = p[i + 1];
        if (modrm >> 6 == 3)
            return 1;
        return group >= 0 && !(group & (1 << ((modrm >> 3) & 7)));
    }
    return 1;
}

int xl_lock_guard_site(const uint8_t *p, size_t n, int mode)
{
    if (!xl_lock_ud(p, n, mode))
        return 0;
    size_t i = 0;
    while (i < n && is_prefix(p[i], mode))
        i++;
    if (i >= n)
        return 0;
    /* only the register forms (ModRM.mod = 3): LOCK BT m / LOCK MOV... run as Unicorn runs them,
     * as in the Python engine (emu/codeguard.py) */
    if (p[i] == 0x86 || p[i] == 0x87)
        return i + 1 < n && p[i + 1] >> 6 == 3;  /* XCHG reg, reg: Unicorn drops the LOCK */
    if (p[i] != 0x0F || i + 2 >= n || p[i + 2] >> 6 != 3)
        return 0;
    switch (p[i + 1]) {
    case 0xA3: case 0xAB: case 0xB3: case 0xBB: case 0xBA:  /* BT BTS BTR BTC reg: Unicorn aborts */
    case 0xC0: case 0xC1:                                    /* XADD reg: Unicorn drops the LOCK */
        return 1;
    default:
        return 0;
    }
}

int xl_guard_classify(const uint8_t *p, size_t n, int mode, struct xl_guarded *g)
{
    g->kind = XL_G_NONE;
    g->length = 0;
    g->modrm = g->rex = 0;
    if (xl_lock_guard_site(p, n, mode)) {
        g->kind = XL_G_LOCK_UD;
        return g->kind;
    }
    size_t i = 0;
    uint8_t rex = 0;
    while (i < n && is_prefix(p[i], mode)) {
        rex = mode == 64 && p[i] >= 0x40 && p[i] <= 0x4F ? p[i] : 0;
        i++;
    }
    if (i + 1 >= n || i >= XL_LOCK_MAX_INSN || p[i] != 0x0F)
        return XL_G_NONE;
    int kind = XL_G_NONE, reg = -1;
    switch (p[i + 1]) {
    case 0x05: kind = XL_G_SYSCALL; break;
    case 0x34: kind = XL_G_SYSENTER; break;
    case 0x30: kind = XL_G_WRMSR; break;
    case 0x22: kind = XL_G_MOV_CR0; reg = 0; break;
    case 0x00: kind = XL_G_LTR; reg = 3; break;
    default: return XL_G_NONE;
    }
    g->rex = rex;
    if (reg < 0) {
        g->kind = kind;
        g->length = (int)i + 2;
        return kind;
    }
    if (i + 2 >= n)
        return XL_G_NONE;
    uint8_t modrm = p[i + 2];
    if (((modrm >> 3) & 7) != reg || (kind == XL_G_MOV_CR0 && (rex & 4)))
        return XL_G_NONE;
    g->kind = kind;
    g->length = (int)i + 3;
    g->modrm = modrm;
    return kind;
}

size_t xl_lock_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap)
{
    size_t found = 0;
    for (size_t k = 0; k < n; k++) {
        if (data[k] != LOCK && data[k] != 0x0F)
            continue;
        if (data[k] == 0x0F && k + 1 < n && data[k + 1] != 0x05 && data[k + 1] != 0x34 && data[k + 1] != 0x30 &&
            data[k + 1] != 0x22 && data[k + 1] != 0x00)
            continue;
        /* an instruction may start at any byte of the prefix run that holds this LOCK */
        size_t first = k;
        while (first > 0 && k - first < XL_LOCK_MAX_INSN && is_prefix(data[first - 1], mode))
            first--;
        for (size_t s = first; s <= k; s++) {
            size_t left = n - s < XL_LOCK_MAX_INSN ? n - s : XL_LOCK_MAX_INSN;
            struct xl_guarded g;
            if (xl_guard_classify(data + s, left, mode, &g)) {
                if (found < cap)
                    out[found] = base + s;
                found++;
            }
        }
    }
    return found;
}

size_t xl_setcc_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap)
{
    size_t found = 0;
    for (size_t k = 0; k + 2 < n; k++) {
        if (data[k] != 0x0F || data[k + 1] < 0x90 || data[k + 1] > 0x9F || data[k + 2] >> 6 == 3)
            continue;
        size_t first = k;
        while (first > 0 && k - first < XL_LOCK_MAX_INSN - 3 && is_prefix(data[first - 1], mode))
            first--;
        for (size_t s = first; s <= k; s++) {
            if (found < cap)
                out[found] = base + s;
            found++;
        }
    }
    return found;
}

static int is_lock_neg(const uint8_t *p, size_t n, int mode)
{
    size_t i = 0;
    int locked = 0;
    while (i < n && i < XL_LOCK_MAX_INSN && is_prefix(p[i], mode))
        locked |= p[i++] == LOCK;
    return locked && i + 1 < n && (p[i] == 0xF6 || p[i] == 0xF7) && ((p[i + 1] >> 3) & 7) == 3 && p[i + 1] >> 6 != 3;
}

size_t xl_lock_neg_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap)
{
    size_t found = 0;
    for (size_t k = 0; k < n; k++) {
        if (data[k] != LOCK)
            continue;
        size_t first = k;
        while (first > 0 && k - first < XL_LOCK_MAX_INSN && is_prefix(data[first - 1], mode))
            first--;
        for (size_t s = first; s <= k; s++) {
            size_t left = n - s < XL_LOCK_MAX_INSN ? n - s : XL_LOCK_MAX_INSN;
            if (is_lock_neg(data + s, left, mode)) {
                if (found < cap)
                    out[found] = base + s;
                found++;
            }
        }
    }
    return found;
}
