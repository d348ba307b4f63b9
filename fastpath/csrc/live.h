/* Live mode: C hooks on a Unicorn engine and the exit-style run loop, all in C. */
#ifndef XL_LIVE_H
#define XL_LIVE_H

#include "devstate.h"
#include "lockguard.h"  /* the code guard's classifier (also exported to Python for tests) */

enum xl_style { XL_STYLE_EXIT = 0, XL_STYLE_INPLACE = 1 };

/* How port I/O and hypercall exits are trapped (MMIO: by xl_style).  MIXED: PIO in the IN/OUT hook,
 * a hypercall stops the engine (exit style).  EXIT: the PIO hook does the access at its exact RIP and
 * asks Unicorn to stop, the loop restarts (Unicorn ends the translated block first, so the block's
 * remaining instructions run before the stop; a HLT among them is found and stops the run).  HOOK:
 * the hypercall runs inside the invalid-instruction hook and execution goes on at its next RIP.
 * The exit-cost table's --trap modes: every kind of exit trapped the same way. */
enum xl_trap { XL_TRAP_MIXED = 0, XL_TRAP_EXIT = 1, XL_TRAP_HOOK = 2 };

enum xl_stop {
    XL_STOP_NONE = 0,
    XL_STOP_HLT = 1,
    XL_STOP_BUDGET = 2,           /* max_insns executed (the whole run, every exit included) */
    XL_STOP_TIMEOUT = 3,
    XL_STOP_UNMAPPED = 4,         /* addr, access type in `access` */
    XL_STOP_INVALID_INSN = 5,     /* rip, bytes */
    XL_STOP_EXCEPTION = 6,        /* interrupt number in addr */
    XL_STOP_EMULATION_ERROR = 7,  /* rip, bytes, status */
    XL_STOP_MAX_EXITS = 8,
    XL_STOP_UC_ERROR = 9,         /* uc_err in uc_err */
    XL_STOP_INTERRUPTED = 10,     /* xl_live_request_stop (SIGINT) */
};

/* Stop requests from another thread (the SIGINT watchdog).  Opaque; one per run at a time.
 * xl_live_request_stop is thread-safe and returns at once (it only sets the request and wakes the
 * run's watchdog thread, which calls uc_emu_stop until the run has stopped; a REP being emulated
 * looks at the request every XL_STOP_POLL iterations).  A request made before the run starts stops
 * it at its first instruction boundary.  Not async-signal-safe: call it from a thread, not from a
 * signal handler.  xl_live_ctl_reset clears a request for the next run. */
struct xl_live_ctl;
struct xl_live_ctl *xl_live_ctl_new(void);
void xl_live_ctl_free(struct xl_live_ctl *ctl);
void xl_live_ctl_reset(struct xl_live_ctl *ctl);
int xl_live_request_stop(struct xl_live_ctl *ctl, uint32_t reason);

struct xl_live_cfg {
    uint64_t ram;          /* host address of guest RAM (mem_map_ptr buffer) */
    uint64_t ram_base;
    uint64_t ram_size;
    uint64_t start_rip;
    uint64_t until;        /* uc_emu_start's `until`: an address outside RAM; reaching it is an
                            * unmapped fetch (fastpath/cengine.py passes 0 when RAM starts above it) */
    uint64_t max_insns;    /* whole run, 1 .. 2^63-1 instructions (REP: per iteration); 0 = no budget */
    uint64_t timeout_ns;   /* whole run; 0 = no limit (any other value is a limit, saturating) */
    uint64_t max_exits;    /* 0 = unlimited */
    int32_t mode;
    int32_t path;
    int32_t style;
    int32_t inplace_raw;   /* in place: an access no C path emulates is performed as Unicorn reports it
                            * (the Python engine's in-place hook; `exitlab run --engine c --path
                            * inplace`), else it is a decline (emulation_error) */
    struct xl_live_ctl *ctl;  /* optional: stop requests from other threads */
    int32_t trap;          /* enum xl_trap (PIO and hypercall exits) */
    int32_t pad2;
};

struct xl_live_result {
    uint64_t rip;          /* where the guest stopped */
    uint64_t addr;
    uint64_t exits;        /* all exits handled (mmio + pio + hypercall) */
    uint64_t mmio_exits, pio_exits, hypercalls;
    uint64_t segments;     /* uc_emu_start calls */
    uint64_t inplace_mismatch;
    uint64_t kinds[5];     /* exits per enum xl_exit_kind */
    uint64_t ns, ticks;
    uint32_t stop;
    uint32_t uc_err;
    uint32_t status;       /* path status for EMULATION_ERROR */
    uint32_t access;       /* uc_mem_type for UNMAPPED */
    uint8_t len;
    uint8_t bytes[XL_MAX_INSN];
};

/* Run the guest on `uc` (a uc_engine*) from cfg->start_rip until a stop.  Hooks are installed at
 * the start and removed at the end (and, in-place style, the device windows unmapped again). */
int xl_live_run(struct xl_ctx *ctx, void *uc, const struct xl_live_cfg *cfg, struct xl_live_result *out);

#endif
