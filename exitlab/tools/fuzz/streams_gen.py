"""Random guest *programs* for stream fuzzing (issue 11): readable Intel-syntax .S text.

A program is a list of *items*; an item is one or a few source lines that belong together (an
address set-up and the access that uses it, a loop head `mov ebp, N` + label, ...). The minimizer
deletes whole items first and then single lines of items not marked `atomic`.

Every program terminates: it ends in `hlt`, branches only jump forward, and loops are counted down
in EBP, which nothing else writes (a loop's head and tail are atomic items, so deleting one of them
leaves an undefined label: the candidate fails to assemble and is rejected). Memory stays inside
the platform map: RAM scratch at SCRATCH (0x100000, hashed by the comparator), the stack page below
LOAD_ADDR, and the two MMIO windows NOTIFY_MMIO / REGS_MMIO (deliberately including their edges:
REGS_MMIO's end runs into unmapped space, NOTIFY_MMIO's end into REGS_MMIO).

Choices come from a `Chooser`: `random.Random` for seeded campaigns, or the bytes of a fuzzer input
(`ByteChooser`) for the coverage-guided entry, so one input always makes the same program.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from emu.platform import NOTIFY_MMIO, REGS_MMIO

SCRATCH = 0x100000  # RAM the programs read and write (compared by hash, with the stack page)
SCRATCH_SIZE = 0x1000
T = TypeVar("T")


class Chooser(Protocol):
    def randint(self, a: int, b: int) -> int: ...

    def random(self) -> float: ...


class ByteChooser:
    """Choices read from fuzzer bytes (little-endian, 2 bytes a choice), then zeros: deterministic,
    and a mutation of a few bytes changes a few choices (what coverage guidance needs)."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def _next(self) -> int:
        chunk = self.data[self.pos : self.pos + 2]
        self.pos += 2
        return int.from_bytes(chunk.ljust(2, b"\0"), "little")

    def randint(self, a: int, b: int) -> int:
        return a + self._next() % (b - a + 1)

    def random(self) -> float:
        return self._next() / 65536.0


def pick(ch: Chooser, seq: Sequence[T]) -> T:
    return seq[ch.randint(0, len(seq) - 1)]


def chance(ch: Chooser, p: float) -> bool:
    return ch.random() < p


@dataclass(frozen=True, slots=True)
class Item:
    """Source lines that belong together. `tags`: `wild-unsafe` (a notify-window access that an
    address-only path may not skip: reads, RMW, strings, straddles), `atomic` (never split)."""

    lines: tuple[str, ...]
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Program:
    mode: int
    items: tuple[Item, ...]
    max_insns: int | None = None
    origin: str = ""  # "seed=S index=I" or "bytes=<sha>" (informational)
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def lines(self) -> list[str]:
        return [ln for it in self.items for ln in it.lines]

    @property
    def wildcard_ok(self) -> bool:
        """Every notify-window access is a plain store an address-only path may skip."""
        return not any("wild-unsafe" in it.tags for it in self.items)

    def source(self, header: Sequence[str] = ()) -> str:
        head = [f"# exitlab: mode={self.mode}"]
        if self.max_insns is not None:
            head.append(f"# exitlab-streams: max-insns={self.max_insns}")
        if not self.wildcard_ok:
            head.append("# exitlab-streams: wildcard-unsafe (a notify-window access is not a plain store)")
        if self.origin:
            head.append(f"# exitlab-streams: origin {self.origin}")
        head += [f"# {h}" if h else "#" for h in header]
        body = []
        for ln in self.lines:
            body.append(ln if ln.endswith(":") else "    " + ln)
        return "\n".join(head + body) + "\n"

    def with_items(self, items: Sequence[Item]) -> Program:
        return replace(self, items=tuple(items))

    def key(self) -> str:
        return hashlib.sha1(self.source().encode()).hexdigest()[:12]


def parse_program(text: str) -> Program:
    """Read a program back from its .S text (one item per line, labels and loop lines atomic)."""
    import re

    mode = 64
    budget = None
    items = []
    m = re.search(r"exitlab:\s*mode\s*=\s*(16|32|64)", text)
    if m:
        mode = int(m[1])
    m = re.search(r"exitlab-streams:\s*max-insns=(\d+)", text)
    if m:
        budget = int(m[1])
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith(".byte") else raw.strip()
        if not line:
            continue
        tags = {"atomic"} if line.endswith(":") or "ebp" in line else set()
        items.append(Item((line,), frozenset(tags)))
    if "exitlab-streams: wildcard-unsafe" in text and items:
        items[0] = Item(items[0].lines, items[0].tags | {"wild-unsafe"})
    return Program(mode=mode, items=tuple(items), max_insns=budget, origin="file")


