"""Access: what one decoded instruction does to memory, as plain data.

The generic path turns instruction bytes into an `Access` (emu/decode.py) and then carries it out
(emu/emulate.py). Keeping the decoded form as data, apart from both, lets the CLI print it, the
tests compare it with an independent decoder (iced-x86), and the C subset decoder share its shape.
`AccessKind` and `Op` are generated from the opcode map (emu/x86-opcode-map.txt -> emu/opmap.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.exits import GPR_NAMES
from emu.opmap import AccessKind, Op

__all__ = ["SUBREGS", "Access", "AccessKind", "MemOperand", "Op"]


@dataclass(frozen=True, slots=True)
class MemOperand:
    """An effective-address formula: segment:[base + index*scale + disp] at `addr_size` bytes.

    Register names are sub-register names as Capstone prints them (`eax` under a 0x67 prefix,
    `bx`/`si` in 16-bit addressing). `rip_relative` means the base is the *next* RIP (EIP under 0x67).
    """

    base: str | None
    index: str | None
    scale: int
    disp: int
    segment: str | None
    addr_size: int
    rip_relative: bool = False

    def formula(self) -> str:
        terms: list[str] = []
        if self.rip_relative:
            terms.append("rip" if self.addr_size == 8 else "eip")
        elif self.base:
            terms.append(self.base)
        if self.index:
            terms.append(f"{self.index}*{self.scale}")
        if self.disp or not terms:
            if terms and self.disp < 0:
                terms.append(f"- {-self.disp:#x}")
            else:
                terms.append(f"{self.disp:#x}" if not terms else f"+ {self.disp:#x}")
        body = " + ".join(terms).replace("+ - ", "- ").replace("+ + ", "+ ")
        seg = f"{self.segment}:" if self.segment else ""
        return f"{seg}[{body}]"


@dataclass(frozen=True, slots=True)
class Access:
    """One decoded instruction that touches memory.

    `size` is the memory operand size in bytes (element size for string ops, 16 for full SSE moves).
    `reg` is the register operand (sub-register name: `ah`, `r9d`, `xmm3`), `reg_size` its width;
    `imm` the immediate masked to the operand size. `mem` is the memory operand (for MOVS/STOS the
    destination ES:[rdi], for LODS the source); `src_mem` is MOVS's source. `mem_is_dest` says
    whether the memory operand is the destination of the operation. `raw` is the instruction bytes.
    """

    kind: AccessKind
    op: Op
    mnemonic: str
    length: int
    size: int
    mem: MemOperand
    mem_is_dest: bool
    reg: str | None = None
    reg_size: int = 0
    imm: int | None = None
    src_mem: MemOperand | None = None
    lock: bool = False
    rep: bool = False
    raw: bytes = b""
    align16: bool = False  # MOVDQA/MOVAPS/...: a misaligned operand is #GP (SDM), not an access
    align: int = 0         # general form of align16: required alignment in bytes (#GP), 0 = none
    repne: bool = False    # the last F2/F3 prefix was F2 (REPNE for CMPS/SCAS)
    cond: int | None = None  # CMOVcc/SETcc condition (low nibble of the opcode)
    reg2: str | None = None  # a second register operand (SHLD/SHRD's CL count, IMUL's ...)
    vex: bool = False      # VEX-encoded: a register write zeroes up to bit 255

    def describe(self) -> dict[str, object]:
        """A JSON-friendly view (used by `exitlab decode --json`)."""
        out: dict[str, object] = {
            "kind": self.kind.value,
            "op": self.op.value,
            "mnemonic": self.mnemonic,
            "length": self.length,
            "size": self.size,
            "mem": self.mem.formula(),
            "mem_is_dest": self.mem_is_dest,
            "addr_size": self.mem.addr_size,
        }
        if self.reg is not None:
            out["reg"] = self.reg
        if self.imm is not None:
            out["imm"] = self.imm
        if self.src_mem is not None:
            out["src_mem"] = self.src_mem.formula()
        if self.lock:
            out["lock"] = True
        if self.rep:
            out["rep"] = True
            if self.repne:
                out["repne"] = True
        if self.cond is not None:
            out["cond"] = self.cond
        if self.reg2 is not None and self.op is Op.ENTER:
            out["level"] = int(self.reg2)  # ENTER's nesting level
        elif self.reg2 is not None:
            out["reg2"] = self.reg2
        if self.align or self.align16:
            out["align"] = self.align or 16
        if self.vex:
            out["vex"] = True
        return out

    def to_json(self) -> dict[str, object]:
        """Same as describe(): the object `exitlab decode --json` prints (without --regs)."""
        return self.describe()


def _subregister_table() -> dict[str, tuple[str, int, int]]:
    """Map every general sub-register name Capstone prints to (64-bit register, bit shift, bytes)."""
    table: dict[str, tuple[str, int, int]] = {}
    legacy = ("a", "c", "d", "b")
    for i, full in enumerate(GPR_NAMES):
        if i < 4:
            x = legacy[i]
            names = (f"{x}l", f"{x}x", f"e{x}x")
            table[f"{x}h"] = (full, 8, 1)
        elif i < 8:
            stem = full[1:]  # sp, bp, si, di
            names = (f"{stem}l", stem, f"e{stem}")
        else:
            names = (f"{full}b", f"{full}w", f"{full}d")
        table[names[0]] = (full, 0, 1)
        table[names[1]] = (full, 0, 2)
        table[names[2]] = (full, 0, 4)
        table[full] = (full, 0, 8)
    return table


# name -> (full 64-bit register of exits.REG_NAMES, shift in bits, size in bytes); read-only.
SUBREGS: dict[str, tuple[str, int, int]] = _subregister_table()
