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

/* Addresses base+k where an instruction starting at data[k] is a guard site (above); writes up to
 * cap of them to out and returns how many there are (may exceed cap). */
size_t xl_lock_scan(const uint8_t *data, size_t n, uint64_t base, int mode, uint64_t *out, size_t cap);

#endif
