"""Exceptions a user can act on: each names what went wrong and where (RIP, bytes, line)."""

from __future__ import annotations


class ExitlabError(Exception):
    """Base of every error exitlab raises on purpose."""


class AssemblyError(ExitlabError):
    """The snippet did not assemble or link; carries file, line and the assembler's message."""

    def __init__(self, message: str, file: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


class ToolMissingError(ExitlabError):
    """A required host tool (GNU as, ld) is not installed."""


class GuestFormatError(ExitlabError):
    """A guest image (raw binary or ELF) cannot be loaded."""


class BusError(ExitlabError):
    """Overlapping device ranges, or an access no device claims."""


class EmulationError(ExitlabError):
    """An instruction a path cannot emulate: never skipped silently.

    `rip` and `insn` say where and what, so the message can be acted on.
    """

    def __init__(self, message: str, rip: int | None = None, insn: bytes = b"") -> None:
        where = f" at rip={rip:#x}" if rip is not None else ""
        raw = f" bytes={insn.hex(' ')}" if insn else ""
        super().__init__(f"{message}{where}{raw}")
        self.reason = message
        self.rip = rip
        self.insn = insn


class UnmappedAccess(EmulationError):
    """An access that leaves its window into unmapped space (SEMANTICS rule 6): a precise fault.

    Raised by the generic path *before* any part of the access reaches a device or RAM, with the
    registers as before the instruction (for REP: as before the faulting iteration). `gpa` is the
    first unmapped byte, `write` whether the faulting access was a write. The run loop turns it into
    stop `unmapped` at `rip`; it is never an `emulation_error`.
    """

    def __init__(self, gpa: int, write: bool, rip: int | None = None, insn: bytes = b"") -> None:
        what = "write to" if write else "read from"
        super().__init__(f"{what} unmapped memory at {gpa:#x}", rip, insn)
        self.gpa = gpa
        self.write = write
        self.iterations = 0  # REP iterations completed before the fault (set by emu.emulate)
        self.accesses: tuple[object, ...] = ()  # device accesses those iterations made


class GuestFault(EmulationError):
    """An architectural exception the instruction raises (#DE, #GP, #UD, ...), found by the emulator.

    The platform has no IDT, so a guest exception ends the run; `vector` is the exception number
    (0 = #DE, 6 = #UD, 13 = #GP) and `name` its mnemonic. State is as before the instruction and no
    device was accessed (except DIV/IDIV's read of the divisor, as on hardware). The run loop may
    map it to the stop the architecture gives (triple_fault for #DE/#GP, invalid_insn for #UD); as
    an EmulationError it is at least an `emulation_error`.
    """

    NAMES = {0: "#DE", 6: "#UD", 12: "#SS", 13: "#GP", 17: "#AC"}
    LONG = {0: "divide error", 6: "invalid opcode", 12: "stack fault", 13: "general-protection fault",
            17: "alignment check"}

    def __init__(self, vector: int, why: str, rip: int | None = None, insn: bytes = b"") -> None:
        self.vector = vector
        self.name = self.NAMES.get(vector, f"#{vector}")
        self.iterations = 0
        self.accesses: tuple[object, ...] = ()
        super().__init__(f"{self.LONG.get(vector, 'exception')} ({self.name}): {why}", rip, insn)