# --------------------------------------------------------------------------------- registers
R64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
R32_ONLY = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")
_LEGACY = {"rax": "a", "rbx": "b", "rcx": "c", "rdx": "d"}
_SI = {"rsi": "si", "rdi": "di", "rsp": "sp", "rbp": "bp"}


def reg(name: str, width: int) -> str:
    """The name of 64-bit register `name` at `width` bytes."""
    if name.startswith("r") and name[1:].isdigit():
        return name + {1: "b", 2: "w", 4: "d", 8: ""}[width]
    if name in _LEGACY:
        x = _LEGACY[name]
        return {1: x + "l", 2: x + "x", 4: "e" + x + "x", 8: name}[width]
    s = _SI[name]
    return {1: s + "l", 2: s, 4: "e" + s, 8: name}[width]


PTR = {1: "byte ptr", 2: "word ptr", 4: "dword ptr", 8: "qword ptr", 16: "xmmword ptr"}


class Gen:
    """One program's generator state (mode, label counter, chooser)."""

    def __init__(self, ch: Chooser, mode: int) -> None:
        self.ch = ch
        self.mode = mode
        self.labels = 0
        self.regs = R64 if mode == 64 else R32_ONLY

    # helpers -------------------------------------------------------------------------------
    def r(self, exclude: Sequence[str] = ()) -> str:
        return pick(self.ch, [x for x in self.regs if x not in exclude])

    def widths(self) -> tuple[int, ...]:
        return (1, 2, 4, 8) if self.mode == 64 else (1, 2, 4)

    def rn(self, name: str, width: int) -> str:
        if self.mode == 32 and width == 8:
            width = 4
        if self.mode == 32 and width == 1 and name in ("rsi", "rdi"):
            name = "rbx" if name == "rsi" else "rdx"  # no SIL/DIL outside 64-bit mode
        return reg(name, width)

    def full(self, name: str) -> str:
        return self.rn(name, 8 if self.mode == 64 else 4)

    def imm(self, width: int) -> int:
        ch = self.ch
        kind = ch.randint(0, 5)
        if kind == 0:
            return ch.randint(0, 16)
        if kind == 1:
            return (1 << (8 * min(width, 4))) - 1 - ch.randint(0, 3)  # near the top
        if kind == 2:
            return 0x80 if width == 1 else 0x7F
        return ch.randint(0, (1 << (8 * min(width, 4) - 1)) - 1)

    def label(self, prefix: str) -> str:
        self.labels += 1
        return f"{prefix}{self.labels}"

    # addresses -----------------------------------------------------------------------------
    def target(self, width: int, allow_edges: bool = True) -> tuple[str, int, bool]:
        """(region, address, notify-conforming) for an access of `width` bytes."""
        ch = self.ch
        k = ch.randint(0, 99)
        if k < 30:
            q = ch.randint(0, 15)
            return "notify", NOTIFY_MMIO + 4 * q, True
        if k < 36:
            return "notify", NOTIFY_MMIO + ch.randint(0, 0x43), False
        if k < 40 and allow_edges:
            return "edge-notify", NOTIFY_MMIO + 0x1000 - ch.randint(1, max(1, width)), False
        if k < 46 and allow_edges:
            return "edge-regs", REGS_MMIO + 0x1000 - ch.randint(1, width + 2), False
        if k < 80:
            off = ch.randint(8, 0x40) if chance(ch, 0.7) else ch.randint(0, 0xFF0)
            if chance(ch, 0.6):
                off &= ~(width - 1)
            return "regs", REGS_MMIO + off, False
        return "ram", SCRATCH + ch.randint(0, 0x200), False

    def operand(self, addr: int, avoid: Sequence[str] = ()) -> tuple[list[str], str, list[str]]:
        """Set-up lines, the memory operand text and the registers it uses, for address `addr`."""
        ch = self.ch
        base = self.r(exclude=avoid)
        form = ch.randint(0, 6)
        if self.mode == 32 and form in (0, 6):
            return [], f"[{addr:#x}]", []
        if form <= 1:
            return [f"mov {self.full(base)}, {addr:#x}"], f"[{self.full(base)}]", [base]
        if form == 2:
            d = ch.randint(-0x80, 0x7F)
            return [f"mov {self.full(base)}, {addr - d:#x}"], f"[{self.full(base)}{d:+#x}]", [base]
        if form == 3:
            d = ch.randint(-0x2000, 0x2000)
            return [f"mov {self.full(base)}, {addr - d:#x}"], f"[{self.full(base)}{d:+#x}]", [base]
        if form in (4, 5):
            idx = self.r(exclude=[*avoid, base])
            s = pick(ch, (1, 2, 4, 8))
            i = ch.randint(0, 16)
            d = ch.randint(-0x80, 0x80)
            setup = [f"mov {self.full(base)}, {addr - i * s - d:#x}", f"mov {self.full(idx)}, {i}"]
            return setup, f"[{self.full(base)}+{self.full(idx)}*{s}{d:+#x}]", [base, idx]
        # 64-bit: a 32-bit address register (0x67 prefix), zero-extended
        b32 = reg(base, 4)
        return [f"mov {b32}, {addr:#x}"], f"[{b32}]", [base]

    # items ---------------------------------------------------------------------------------
    def alu(self) -> Item:
        ch = self.ch
        w = pick(ch, self.widths())
        a, b = self.r(), self.r()
        k = ch.randint(0, 11)
        if k == 0:
            return Item((f"mov {self.rn(a, w if w > 2 else 4)}, {self.imm(w)}",))
        if k <= 3:
            op = pick(ch, ("add", "sub", "adc", "sbb", "and", "or", "xor", "cmp", "test"))
            if chance(ch, 0.5):
                return Item((f"{op} {self.rn(a, w)}, {self.rn(b, w)}",))
            return Item((f"{op} {self.rn(a, w)}, {self.imm(min(w, 4)) & 0x7F}",))
        if k == 4:
            return Item((f"{pick(ch, ('inc', 'dec', 'neg', 'not'))} {self.rn(a, w)}",))
        if k == 5:
            return Item((f"{pick(ch, ('shl', 'shr', 'sar'))} {self.rn(a, w)}, 1",))
        if k == 6:
            return Item((pick(ch, ("stc", "clc", "cmc", "cld")),))
        if k == 7:
            return Item((f"lea {self.full(a)}, [{self.full(b)}+{ch.randint(0, 64)}]",))
        if k == 8:
            return Item((f"push {self.full(a)}", f"pop {self.full(b)}"))
        if k == 9:
            return Item(
                (
                    f"movq xmm{ch.randint(0, 3)}, {a}"
                    if self.mode == 64
                    else f"movd xmm{ch.randint(0, 3)}, {self.rn(a, 4)}",
                )
            )
        # RAM load/store/RMW
        setup, op, used = self.operand(SCRATCH + ch.randint(0, 0x100), avoid=[a])
        form = pick(ch, ("mov {m}, {r}", "mov {r}, {m}", "add {m}, {r}", "xor {r}, {m}", "cmp {m}, {r}"))
        return Item((*setup, form.format(m=f"{PTR[w]} {op}", r=self.rn(a, w))))

    def mmio(self) -> Item:
        ch = self.ch
        w = pick(ch, self.widths())
        region, addr, conforming = self.target(w)
        data = self.r()
        setup, op, used = self.operand(addr, avoid=[data])
        mem = f"{PTR[w]} {op}"
        rd = self.rn(data, w)
        unsafe = region != "ram" and region != "regs"
        k = ch.randint(0, 15)
        pre: list[str] = []
        if k <= 3:  # store from a register
            if region == "notify" and conforming and chance(ch, 0.8):
                pre = [f"mov {self.rn(data, 4)}, {(addr - NOTIFY_MMIO) // 4}"]
            elif chance(ch, 0.5):
                pre = [f"mov {self.rn(data, 4)}, {self.imm(4)}"]
            tags = {"wild-unsafe"} if region == "edge-notify" else set()
            return Item((*pre, *setup, f"mov {mem}, {rd}"), frozenset(tags))
        if k == 4:  # store an immediate
            value = (addr - NOTIFY_MMIO) // 4 if conforming else self.imm(min(w, 4)) & 0x7FFFFFFF
            tags = {"wild-unsafe"} if region == "edge-notify" else set()
            return Item((*setup, f"mov {mem}, {value}"), frozenset(tags))
        tags = {"wild-unsafe"} if unsafe else set()
        if k <= 7:  # loads
            if w <= 2 and chance(ch, 0.6):
                ext = pick(ch, ("movzx", "movsx"))
                return Item((*setup, f"{ext} {self.rn(data, pick(ch, (4, 8)))}, {mem}"), frozenset(tags))
            if w == 4 and self.mode == 64 and chance(ch, 0.2):
                return Item((*setup, f"movsxd {data}, {mem}"), frozenset(tags))
            return Item((*setup, f"mov {rd}, {mem}"), frozenset(tags))
        if k <= 10:  # read-modify-write and flag-setting reads (LOCK on the memory forms sometimes)
            op2 = pick(ch, ("add", "sub", "and", "or", "xor", "adc", "sbb", "cmp", "test"))
            lock = "lock " if chance(ch, 0.15) else ""
            if chance(ch, 0.3):
                unary = pick(ch, ("inc", "dec", "neg", "not"))
                return Item((*setup, f"{lock}{unary} {mem}"), frozenset(tags))
            if op2 in ("cmp", "test"):
                lock = ""  # not lockable (#UD)
            if chance(ch, 0.3):
                return Item((*setup, f"{lock}{op2} {mem}, {self.imm(1) & 0x7F}"), frozenset(tags))
            if chance(ch, 0.3) and op2 != "test":
                return Item((*setup, f"{op2} {rd}, {mem}"), frozenset(tags))
            if chance(ch, 0.15) and w > 1:
                cc = pick(ch, ("z", "nz", "c", "nc", "s", "be"))
                return Item((*setup, f"cmov{cc} {rd}, {mem}"), frozenset(tags))  # reads even when false
            if chance(ch, 0.1):
                bx = self.full("rbx")
                return Item((f"mov {bx}, {addr - 5:#x}", "mov al, 5", "xlatb"), frozenset(tags))
            return Item((*setup, f"{lock}{op2} {mem}, {rd}"), frozenset(tags))
        if k == 11:  # exotic memory forms (the C paths mostly decline them)
            kk = ch.randint(0, 5)
            if kk == 0:
                return Item((*setup, f"xchg {mem}, {rd}"), frozenset(tags))
            if kk == 1 and w >= 4:
                return Item((*setup, f"movnti {PTR[w]} {op}, {rd}"), frozenset(tags))
            if kk == 2:
                return Item(
                    (*setup, f"set{pick(ch, ('z', 'nz', 'c', 'b'))} byte ptr {op}"),
                    frozenset({"wild-unsafe"} if unsafe else set()),
                )
            if kk == 3 and w != 1:
                return Item((*setup, f"cmpxchg {mem}, {rd}"), frozenset(tags))
            if kk == 4:
                return Item((*setup, f"xadd {mem}, {rd}"), frozenset(tags))
            width = 8 if self.mode == 64 else 4
            return Item((*setup, f"push {PTR[width]} {op}", f"pop {self.full(data)}"), frozenset(tags))
        if k <= 13:
            return self.sse(addr, setup, op, unsafe)
        return self.moffs_or_pv()

    def sse(self, addr: int, setup: list[str], op: str, unsafe: bool) -> Item:
        ch = self.ch
        x = ch.randint(0, 3)
        tags = frozenset({"wild-unsafe"} if unsafe else set())
        k = ch.randint(0, 5)
        back = f"movq rax, xmm{x}" if self.mode == 64 else f"movd eax, xmm{x}"
        if k == 0:
            return Item((*setup, f"movd xmm{x}, dword ptr {op}", back), tags)
        if k == 1:
            return Item((*setup, f"movq xmm{x}, qword ptr {op}", back), tags)
        if k == 2:
            return Item((*setup, f"movdqu xmm{x}, xmmword ptr {op}", back), tags)
        if k == 3:
            return Item((*setup, f"movd dword ptr {op}, xmm{x}"), tags)
        if k == 4:
            return Item((*setup, f"movq qword ptr {op}, xmm{x}"), tags)
        return Item((*setup, f"movups xmmword ptr {op}, xmm{x}"), tags)

    def moffs_or_pv(self) -> Item:
        ch = self.ch
        if self.mode == 64 and chance(ch, 0.3):
            w = pick(ch, (1, 2, 4, 8))
            region, addr, conforming = self.target(w, allow_edges=False)
            acc = reg("rax", w)
            if chance(ch, 0.5):
                return Item(
                    (f"movabs {acc}, {PTR[w]} [{addr:#x}]",),
                    frozenset({"wild-unsafe"} if region == "notify" else set()),
                )
            return Item(
                (
                    f"mov eax, {(addr - NOTIFY_MMIO) // 4 if conforming else 7}",
                    f"movabs {PTR[w]} [{addr:#x}], {acc}",
                )
            )
        return self.pv()

    def pv(self) -> Item:
        """The agreed pv kick `66 89 02` (mov word ptr [rdx], ax) and its near misses."""
        ch = self.ch
        q = ch.randint(0, 15)
        addr = NOTIFY_MMIO + 4 * q
        k = ch.randint(0, 9)
        dx, ax = self.full("rdx"), "eax"
        if k == 7:
            addr = REGS_MMIO + 8 + 2 * ch.randint(0, 16)
        if k == 8:
            addr = SCRATCH + 2 * ch.randint(0, 64)
        value = q if chance(ch, 0.85) else ch.randint(0, 0xFFFF)
        setup = [f"mov {dx}, {addr:#x}", f"mov {ax}, {value}"]
        if k == 1:
            return Item((*setup, "mov ecx, eax", "mov word ptr [" + dx + "], cx"))
        if k == 2:
            return Item((*setup, "mov dword ptr [" + dx + "], eax"))
        if k == 3:
            return Item((*setup, ".byte 0x66, 0x89, 0x42, 0x00  # mov word ptr [rdx+0], ax (disp8)"))
        if k == 4:
            return Item((*setup, ".byte 0x3e, 0x66, 0x89, 0x02  # ds: mov word ptr [rdx], ax"))
        if k == 5:
            return Item((*setup, "mov byte ptr [" + dx + "], al"))
        if k == 6 and self.mode == 64:
            return Item((*setup, ".byte 0x66, 0x67, 0x89, 0x02  # mov word ptr [edx], ax"))
        return Item((*setup, "mov word ptr [" + dx + "], ax  # the pv form 66 89 02"))

    def string(self) -> Item:
        ch = self.ch
        w = pick(ch, self.widths())
        sfx = {1: "b", 2: "w", 4: "d", 8: "q"}[w]
        si, di, cx = self.full("rsi"), self.full("rdi"), self.rn("rcx", 4)
        src = self.target(w)
        dst = self.target(w)
        n = ch.randint(0, 6)
        d = "std" if chance(ch, 0.12) else "cld"
        tags = frozenset({"wild-unsafe"})
        if chance(ch, 0.04):  # issue 11 (d): a long REP over MMIO, across NOTIFY_MMIO's end into REGS_MMIO
            count = ch.randint(1000, 1025)
            start = NOTIFY_MMIO + 0x1000 - 4 * ch.randint(1, 8)
            return Item(
                (
                    f"mov {di}, {start:#x}",
                    f"mov {cx}, {count}",
                    f"mov eax, {self.imm(4)}",
                    "cld",
                    "rep stosd",
                ),
                tags,
            )
        k = ch.randint(0, 5)
        if k <= 1:
            return Item(
                (
                    f"mov {si}, {src[1]:#x}",
                    f"mov {di}, {dst[1]:#x}",
                    f"mov {cx}, {n}",
                    d,
                    f"rep movs{sfx}" if k == 0 else f"movs{sfx}",
                    "cld",
                ),
                tags,
            )
        if k <= 3:
            return Item(
                (
                    f"mov {di}, {dst[1]:#x}",
                    f"mov {cx}, {n}",
                    f"mov eax, {self.imm(4)}",
                    d,
                    f"rep stos{sfx}" if k == 2 else f"stos{sfx}",
                    "cld",
                ),
                tags,
            )
        if k == 4:
            return Item((f"mov {si}, {src[1]:#x}", d, f"lods{sfx}", "cld"), tags)
        return Item((f"mov {si}, {src[1]:#x}", f"mov {di}, {dst[1]:#x}", d, f"cmps{sfx}", "cld"), tags)

    def pio(self) -> Item:
        ch = self.ch
        k = ch.randint(0, 6)
        si, di, cx = self.full("rsi"), self.full("rdi"), self.rn("rcx", 4)
        if k <= 1:
            return Item(("mov dx, CONSOLE_PORT", f"mov al, {ch.randint(0x21, 0x7E)}", "out dx, al"))
        if k == 2:
            return Item(("mov dx, CONSOLE_PORT+5", "in al, dx"))
        if k == 3:
            q = ch.randint(0, 15)
            return Item(("mov dx, NOTIFY_PORT", f"mov eax, {q}", "out dx, ax"))
        if k == 4:
            return Item(
                (
                    f"mov {si}, {SCRATCH + ch.randint(0, 0x40):#x}",
                    "mov dx, CONSOLE_PORT",
                    f"mov {cx}, {ch.randint(0, 5)}",
                    "rep outsb",
                )
            )
        if k == 5:
            return Item(
                (
                    f"mov {di}, {SCRATCH + ch.randint(0, 0x40):#x}",
                    "mov dx, CONSOLE_PORT+5",
                    f"mov {cx}, {ch.randint(0, 5)}",
                    "rep insb",
                )
            )
        # string PIO with an MMIO side (rare in drivers, a corner of every path)
        if chance(ch, 0.5):
            return Item(
                (
                    f"mov {si}, {REGS_MMIO + ch.randint(0, 0x20):#x}",
                    "mov dx, CONSOLE_PORT",
                    f"mov {cx}, {ch.randint(1, 3)}",
                    "rep outsb",
                )
            )
        return Item(
            (
                f"mov {di}, {REGS_MMIO + 8 + ch.randint(0, 0x20):#x}",
                "mov dx, CONSOLE_PORT+5",
                f"mov {cx}, {ch.randint(1, 3)}",
                "rep insb",
            )
        )

    def hypercall(self) -> Item:
        ch = self.ch
        insn = pick(ch, ("vmcall", "vmmcall"))
        if chance(ch, 0.5):
            return Item((f"mov eax, {ch.randint(0, 12)}", insn))
        sizes = (1, 2, 4, 8) if self.mode == 64 else (1, 2, 4)
        size = pick(ch, sizes) if chance(ch, 0.9) else pick(ch, (0, 3, 16))
        region, addr, conforming = self.target(max(1, min(size, 8)))
        value = (addr - NOTIFY_MMIO) // 4 if conforming else self.imm(4)
        bx = self.full("rbx")
        return Item(
            ("mov eax, HC_MMIO_WRITE", f"mov {bx}, {addr:#x}", f"mov ecx, {size}", f"mov edx, {value}", insn)
        )

    def simple(self) -> Item:
        ch = self.ch
        k = ch.randint(0, 99)
        if k < 22:
            return self.alu()
        if k < 62:
            return self.mmio()
        if k < 72:
            return self.pv()
        if k < 82:
            return self.string()
        if k < 92:
            return self.pio()
        return self.hypercall()


