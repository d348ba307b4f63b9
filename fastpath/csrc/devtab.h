/* The device table: a board's windows, ports and devices as data (issue 12 item 3).
 *
 * The flat C devices of devstate.h (notify, register file, console) are an accelerator: their
 * addresses are data too (struct xl_devstate's bases, set from the board by fastpath/cengine.py,
 * size 0 / port XL_NO_PORT when the board has no such flat device).  Every other device range of
 * the board is a region of this table, served by a callback into the Python device model
 * (emu/bus.py), which decides per access exactly as it does for the Python engine.  A context
 * without a table (ctx->tab == NULL: replay, benchmarks, the fuzzer) sees the default board's flat
 * devices only, as before.
 *
 * Lookups cost nothing on the flat devices' hot paths: the table is consulted only after the flat
 * checks missed.  Regions are sorted by base and do not overlap (emu/bus.py rejects overlaps), so a
 * lookup is a binary search.  Header-only, so every build that compiles paths.c (the extension,
 * the sanitizer driver, the fuzzer core) needs no new source file.
 */
#ifndef XL_DEVTAB_H
#define XL_DEVTAB_H

#include <stdint.h>

#define XL_NO_PORT (1ull << 32)  /* a flat port device's base when the board has none: no port matches */

enum xl_space { XL_SPACE_MMIO = 0, XL_SPACE_PIO = 1 };
/* What a callback is asked to do: a read (returns the value), a write, or an address-only
 * notification (the wildcard path: emu.bus.Bus.notify). */
enum xl_devop { XL_OP_READ = 0, XL_OP_WRITE = 1, XL_OP_NOTIFY = 2, XL_OP_KICK = 3 };
/* XL_OP_KICK: the flat notify device saw a data kick of a queue number it has no counter for
 * (value >= XL_NQUEUES): the Python notify device counts it (kicks[value]), nothing else. */

struct xl_region {
    uint64_t base, size;
};

/* A device access the flat devices do not serve: `addr` is absolute (the bus dispatches it), the
 * value is masked to `size` bytes by the caller; returns the value read (reads). */
typedef uint64_t (*xl_dev_fn)(void *opaque, uint32_t space, uint32_t op, uint64_t addr, uint32_t size,
                              uint64_t value);
/* One exit as the Python engine records it (emu.machine.Machine._record): only when tracing. */
typedef void (*xl_trace_fn)(void *opaque, uint32_t kind, uint64_t rip, uint64_t addr, uint32_t size,
                            uint64_t value);

struct xl_devtab {
    const struct xl_region *mmio;  /* callback device ranges, sorted, non-overlapping */
    const struct xl_region *pio;
    const struct xl_region *pv;    /* pv windows besides the flat notify window (pv-fast, wildcard) */
    const struct xl_region *win;   /* page-aligned MMIO windows a live run maps (every MMIO device) */
    uint32_t nmmio, npio, npv, nwin;
    xl_dev_fn dev;
    void *dev_opaque;
    xl_trace_fn trace;             /* NULL: no trace (the hot loop then pays one NULL test per exit) */
    void *trace_opaque;
};

/* The region holding addr, or NULL. */
static inline const struct xl_region *xl_tab_find(const struct xl_region *r, uint32_t n, uint64_t addr)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (addr < r[mid].base)
            hi = mid;
        else if (addr - r[mid].base >= r[mid].size)
            lo = mid + 1;
        else
            return &r[mid];
    }
    return 0;
}

/* Is [addr, addr+size) inside one pv window of the table? */
static inline int xl_tab_in_pv(const struct xl_devtab *t, uint64_t addr, uint64_t size)
{
    const struct xl_region *w = xl_tab_find(t->pv, t->npv, addr);
    return w && size <= w->size && addr - w->base <= w->size - size;
}

#endif
