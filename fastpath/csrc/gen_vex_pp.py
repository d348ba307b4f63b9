"""Generate vex_pp.h: which VEX and EVEX encodings exist, read off iced-x86 (a test dependency).

The length function measures a VEX/EVEX instruction from its map and opcode alone; whether the
encoding is an instruction at all depends on much more, and these tables hold it, so that the length
function says -1 exactly where iced-x86 does:

VEX, per mode (32/64), map (0F, 0F38, 0F3A), opcode, pp, L, W and ModRM *form* (reg field 0-7 x
{register rm=0, register rm!=0, memory without SIB, memory with SIB}): valid or not for VEX.vvvv =
1111b (unused) / 0111b / anything else, and with VEX.R set or clear (`c4 61 f8 90 c1`: KMOVQ with
an extended k register is #UD; `c5 08 77`: VZEROUPPER with vvvv != 1111b is #UD).

EVEX, per mode, map (1, 2, 3, 5, 6), opcode, pp, W and form: the L'L values valid without and with
EVEX.b, whether masking (aaa != 0), no masking (aaa = 0), zeroing with and without a mask, the four
(vvvv unused?, V') combinations, and extended R, R', X (register rm) and B are valid.

A table row is kept once (dedup) and referenced by index.  The generator verifies the factored
EVEX model against iced on random encodings and the length model (prefix + opcode + ModRM/SIB/disp +
imm8 on the opcodes that take one) on every valid probe, and fails rather than write a wrong table.
tests/test_c_length.py checks that the committed file is what this script writes.
Run: python fastpath/csrc/gen_vex_pp.py > fastpath/csrc/vex_pp.h
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable

from iced_x86 import Code, Decoder, Instruction

SLOT = 16
EVEX_MAPS = (1, 2, 3, 5, 6)
# kind of a form: 0 register rm=0, 1 register rm=1, 2 memory [rax], 3 memory [rax+rax] (SIB)
MODRM = {0: (0xC0, None), 1: (0xC1, None), 2: (0x00, None), 3: (0x04, 0x00)}
# raw (inverted) vvvv field classes: 0 = 1111b (unused), 1 = top bit clear (register 8-15),
# 2 = top bit set (register 1-7); a representative of each (see other_e), and checks per class
E_VALUES = (0xF, 0x7, 0xE)
E_CHECK = ((0x0, 1), (0x3, 1), (0x8, 2), (0xB, 2))


def decode_many(mode: int, codes: list[bytes]) -> list[int]:
    """iced length of each encoding (zero-padded to 16 bytes), -1 for invalid."""
    buf = b"".join(c.ljust(SLOT, b"\0")[:SLOT] for c in codes)
    dec = Decoder(mode, buf)
    insn = Instruction()
    out = []
    for k in range(len(codes)):
        dec.position = k * SLOT
        dec.decode_out(insn)
        out.append(-1 if insn.code == Code.INVALID else insn.len)
    return out


def has_imm8(vmap: int, op: int) -> bool:
    return vmap == 3 or (vmap == 1 and (0x70 <= op <= 0x73 or 0xC2 <= op <= 0xC6))


def form_bytes(form: int, vvvv: int = 0) -> bytes:
    """ModRM (+SIB) of a form; a register rm != 0 or a SIB index is chosen unequal to the reg field
    and to vvvv (low 3 bits), so that distinct-register rules (gathers, AMX) do not fire."""
    reg, kind = form >> 2, form & 3
    free = next(x for x in (1, 2, 3, 5, 6, 7) if x not in (reg, vvvv & 7))
    if kind == 0:
        return bytes([0xC0 | (reg << 3)])
    if kind == 1:
        return bytes([0xC0 | (reg << 3) | free])
    if kind == 2:
        return bytes([reg << 3])
    return bytes([(reg << 3) | 4, free << 3])


def other_e(form: int, e: int) -> int:
    """For the class representatives 0x7 / 0xE: a raw vvvv of the same class whose register
    differs from the reg field (low 3 bits), so distinct-register rules do not fire."""
    reg = form >> 2
    cands = (0x7, 0x6, 0x5) if e == 0x7 else (0xE, 0xD, 0xC) if e == 0xE else (e,)
    return next(c for c in cands if ((~c) & 7) != reg or c == e and len(cands) == 1)


def expected_len(prefix_len: int, vmap: int, op: int, form: int, evex: bool) -> int:
    n = prefix_len + 1 + (2 if form & 3 == 3 else 1) + (1 if has_imm8(vmap, op) else 0)
    if not evex and vmap == 1 and op == 0x77:
        n = prefix_len + 1
    return n


def check_lengths(got: Iterable[int], want: Iterable[int], codes: list[bytes]) -> None:
    for g, w, c in zip(got, want, codes, strict=True):
        if g > 0 and g != w:
            sys.exit(f"length model wrong for {c.hex(' ')}: iced {g}, model {w}")


# ------------------------------------------------------------------------------- register rules
# Some instructions require distinct registers (gathers: destination, index and mask; AMX TDP*:
# the three tiles; FP16 complex multiplies: destination and sources).  rules bit 0: reg != vvvv,
# bit 1: reg != rm (register form) / index (VSIB), bit 2: vvvv != rm / index.


def _rule_probes(make, reg: int, other: int, vvvv: int) -> list[bytes]:
    return [make(reg, other, vvvv, kind) for kind in (1, 3)]


def find_rules(mode: int, make) -> int:
    """make(reg, rm_or_index, vvvv, kind) -> bytes; compares all-distinct with each pair equal."""
    codes = []
    for regs in ((1, 2, 3), (1, 2, 1), (1, 1, 3), (1, 2, 2)):
        codes += _rule_probes(make, *regs)
    got = decode_many(mode, codes)
    rules = 0
    for kind in (0, 1):
        if got[kind] > 0:
            for bit in range(3):
                if got[2 + 2 * bit + kind] <= 0:
                    rules |= 1 << bit
    return rules


def rule_modrm(reg: int, other: int, kind: int) -> bytes:
    return bytes([0xC0 | (reg << 3) | other]) if kind == 1 else bytes([(reg << 3) | 4, other << 3])


def vex_rules(mode: int, k: tuple[int, int, int, int, int]) -> int:
    m, op, pp, ll, w = k
    return find_rules(
        mode,
        lambda r, o, v, kind: (
            bytes([0xC4, 0xE0 | m, (w << 7) | (((~v) & 0xF) << 3) | (ll << 2) | pp, op])
            + rule_modrm(r, o, kind)
        ),
    )


def evex_rules(mode: int, k: tuple[int, int, int, int]) -> int:
    m, op, pp, w = k
    rules = 0
    for ll in range(3):
        rules |= find_rules(
            mode,
            lambda r, o, v, kind, ll=ll: (
                bytes([0x62, 0xF0 | m, (w << 7) | (((~v) & 0xF) << 3) | 4 | pp, (ll << 5) | 8 | 1, op])
                + rule_modrm(r, o, kind)
            ),
        )
    return rules


# ------------------------------------------------------------------------------------------- VEX


def vex_bytes(vmap: int, op: int, pp: int, ll: int, w: int, e: int, rbar: int, form: int) -> bytes:
    e = other_e(form, e)
    head = bytes([0xC4, (rbar << 7) | 0x60 | vmap, (w << 7) | (e << 3) | (ll << 2) | pp, op])
    return head + form_bytes(form, (~e) & 0xF)


def vex_table(mode: int, table_rules: dict) -> dict[tuple[int, int, int, int, int], int]:
    """key (map, op, pp, L, W) -> 192-bit row: bit form*6 + e_class*2 + (R extended)."""
    keys = [
        (m, op, pp, ll, w)
        for m in (1, 2, 3)
        for op in range(256)
        for pp in range(4)
        for ll in (0, 1)
        for w in (0, 1)
    ]
    rbars = (1, 0) if mode == 64 else (1,)
    # prune: keys with no valid form at all (vvvv 1111 or 0000, R either way)
    probe = [vex_bytes(*k, e, rb, f) for k in keys for f in range(32) for e in (0xF, 0x0) for rb in rbars]
    got = decode_many(mode, probe)
    per = 32 * 2 * len(rbars)
    live = [k for i, k in enumerate(keys) if any(g > 0 for g in got[i * per : (i + 1) * per])]
    table: dict[tuple[int, int, int, int, int], int] = {}
    for k in live:
        codes, slots = [], []
        for f in range(32):
            for ci, e in enumerate(E_VALUES):
                for rb in rbars:
                    codes.append(vex_bytes(*k, e, rb, f))
                    slots.append(f * 6 + ci * 2 + (1 - rb))
        got = decode_many(mode, codes)
        check_lengths(got, [expected_len(3, k[0], k[1], s // 6, False) for s in slots], codes)
        row = sum(1 << s for s, g in zip(slots, got, strict=True) if g > 0)
        # every other vvvv must behave like E_VALUES[2]
        rules = vex_rules(mode, k)
        if rules:
            table_rules[k] = rules
        other = [
            (f, rb, vex_bytes(*k, e, rb, f))
            for f in range(32)
            for e, cls in E_CHECK
            for rb in rbars
            if not (rules and ((~e) & 7) == f >> 2)
        ]
        for (f, rb, c), g in zip(other, decode_many(mode, [o[2] for o in other]), strict=True):
            cls = 1 if (c[2] >> 3) & 8 == 0 else 2
            if (g > 0) != bool((row >> (f * 6 + cls * 2 + (1 - rb))) & 1):
                sys.exit(f"VEX vvvv model wrong for {c.hex(' ')} (mode {mode})")
        table[k] = row
    return table


# ------------------------------------------------------------------------------------------ EVEX
# row bits per form (20): 0-3 L'L ok with b=0, 4-7 L'L ok with b=1, 8 aaa=0 ok, 9 aaa!=0 ok,
# 10 z with aaa!=0 ok, 11 z with aaa=0 ok, 12-15 (vvvv unused?, V') ok: 12 unused/V'=1,
# 13 unused/V'=0 (raw), 14 used/V'=1, 15 used/V'=0, 16 R extended ok, 17 R' extended ok,
# 18 X extended ok, 19 B extended ok.


def evex_bytes(
    vmap: int,
    op: int,
    pp: int,
    w: int,
    form: int,
    ll: int = 0,
    b: int = 0,
    z: int = 0,
    aaa: int = 0,
    e: int = 0xF,
    vbar: int = 1,
    rbar: int = 1,
    r2bar: int = 1,
    xbar: int = 1,
    bbar: int = 1,
) -> bytes:
    if e == 0x0:
        e = other_e(form, 0xE)
    p0 = (rbar << 7) | (xbar << 6) | (bbar << 5) | (r2bar << 4) | vmap
    p1 = (w << 7) | (e << 3) | 0x4 | pp
    p2 = (z << 7) | (ll << 5) | (b << 4) | (vbar << 3) | aaa
    return bytes([0x62, p0, p1, p2, op]) + form_bytes(form, (~e) & 0xF)


def collides(mode: int, rules: int, code: bytes) -> bool:
    """The distinct-register rule on a VEX (C4) or EVEX encoding, with full register numbers
    (the C side, rules_ok() in insn_subset.c, computes the same)."""
    if not rules:
        return False
    evex = code[0] == 0x62
    b1 = code[1]
    ext = mode == 64
    vv = (~(code[2] >> 3)) & 0xF if ext else (~(code[2] >> 3)) & 7
    m = code[5 if evex else 4]
    reg = ((m >> 3) & 7) | (0 if (b1 & 0x80) or not ext else 8)
    if evex and ext:  # R' and V' extend only in 64-bit mode
        vbar = (code[3] >> 3) & 1
        reg |= 0 if (b1 & 0x10) else 16
        vv |= 0 if vbar else 16
    if m >> 6 == 3:
        other = (m & 7) | (0 if (b1 & 0x20) or not ext else 8)
        if evex and not (b1 & 0x40) and ext:
            other |= 16
    elif m & 7 == 4 and len(code) > (6 if evex else 5):
        sib = code[6 if evex else 5]
        other = ((sib >> 3) & 7) | (0 if (b1 & 0x40) or not ext else 8)
        if evex and ext and not ((code[3] >> 3) & 1):
            other |= 16
    else:
        other = -1
    return bool(
        ((rules & 1) and reg == vv) or ((rules & 2) and reg == other) or ((rules & 4) and vv == other)
    )


def evex_valid_model(
    row: int,
    form: int,
    ll: int,
    b: int,
    z: int,
    aaa: int,
    e: int,
    vbar: int,
    rbar: int,
    r2bar: int,
    xbar: int,
    bbar: int,
) -> bool:
    r = (row >> (form * 20)) & 0xFFFFF
    if not (r >> (ll + 4 * b)) & 1:
        return False
    if not (r >> (9 if aaa else 8)) & 1:
        return False
    if z and not (r >> (10 if aaa else 11)) & 1:
        return False
    if not (r >> (12 + (0 if e == 0xF else 2) + (1 - vbar))) & 1:
        return False
    return not (
        (not rbar and not (r >> 16) & 1)
        or (not r2bar and not (r >> 17) & 1)
        or (not xbar and not (r >> 18) & 1)
        or (not bbar and not (r >> 19) & 1)
    )


def evex_table(mode: int, rng: random.Random, table_rules: dict) -> dict[tuple[int, int, int, int], int]:
    """key (map, op, pp, W) -> row of 32 forms x 20 bits (see above)."""
    keys = [(m, op, pp, w) for m in EVEX_MAPS for op in range(256) for pp in range(4) for w in (0, 1)]
    probe = [
        evex_bytes(*k, form=f, ll=ll, aaa=a)
        for k in keys
        for f in range(32)
        for ll in (0, 1, 2)
        for a in (0, 1)
    ]
    got = decode_many(mode, probe)
    per = 32 * 6
    live = [k for i, k in enumerate(keys) if any(g > 0 for g in got[i * per : (i + 1) * per])]
    ext = mode == 64
    table: dict[tuple[int, int, int, int], int] = {}
    for k in live:
        rules = evex_rules(mode, k)
        if rules:
            table_rules[k] = rules
        # vvvv of the base probes: unused, unless the rules say it is a register (then one unequal
        # to the reg field)
        be = 0x0 if rules & 5 else 0xF
        codes: list[bytes] = []
        tags: list[tuple[int, int]] = []
        for f in range(32):
            # joint over L'L, b, aaa, z at the plain vvvv/V'/R; bits are projections (any other
            # field value valid), the random check below proves the product is exact
            for ll in range(4):
                for b in (0, 1):
                    for z in (0, 1):
                        for a in (0, 1):
                            codes.append(evex_bytes(*k, form=f, ll=ll, b=b, z=z, aaa=a, e=be))
                            tags.append((f, (ll, b, z, a)))  # type: ignore[arg-type]
        got = decode_many(mode, codes)
        check_lengths(got, [expected_len(4, k[0], k[1], t[0], True) for t in tags], codes)
        row = 0
        ok_combo: dict[int, list[tuple[int, int, int, int]]] = {f: [] for f in range(32)}
        for (f, combo), g in zip(tags, got, strict=True):
            if g > 0:
                ok_combo[f].append(combo)  # type: ignore[arg-type]
        extra_codes: list[bytes] = []
        extra_tags: list[tuple[int, int]] = []
        for f in range(32):
            bits = 0
            for ll, b, z, a in ok_combo[f]:
                bits |= 1 << (ll + 4 * b)
                bits |= 1 << (9 if a else 8)
                if z:
                    bits |= 1 << (10 if a else 11)
            if ok_combo[f]:
                ll, b, z, a = next((c for c in ok_combo[f] if c[2] == 0), ok_combo[f][0])
                base = {"ll": ll, "b": b, "z": z, "aaa": a, "e": be}
                variants = [
                    (12, {"e": 0xF}),
                    (13, {"e": 0xF, "vbar": 0}),
                    (14, {"e": 0x0}),
                    (15, {"e": 0x0, "vbar": 0}),
                ]
                if ext:
                    variants += [(16, {"rbar": 0}), (17, {"r2bar": 0}), (18, {"xbar": 0}), (19, {"bbar": 0})]
                else:  # R, X must be 1 outside 64-bit mode (else BOUND); R' and B ignored or not
                    variants += [(17, {"r2bar": 0}), (19, {"bbar": 0})]
                for bit, kw in variants:
                    extra_codes.append(evex_bytes(*k, form=f, **{**base, **kw}))  # type: ignore[arg-type]
                    extra_tags.append((f, bit))
            row |= bits << (f * 20)
        for (f, bit), g in zip(extra_tags, decode_many(mode, extra_codes), strict=True):
            if g > 0:
                row |= 1 << (f * 20 + bit)
        if rules & 6:  # register rm = 0 collides with reg 0 in every probe: it behaves as rm != 0
            for reg in range(8):
                f0, f1 = reg * 4, reg * 4 + 1
                row = (row & ~(0xFFFFF << (f0 * 20))) | (((row >> (f1 * 20)) & 0xFFFFF) << (f0 * 20))
        table[k] = row
    # the factored model must agree with iced on random field combinations of every live key
    samples, params = [], []
    for k in live:
        for _ in range(24):
            pr = {
                "form": rng.randrange(32),
                "ll": rng.randrange(4),
                "b": rng.randrange(2),
                "z": rng.randrange(2),
                "aaa": rng.choice((0, rng.randrange(1, 8))),
                "e": rng.choice((0xF, rng.randrange(16))),
                "vbar": rng.randrange(2),
                "rbar": rng.randrange(2) if ext else 1,
                "r2bar": rng.randrange(2),
                "xbar": rng.randrange(2) if ext else 1,
                "bbar": rng.randrange(2),
            }
            samples.append(evex_bytes(*k, **pr))
            params.append((k, pr))
    bad = []
    for c, (k, pr), g in zip(samples, params, decode_many(mode, samples), strict=True):
        want = evex_valid_model(table[k], **pr) and not collides(mode, table_rules.get(k, 0), c)
        if want != (g > 0):
            bad.append(f"{c.hex(' ')}: iced {'valid' if g > 0 else 'invalid'}, model {want}")
    if bad:
        sys.exit(
            f"EVEX model disagrees with iced (mode {mode}) on {len(bad)} encodings, e.g.:\n"
            + "\n".join(bad[:30])
        )
    return table


# ------------------------------------------------------------------------ 0F 01 and 0F A6/A7 (mod 3)
# Register forms whose ModRM byte is the instruction (group 7, VIA PadLock), per mode and
# mandatory prefix (none, 66, F3, F2, as the length function picks it:
# F2/F3 over 66): bit (modrm - 0xC0).

PFX = (b"", b"\x66", b"\xf3", b"\xf2")


def regform_mask(mode: int, op: int, pfx: bytes) -> int:
    codes = [pfx + bytes([0x0F, op, m]) for m in range(0xC0, 0x100)]
    mask = 0
    for k, g in enumerate(decode_many(mode, codes)):
        if g > 0:
            if g != len(pfx) + 3:
                sys.exit(f"length model wrong for {codes[k].hex(' ')} (mode {mode}): iced {g}")
            mask |= 1 << k
    # memory forms of 0F A6/A7 must not exist (the length function says -1 for them)
    if op != 0x01 and any(
        g > 0 for g in decode_many(mode, [pfx + bytes([0x0F, op, m]) for m in range(0xC0)])
    ):
        sys.exit(f"0F {op:02X} has memory forms in mode {mode}")
    return mask


# ---------------------------------------------------------------------------------------- output


def dedup(rows: Iterable[int]) -> tuple[list[int], dict[int, int]]:
    uniq = [0]
    index = {0: 0}
    for r in rows:
        if r not in index:
            index[r] = len(uniq)
            uniq.append(r)
    return uniq, index


def emit_array(name: str, ctype: str, dims: str, values: list[int], per_line: int) -> None:
    print(f"static const {ctype} {name}{dims} = {{")
    fmt = (
        (lambda v: f"{v:#x}ull")
        if ctype == "uint64_t"
        else (lambda v: f"{v:#x}")
        if ctype == "uint32_t"
        else str
    )
    for i in range(0, len(values), per_line):
        print("    " + ", ".join(fmt(v) for v in values[i : i + per_line]) + ",")
    print("};")


def fingerprint() -> str:
    """sha256 of this generator's source and the iced-x86 version: written into the header, so a
    test can tell cheaply that the committed header is what this script would write."""
    import hashlib
    from importlib import metadata
    from pathlib import Path

    src = Path(__file__).read_bytes()
    return hashlib.sha256(src + metadata.version("iced-x86").encode()).hexdigest()


def main() -> None:
    rng = random.Random(15)
    vrules: dict[int, dict] = {32: {}, 64: {}}
    erules: dict[int, dict] = {32: {}, 64: {}}
    vex = {m: vex_table(m, vrules[m]) for m in (32, 64)}
    evex = {m: evex_table(m, rng, erules[m]) for m in (32, 64)}
    vrows, vidx = dedup(r for m in (32, 64) for r in vex[m].values())
    erows, eidx = dedup(r for m in (32, 64) for r in evex[m].values())
    print("/* Generated by gen_vex_pp.py from iced-x86 (see there for the layout).  Do not edit. */")
    print(f"/* fingerprint {fingerprint()} */")
    print("#ifndef XL_VEX_PP_H\n#define XL_VEX_PP_H\n#include <stdint.h>")
    print(f"#define XL_VEX_ROWS {len(vrows)}\n#define XL_EVEX_ROWS {len(erows)}")
    vt = "uint8_t" if len(vrows) < 256 else "uint16_t"
    et = "uint8_t" if len(erows) < 256 else "uint16_t"
    # flat arrays: vex_key[((mode64 * 3 + map-1) * 256 + op) * 16 + pp*4 + L*2 + W], a row index;
    # vex_rows[row * 3 + bit / 64]; evex_key[((mode64 * 5 + map index) * 256 + op) * 8 + pp*2 + W];
    # evex_rows[row * 32 + form]
    vk = [
        vidx[vex[mode].get((m, op, pp, ll, w), 0)]
        for mode in (32, 64)
        for m in (1, 2, 3)
        for op in range(256)
        for pp in range(4)
        for ll in (0, 1)
        for w in (0, 1)
    ]
    emit_array("vex_key", vt, "[2 * 3 * 256 * 16]", vk, 32)
    emit_array(
        "vex_rows",
        "uint64_t",
        "[XL_VEX_ROWS * 3]",
        [(r >> (64 * j)) & (2**64 - 1) for r in vrows for j in range(3)],
        6,
    )
    # evex_key[mode64][map index][op][pp*2 + W]
    ek = [
        eidx[evex[mode].get((m, op, pp, w), 0)]
        for mode in (32, 64)
        for m in EVEX_MAPS
        for op in range(256)
        for pp in range(4)
        for w in (0, 1)
    ]
    emit_array("evex_key", et, "[2 * 5 * 256 * 8]", ek, 32)
    emit_array(
        "evex_rows",
        "uint32_t",
        "[XL_EVEX_ROWS * 32]",
        [(r >> (20 * f)) & 0xFFFFF for r in erows for f in range(32)],
        8,
    )
    # regform_ok_tab[(mode index (16, 32, 64) * 3 + (0F 01, 0F A6, 0F A7)) * 4 + prefix]
    rf = [regform_mask(mode, op, pf) for mode in (16, 32, 64) for op in (0x01, 0xA6, 0xA7) for pf in PFX]
    emit_array("regform_ok_tab", "uint64_t", "[3 * 3 * 4]", rf, 4)
    # distinct-register rules: (mode64, 0 VEX / 1 EVEX, map, op, pp, L-or-0, W) -> bits
    print("struct xl_vex_rule { uint8_t mode64, evex, map, op, pp, l, w, rules; };")
    rl = []
    for mode in (32, 64):
        for (m, op, pp, ll, w), r in sorted(vrules[mode].items()):
            rl.append((mode == 64, 0, m, op, pp, ll, w, r))
        for (m, op, pp, w), r in sorted(erules[mode].items()):
            rl.append((mode == 64, 1, m, op, pp, 0, w, r))
    print(f"#define XL_VEX_NRULES {len(rl)}")
    print("static const struct xl_vex_rule vex_rules_list[XL_VEX_NRULES] = {")
    for t in rl:
        print("    {" + ", ".join(str(int(x)) for x in t) + "},")
    print("};")
    print("#endif")


if __name__ == "__main__":
    main()
