/* LOCK #UD detection for the code guard of the live engine (SEMANTICS rule 9, issue 13 C1).
 *
 * Unicorn 2.1.4 aborts the whole process while *translating* LOCK BT/BTS/BTR/BTC with a register
 * operand, and runs other LOCK #UD forms (LOCK XADD/XCHG reg,reg ...) as if the prefix were absent.
 * live.c scans every code page before Unicorn may translate it and registers each address where
 * such an instruction would start as a Unicorn exit, so translation stops in front of it. */
#ifndef XL_LOCKGUARD_H
#define XL_LOCKGUARD_H

#include <stddef.h>
#include <stdint.h>

#define XL_LOCK_MAX_INSN 15

/* 1 when the instruction at p[0..n) carries LOCK and the SDM makes that #UD; 0 otherwise (no LOCK,
 * bytes run out before the ModRM, or prefixes alone reach 15 bytes: #GP, Unicorn's business). */
int xl_lock_ud(const uint8_t *p, size_t n, int mode);

/* 1 when the instruction at p is a LOCK #UD that Unicorn 2.1.4 does not reject itself: LOCK
 * BT/BTS/BTR/BTC (Unicorn aborts the process translating the register forms) and LOCK XADD/XCHG with
 * a register destination (Unicorn drops the prefix).  The other LOCK #UD forms either raise #UD in
 * Unicorn already (LOCK ADD/INC/NOT... reg) or are not guarded: LOCK on a non-lockable instruction
 * Unicorn ignores (mov, hlt, jmp...).  Guarding those would make every byte F0 in code a site, and
 * a Unicorn exit inside a hot translated block costs a retranslation at every uc_emu_start
 * (Unicorn invalidates the code at each exit address when emulation stops), i.e. ~20 us per exit.
 * docs/known-discrepancies.md lists them. */
int xl_lock_guard_site(const uint8_t *p, size_t n, int mode);

/* What the run loop must judge before Unicorn runs it (the guard's sites). */
enum xl_guard_kind {
    XL_G_NONE = 0,
    XL_G_LOCK_UD = 1,   /* xl_lock_guard_site */
    XL_G_SYSCALL = 2,   /* 0F 05 */
    XL_G_SYSENTER = 3,  /* 0F 34 */
    XL_G_WRMSR = 4,     /* 0F 30 */
    XL_G_MOV_CR0 = 5,   /* 0F 22 /0 (not REX.R: CR8) */
    XL_G_LTR = 6,       /* 0F 00 /3 */
};

struct xl_guarded {
    int kind;           /* enum xl_guard_kind */
    int length;         /* instruction length (system forms with a register operand) */
    uint8_t modrm, rex;
};

/* Unicorn 2.1.4 runs SYSCALL, SYSENTER, WRMSR to any MSR, MOV to CR0 leaving long mode and LTR with a
 * null selector as silent no-ops; the run loop stops in front of them and gives the platform's answer
 * (emu/sysinsn.py in the Python engine: the same decisions). */
int xl_guard_classify(const uint8_t *p, size_t n, int mode, struct xl_guarded *g);

/* Addresses base+k where an instruction starting at data[k] is a guard site (classify); writes up to
 * cap of them to out and returns how many there are (may exceed cap). */
size_t xl_lock_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap);

/* Addresses base+k where an instruction starting at data[k] may be a SETcc with a memory destination
 * (0F 90..9F, ModRM.mod != 3, after any run of prefixes): Unicorn 2.1.4 restores RFLAGS wrongly when
 * that store faults, live.c hooks these starts to stash RFLAGS (emu/flagsites.py, the Python twin,
 * explains the QEMU lazy-flags cause).  Same out/cap contract as xl_lock_scan. */
/* Addresses base+k where an instruction starting at data[k] is LOCK NEG with a memory operand: Unicorn
 * 2.1.4 computes its SF/PF from the operand instead of the result (emu/flagsites.py); live.c fixes
 * them at the next instruction.  Same out/cap contract. */
size_t xl_lock_neg_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap);

size_t xl_setcc_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap);

#endif
