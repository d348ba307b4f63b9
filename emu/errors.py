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


class UsageError(ExitlabError):
    """A command-line option out of its documented range; the CLI exits with status 2, like argparse."""


class InputError(ExitlabError):
    """An input file or stream exitlab cannot accept: missing, a directory, too large, not text."""


class OutputError(ExitlabError):
    """A file or stream exitlab writes cannot be written; names the path and the host's reason."""
