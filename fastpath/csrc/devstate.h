/* Flat state shared by every C path, the replay loop and the live hooks.
 *
 * Everything here is plain data: Python reads it through the cffi cdef in fastpath/_build.py
 * (which repeats these declarations; cffi checks the layouts at build time).  Nothing in here
 * is allocated per exit.
 *
 * The device model mirrors emu/devices.py + emu/board.py (the default board; the addresses below
 * are the defaults of xl_ctx_init, a live run of `exitlab run --engine c` sets them from the board,
 * and every other device of the board is reached through ctx->tab, see devtab.h):
 *   - notify device at NOTIFY_MMIO (4 KiB) and port NOTIFY_PORT (2 bytes): a data-carrying write's
 *     value is the queue index (kicks[value]); an address-only (wildcard) notification at offset
 *     4*q kicks queue q (q < XL_NQUEUES_REG, the default registrations); any other offset is
 *     "unmatched".  Reads return 0.
 *   - register device at REGS_MMIO: 4 KiB little-endian byte array; bytes past its end read 0xff.
 *   - console at CONSOLE_PORT (8 ports): THR (+0) writes append bytes, LSR (+5) reads 0x60.
 *   - anything unclaimed reads all-ones and drops writes (counted), as emu/bus.py does.
 */
#ifndef XL_DEVSTATE_H
#define XL_DEVSTATE_H

#include <stdint.h>
#include <stddef.h>

#include "devtab.h"
#include "platform_gen.h" /* the platform's numbers, generated from emu/platform.py */

#define XL_NREGS 20           /* emu/exits.py REG_NAMES order */
#define XL_RIP 16
#define XL_RFLAGS 17
#define XL_FS_BASE 18
#define XL_GS_BASE 19
#define XL_MAX_INSN 15

#define XL_NQUEUES 64         /* kicks[] for data values 0..63; larger values go to kicks_other */
#define XL_NQUEUES_REG XL_NOTIFY_QUEUES  /* wildcard registrations of the default notify device */
#define XL_NOTIFY_OFF_MULT XL_NOTIFY_OFF_MULTIPLIER  /* queue q's wildcard address: notify_base + 4*q */
#define XL_REGS_SIZE XL_REGS_MMIO_SIZE
#define XL_CONSOLE_BUF 4096
#define XL_STOP_POLL 4096     /* REP iterations between two looks at the stop flag */

/* Exit kinds: same order as emu.exits.ExitKind. */
enum xl_exit_kind {
    XL_MMIO_WRITE = 0,
    XL_MMIO_READ = 1,
    XL_PIO_OUT = 2,
    XL_PIO_IN = 3,
    XL_HYPERCALL = 4,
};

/* Paths.  TRAP is the count-only baseline (next RIP = RIP + trap_len, no device effect). */
enum xl_path {
    XL_PATH_PIO = 0,
    XL_PATH_HYPERCALL = 1,
    XL_PATH_PVFAST = 2,
    XL_PATH_WILDCARD = 3,
    XL_PATH_SUBSET = 4,
    XL_PATH_CAPSTONE = 5,
    XL_PATH_TRAP = 6,
    XL_NPATHS = 7,
};

enum xl_status {
    XL_OK = 0,
    XL_NOT_MINE = 1,        /* internal: the path declines; the caller falls back */
    XL_E_DECODE = 2,        /* Capstone cannot decode the bytes */
    XL_E_UNSUPPORTED = 3,   /* decoded, but the path cannot emulate it */
    XL_E_FETCH = 4,         /* instruction bytes not readable at RIP */
    XL_E_NOMEM = 5,         /* a RAM operand is not available (replay has no RAM) */
    XL_E_MISMATCH = 6,      /* decoded operand does not cover the exit's address */
    XL_E_LENGTH = 7,        /* wildcard: instruction length unknown */
    XL_E_KIND = 8,          /* exit kind not handled by this path / bad record */
    XL_E_MODE = 9,          /* unsupported CPU mode */
    XL_E_UNMAPPED = 10,     /* the access runs into unmapped space: #PF, ctx->fault_addr = first byte */
    XL_E_RECORD = 11,       /* replay: malformed record (size, mode, length), rejected before any effect */
    XL_E_GP = 12,           /* #GP found by the path (a write through CS in 32-bit code), before any effect */
    XL_E_DE = 13,           /* #DE (DIV/IDIV): after the divisor's device read, no register changed */
};

struct xl_devstate {
    uint64_t notify_base, notify_size;
    uint64_t regs_base, regs_size;
    uint64_t notify_port, console_port;
    uint64_t kicks[XL_NQUEUES];
    uint64_t kicks_other;          /* data kicks with value >= XL_NQUEUES */
    uint64_t notify_writes, notify_reads, notify_unmatched;
    uint64_t regs_reads, regs_writes;
    uint64_t unclaimed_mmio_read, unclaimed_mmio_write, unclaimed_pio_in, unclaimed_pio_out;
    uint64_t console_len;          /* total bytes written; console[] keeps the first XL_CONSOLE_BUF */
    uint8_t console[XL_CONSOLE_BUF];
    uint8_t regs[XL_REGS_SIZE];
    /* the default wildcard registrations' counts (emu/devices.py IoEventFd at offset 4*q, size 0):
     * every write or address-only notification at that offset of either notify range */
    uint64_t eventfd_counts[XL_NQUEUES_REG];
};

