/* RFLAGS corrections for Unicorn 2.1.4 in the live engine (the Python twin: emu/machine.py
 * `_hook_flag_sites`; emu/flagsites.py explains both bugs).
 *
 * 1. A SETcc whose memory store faults is restored with mismatched lazy flags (QEMU materialised the
 *    flags before the store and restores a stale cc_op).  A UC_HOOK_CODE bounded to each
 *    SETcc-to-memory start keeps RFLAGS as that instruction starts; the run loop writes them back
 *    after a fault at that RIP.  The budget hook fills the same stash at every instruction.
 * 2. LOCK NEG m takes SF/PF from its operand, not the result.  Its start is hooked to note the
 *    operand's address, the next address to rewrite RFLAGS as NEG's (those of 0 - operand).
 *
 * Sites come from the code guard's page scan (lockguard.h), before QEMU translates the page, so a
 * bounded hook is in place when the code is translated; other instructions pay nothing. */
#ifndef XL_FLAGFIX_H
#define XL_FLAGFIX_H

#include <stddef.h>
#include <stdint.h>

#include <unicorn/unicorn.h>

#include "insn_subset.h"
#include "sitehooks.h"

#define XL_FF_MAX_SITES 512  /* hooks one by one; beyond, one stash hook on all code */
#define XL_FF_MAX_NEGS 64    /* LOCK NEG m sites fixed up; more are left as Unicorn runs them */
#define XL_FF_NONE UINT64_MAX

struct xl_ff_neg {
    uint64_t start, after;
    struct xl_insn d;  /* the operand form, decoded as the MOV load with the same ModRM */
};

struct xl_flagfix {
    uc_engine *uc;
    const int *ids;  /* exitlab register number -> Unicorn id, -1 when the mode has none */
    const uint8_t *ram;
    uint64_t ram_base, ram_size;
    int mode;
    uint64_t stash_addr, stash_flags;  /* RFLAGS as the last hooked instruction started */
    struct xl_sitehooks hooks;         /* at SETcc starts, LOCK NEG starts and ends */
    int all;  /* too many SETcc sites: one stash hook on every instruction instead */
    struct xl_ff_neg negs[XL_FF_MAX_NEGS];
    size_t nnegs;
    uint64_t neg_after, neg_ea;  /* the armed LOCK NEG fix-up */
    int neg_size;
};

/* 0, or -1 when out of memory (then xl_ff_free is still safe). */
int xl_ff_init(struct xl_flagfix *f, uc_engine *uc, const int *ids, const uint8_t *ram, uint64_t ram_base,
               uint64_t ram_size, int mode);
/* Hook the new sites among the instruction starts in guest RAM [lo, hi) (a page being scanned). */
void xl_ff_scan(struct xl_flagfix *f, uint64_t lo, uint64_t hi);
/* Keep RFLAGS as the instruction at `address` starts (the budget hook calls this for every one). */
void xl_ff_stash(struct xl_flagfix *f, uint64_t address);
/* After uc_emu_start returned an error: the faulting instruction was rolled back to its start, so
 * write the stash back if it was taken there; disarm a LOCK NEG fix-up (it did not complete). */
void xl_ff_fault(struct xl_flagfix *f, uint64_t rip_id);
/* Execution reached `address`: apply a LOCK NEG fix-up armed for it (the hook on that address does
 * this; the run loop too after a budget stop there: the budget hook stops before that hook runs,
 * and RFLAGS written inside the stopping hook do not survive the stop). */
void xl_ff_settle(struct xl_flagfix *f, uint64_t address);
/* Delete the hooks, free the tables. */
void xl_ff_free(struct xl_flagfix *f);

#endif