def _body(g: Gen, n: int, depth: int) -> list[Item]:
    ch = g.ch
    items: list[Item] = []
    while len(items) < n:
        k = ch.randint(0, 99)
        if k < 8 and depth == 0 and n - len(items) >= 3:
            head = g.label("loop")
            count = ch.randint(1, 5)
            body = _body(g, ch.randint(1, 3), depth + 1)
            items.append(Item((f"mov ebp, {count}", f"{head}:"), frozenset({"atomic"})))
            items += body
            items.append(Item(("dec ebp", f"jnz {head}"), frozenset({"atomic"})))
        elif k < 16 and n - len(items) >= 2:
            lab = g.label("skip")
            a = g.r()
            cond = pick(ch, ("jz", "jnz", "jc", "jnc", "js", "jo", "jbe", "jl", "jg"))
            items.append(Item((f"cmp {g.rn(a, 4)}, {ch.randint(0, 8)}", f"{cond} {lab}")))
            items += _body(g, ch.randint(1, 2), depth + 1)
            items.append(Item((f"{lab}:",), frozenset({"atomic"})))
        else:
            items.append(g.simple())
    return items


def generate_with(ch: Chooser, origin: str = "") -> Program:
    """One program from a chooser: mode, 5-60 instructions' worth of items, maybe a budget."""
    mode = 64 if ch.random() < 0.7 else 32
    g = Gen(ch, mode)
    n = ch.randint(2, 16)
    items = _body(g, n, 0)
    items.append(Item(("hlt",)))
    budget = None
    if ch.random() < 0.3:
        budget = ch.randint(1, 4 * sum(len(it.lines) for it in items))
    return Program(mode=mode, items=tuple(items), max_insns=budget, origin=origin)


def generate(seed: int, index: int) -> Program:
    """Program `index` of campaign `seed`: a pure function of the two (any --jobs, any order)."""
    rng = random.Random(f"streams:{seed}:{index}")
    return generate_with(rng, origin=f"seed={seed} index={index}")


def program_from_bytes(data: bytes) -> Program:
    """The coverage-guided entry's decoding: the same bytes always give the same program."""
    return generate_with(ByteChooser(data), origin="bytes=" + hashlib.sha1(data).hexdigest()[:12])


GeneratorFn = Callable[[int, int], Program]