/* The first error seen (KVM hands the bytes to user space; so do we). */
struct xl_err {
    uint64_t rip;
    uint64_t addr;
    uint32_t status;
    uint8_t path;
    uint8_t kind;
    uint8_t len;
    uint8_t bytes[XL_MAX_INSN];
};

/* Per-exit result (replay keeps one per record). acc_hash folds every device access in order. */
struct xl_result {
    uint64_t gpa;        /* first device access */
    uint64_t value;
    uint64_t next_rip;
    uint64_t acc_hash;
    uint64_t wb;         /* full 64-bit value of the destination register after a read (else 0) */
    uint32_t status;
    uint8_t size;
    uint8_t write;
    uint8_t n_acc;       /* saturates at 255 */
    uint8_t path;        /* path that handled it (after fallback) */
};

/* A guest CPU as a path sees it: lazily filled registers, a readable memory view (guest RAM in
 * live mode, the record's instruction bytes in replay) and the mode.  `fill` fetches register i
 * (live: uc_reg_read); when `src` is set registers come from there (replay). */
struct xl_cpu;
typedef void (*xl_fill_fn)(struct xl_cpu *cpu, int idx);

struct xl_cpu {
    uint64_t regs[XL_NREGS];
    uint32_t valid;
    uint32_t dirty;
    int mode;                  /* 16, 32, 64 */
    const uint64_t *src;       /* replay: record registers */
    xl_fill_fn fill;           /* live: fetch from the engine */
    void *opaque;              /* live: uc_engine* */
    const uint8_t *mem;        /* readable view */
    uint8_t *wmem;             /* writable view (live RAM) or NULL */
    uint64_t mem_base, mem_size;
    uint64_t max_iter;         /* REP iterations this exit may perform (the remaining budget), 0: no limit */
    uint64_t iters;            /* out: REP entries the last string instruction used (as Unicorn counts) */
    const volatile uint32_t *stop_flag;  /* live: non-zero when another thread asked the run to stop */
    uint64_t wlo, whi;         /* out: guest RAM bytes the path wrote, [wlo, whi) (empty: wlo >= whi) */

    uint32_t flags;            /* XL_CPU_ONE_ELEMENT: Unicorn runs REP itself (in-place style) */
    uint32_t pad;
    /* XMM register idx as v[0] (low 64 bits), v[1] (high): read (write = 0) or write; returns 0, or -1
     * when there is no such register.  NULL: the view has no vector registers (replay records). */
    int (*vec)(struct xl_cpu *cpu, int idx, int write, uint64_t v[2]);
};
#define XL_CPU_ONE_ELEMENT 1u

/* One exit as the hardware reports it. `size`/`value` are meaningful for PIO only, and for the
 * in-place hook (XL_CPU_ONE_ELEMENT), where `value` is the data of the write Unicorn performs. */
struct xl_exit {
    uint64_t addr;
    uint64_t value;
    uint32_t kind;
    uint32_t size;
};

/* Everything a path needs besides the CPU: devices, counts, the error slot, Capstone handles. */
struct xl_ctx {
    struct xl_devstate dev;
    uint64_t counts[XL_NPATHS];     /* exits handled, per path (after fallback) */
    uint64_t fallbacks;             /* a fast path said "not mine" */
    uint64_t violations;            /* pv window exit not taken by pv-fast (contract v1) */
    uint64_t errors;
    struct xl_err err;
    uint64_t fault_addr;            /* XL_E_UNMAPPED: first byte of the access outside RAM and devices */
    uint64_t last_read;             /* the whole value of the last device read (all region pieces) */
    uint64_t cs_handle[3];          /* csh for 16/32/64-bit, opened lazily */
    void *cs_insn[3];               /* cs_insn preallocated with cs_malloc */
    uint32_t trap_len;              /* TRAP path: fixed instruction length */
    uint32_t pad;
    struct xl_devtab *tab;          /* the board's other devices (devtab.h); NULL: flat devices only */
};

static inline uint64_t xl_cpu_get(struct xl_cpu *c, int i)
{
    if (!(c->valid & (1u << i))) {
        if (c->src)
            c->regs[i] = c->src[i];
        else
            c->fill(c, i);
        c->valid |= 1u << i;
    }
    return c->regs[i];
}

static inline void xl_cpu_set(struct xl_cpu *c, int i, uint64_t v)
{
    c->regs[i] = v;
    c->valid |= 1u << i;
    c->dirty |= 1u << i;
}

#endif
