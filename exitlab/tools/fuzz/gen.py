"""The four input generators. Each is a pure function of (rng, index): a campaign is reproducible
from its seed whatever the number of processes, and one case can be regenerated from its index.

- structured: an over-approximated model of an x86 instruction — 0-4 legacy prefixes (group rules
  deliberately not enforced), optional REX, an opcode of the one-byte / 0F / 0F38 / 0F3A map (half
  the time one that touches memory the way MMIO code does), ModRM, SIB, displacement, immediate;
  a candidate longer than 15 bytes is cut by a sliding 15-byte window, so prefixes fall off the
  front and immediates off the back.
- havoc: 1-15 random bytes.
- contract: mutations of the agreed pv encoding `66 89 02` (prefixes, REX, ModRM, width, mode) —
  the inputs a fast path is most likely to be fooled by.
- corpus: replays and mutates saved cases (reproducer JSON or raw harness inputs).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

from emu.errors import ExitlabError, InputError
from emu.inputs import read_file
from emu.limits import CASE_FILE_MAX
from exitlab.tools.fuzz.atheris_target import case_from_input
from exitlab.tools.fuzz.case import Case
from exitlab.tools.fuzz.state import NOTIFY_WINDOW, solve_state

LEGACY_PREFIXES = (0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67)
CONTRACT = bytes.fromhex("66 89 02")
MAX_LEN = 15

# Opcodes that reach memory the way device drivers do (moves, ALU, bit ops, strings, SSE moves).
HOT_ONE_BYTE = tuple(
    sorted(
        {
            *[b + k for b in range(0x00, 0x40, 8) for k in range(4)],
            0x63,
            0x69,  # IMUL r, r/m, imm (issue 14 families from here on)
            0x6B,
            0x8F,  # POP r/m
            0xA6,  # CMPS, SCAS
            0xA7,
            0xAE,
            0xAF,
            0xD7,  # XLAT
            *range(0x80, 0x8C),
            0x8C,
            0x8E,
            0xA0,
            0xA1,
            0xA2,
            0xA3,
            0xA4,
            0xA5,
            0xAA,
            0xAB,
            0xAC,
            0xAD,
            0xC0,
            0xC1,
            0xC6,
            0xC7,
            0xD0,
            0xD1,
            0xD2,
            0xD3,
            0xF6,
            0xF7,
            0xFE,
            0xFF,
        }
    )
)
HOT_0F = (
    *range(0x40, 0x50),  # CMOVcc
    *range(0x90, 0xA0),  # SETcc
    0xA4,  # SHLD/SHRD
    0xA5,
    0xAC,
    0xAD,
    0xAF,  # IMUL r, r/m
    0xB8,  # POPCNT (F3)
    0xBC,  # BSF/TZCNT
    0xBD,  # BSR/LZCNT
    0xF0,  # LDDQU (F2)
    0x10,
    0x11,
    0x28,
    0x29,
    0x2B,
    0x6E,
    0x6F,
    0x7E,
    0x7F,
    0xA3,
    0xAB,
    0xB0,
    0xB1,
    0xB3,
    0xB6,
    0xB7,
    0xBA,
    0xBB,
    0xBE,
    0xBF,
    0xC0,
    0xC1,
    0xC3,
    0xC7,
    0xD6,
    0xE7,
)
HOT_0F38 = (0xF0, 0xF1, 0x2A, 0xF8, 0xF9)
HOT_0F3A = (0x14, 0x15, 0x16, 0x17, 0x20, 0x22)
_MAPS: tuple[tuple[bytes, tuple[int, ...], float], ...] = (
    (b"", HOT_ONE_BYTE, 0.55),
    (b"\x0f", HOT_0F, 0.30),
    (b"\x0f\x38", HOT_0F38, 0.08),
    (b"\x0f\x3a", HOT_0F3A, 0.07),
)
Generator = Callable[[random.Random, int], Case]


def _mode(rng: random.Random) -> int:
    return 64 if rng.random() < 0.7 else 32


def _disp(rng: random.Random, n: int) -> bytes:
    r = rng.random()
    if r < 0.3:
        v = rng.randrange(-8, 8)
    elif r < 0.5:
        v = rng.choice((0x7F, -0x80, 0x7FFF, -0x8000, 0x7FFFFFFF, -0x80000000))
    else:
        v = rng.getrandbits(8 * n)
    return (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


def _modrm_tail(rng: random.Random, addr16: bool) -> bytes:
    """ModRM, then SIB and displacement as that ModRM asks for (memory forms three times in four)."""
    mod = 3 if rng.random() < 0.25 else rng.choice((0, 0, 1, 2))
    reg, rm = rng.randrange(8), rng.randrange(8)
    out = bytes([mod << 6 | reg << 3 | rm])
    if mod == 3:
        return out
    if addr16:
        if mod == 1:
            return out + _disp(rng, 1)
        if mod == 2 or rm == 6:
            return out + _disp(rng, 2)
        return out
    if rm == 4:
        sib = rng.getrandbits(8)
        out += bytes([sib])
        if mod == 0 and sib & 7 == 5:
            return out + _disp(rng, 4)
    if mod == 1:
        return out + _disp(rng, 1)
    if mod == 2 or (mod == 0 and rm == 5):
        return out + _disp(rng, 4)
    return out


def structured_bytes(rng: random.Random, mode: int) -> bytes:
    prefixes = bytes(rng.choice(LEGACY_PREFIXES) for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 4))))
    rex = bytes([0x40 | rng.randrange(16)]) if mode == 64 and rng.random() < 0.4 else b""
    r, acc = rng.random(), 0.0
    escape, hot = _MAPS[0][0], _MAPS[0][1]
    for esc, hot_list, weight in _MAPS:
        acc += weight
        if r < acc:
            escape, hot = esc, hot_list
            break
    opcode = rng.choice(hot) if rng.random() < 0.5 else rng.randrange(256)
    addr16 = mode == 32 and 0x67 in prefixes
    body = prefixes + rex + escape + bytes([opcode]) + _modrm_tail(rng, addr16)
    body += bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 0, 1, 1, 2, 4, 4, 8))))
    if len(body) > MAX_LEN:
        start = rng.randrange(len(body) - MAX_LEN + 1)
        body = body[start : start + MAX_LEN]
    return body


def structured(rng: random.Random, index: int) -> Case:
    mode = _mode(rng)
    return solve_state(rng, structured_bytes(rng, mode), mode, gen="structured", index=index)


def havoc(rng: random.Random, index: int) -> Case:
    mode = _mode(rng)
    code = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, MAX_LEN + 1)))
    return solve_state(rng, code, mode, gen="havoc", index=index)


def contract_bytes(rng: random.Random) -> bytes:
    """The agreed encoding, exact one time in five, else with one to three mutations."""
    code = bytearray(CONTRACT)
    if rng.random() < 0.2:
        return bytes(code) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(4)))
    for _ in range(rng.randrange(1, 4)):
        m = rng.randrange(8)
        op_at = next(
            (i for i, b in enumerate(code) if b in (0x88, 0x89, 0x8B, 0xC7, 0x8A)), max(len(code) - 2, 0)
        )
        if m == 0:  # a legacy prefix somewhere in front of the opcode
            code.insert(rng.randrange(op_at + 1), rng.choice(LEGACY_PREFIXES))
        elif m == 1:  # REX right before the opcode, or misplaced further front
            code.insert(op_at if rng.random() < 0.7 else 0, 0x40 | rng.randrange(16))
        elif m == 2 and op_at + 1 < len(code):  # ModRM: other register, base, or a displacement
            code[op_at + 1] = rng.choice(
                (0x02, 0x0A, 0x12, 0x42, 0x82, 0x04, 0x05, 0x03, 0xC2, rng.randrange(256))
            )
        elif m == 3:  # width: drop 66, double it, or REX.W
            if 0x66 in code[:op_at] and rng.random() < 0.5:
                code.remove(0x66)
            else:
                code.insert(0, rng.choice((0x66, 0x48)))
        elif m == 4:  # the opcode
            code[op_at] = rng.choice((0x88, 0x8B, 0x8A, 0xC7, 0x89, 0x87, 0x01))
        elif m == 5:  # trailing bytes (displacement, immediate, or the next instruction)
            code += bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 5)))
        elif m == 6 and len(code) > 1:
            del code[rng.randrange(len(code))]
        else:
            code[rng.randrange(len(code))] ^= 1 << rng.randrange(8)
    return bytes(code[:MAX_LEN])


def contract(rng: random.Random, index: int) -> Case:
    mode = _mode(rng)
    window = NOTIFY_WINDOW if rng.random() < 0.85 else None
    return solve_state(rng, contract_bytes(rng), mode, window, gen="contract", index=index)


def mutate_bytes(rng: random.Random, code: bytes) -> bytes:
    out = bytearray(code or b"\x90")
    for _ in range(rng.randrange(1, 4)):
        m = rng.randrange(5)
        i = rng.randrange(len(out))
        if m == 0:
            out[i] ^= 1 << rng.randrange(8)
        elif m == 1:
            out[i] = rng.getrandbits(8)
        elif m == 2 and len(out) < MAX_LEN:
            out.insert(i, rng.choice(LEGACY_PREFIXES + (0x48, 0x41, 0x0F)))
        elif m == 3 and len(out) > 1:
            del out[i]
        else:
            out += bytes([rng.getrandbits(8)])
    return bytes(out[:MAX_LEN])


def scan_corpus(directory: str | Path) -> tuple[tuple[Case, ...], tuple[tuple[Path, str], ...]]:
    """Cases from a directory: *.json (cases or reproducers) and raw harness inputs (other files),
    and the files skipped with the reason (a corrupt file never aborts a campaign)."""
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"--corpus {directory}: no such directory")
    cases: list[Case] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            if path.suffix == ".json":
                cases.append(Case.load(path))
            else:
                cases.append(case_from_input(read_file(path, CASE_FILE_MAX, "corpus")))
        except (ExitlabError, ValueError, KeyError, TypeError, OSError) as exc:
            skipped.append((path, str(exc).removeprefix(f"{path}: ")))
    return tuple(cases), tuple(skipped)


def load_corpus(directory: str | Path | None) -> tuple[Case, ...]:
    """The usable cases of a corpus directory (see scan_corpus; the CLI reports what it skipped)."""
    if directory is None:
        return ()
    return scan_corpus(directory)[0]


def corpus_generator(cases: Sequence[Case]) -> Generator:
    """Replay a saved case as it is one time in four; else mutate its bytes (and usually its state)."""

    def corpus(rng: random.Random, index: int) -> Case:
        if not cases:
            return structured(rng, index)
        base = rng.choice(cases)
        r = rng.random()
        if r < 0.25:
            return Case(
                base.code,
                base.mode,
                base.regs,
                base.mmio,
                base.read_value,
                base.xmm,
                base.rip,
                "corpus",
                index,
            )
        code = mutate_bytes(rng, base.code)
        mode = base.mode if rng.random() < 0.9 else 96 - base.mode
        return solve_state(rng, code, mode, gen="corpus", index=index)

    return corpus


GENERATORS = ("structured", "havoc", "contract", "corpus")


def make_generators(names: Sequence[str], corpus: Sequence[Case] = ()) -> tuple[tuple[str, Generator], ...]:
    table: dict[str, Generator] = {
        "structured": structured,
        "havoc": havoc,
        "contract": contract,
        "corpus": corpus_generator(corpus),
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown generator(s) {', '.join(unknown)} (known: {', '.join(GENERATORS)})")
    return tuple((n, table[n]) for n in names)


def case_at(seed: int, index: int, generators: Sequence[tuple[str, Generator]]) -> Case:
    """Case number `index` of the campaign `seed`: generators take turns, each with its own stream."""
    name, gen = generators[index % len(generators)]
    rng = random.Random(f"exitlab-fuzz:{seed}:{index}")
    del name
    return gen(rng, index)
