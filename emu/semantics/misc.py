"""XLAT, SMSW m16 and MOVSXD r16.

SMSW m16 stores CR0[15:0] (always 16 bits to memory). CR0 comes from the optional
`cpu.get_cr0()`; a guest state without it (a trace record, a batch case without "cr0") declines
before any access. The platforms differ: Unicorn's long/protected mode has CR0 = 0x11 (PE|ET), a
KVM guest here 0x33 (PE|MP|ET|NE, plus PG): each engine answers with its own.

XLAT: AL = [seg:rBX + zero-extended AL] (EBX under 0x67; the sum wraps at the address size).
MOVSXD with a 66 prefix: the Intel SDM lists `66 63 /r` as MOVSXD r16, r/m16 — a 2-byte read
moved to the 16-bit register (nothing to extend); the AMD APM only says the 16-bit form is
"not recommended" and QEMU/Unicorn read 4 bytes and keep the low 2. The register result is the
same; the device sees a 2-byte read here (Intel), a 4-byte one under Unicorn
(docs/known-discrepancies.md). MOVSXD itself is handled by the MOVSX semantics in emu/emulate.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from emu.access import Op
from emu.decode import effective_address
from emu.semantics.core import Exec


def _xlat(x: Exec) -> None:
    a = x.a
    mem = replace(a.mem, disp=x.get_reg("al"))
    x.set_reg("al", x.read(effective_address(mem, x.cpu.get, x.next_rip, x.mode), 1))


def _smsw(x: Exec) -> None:
    get_cr0 = getattr(x.cpu, "get_cr0", None)
    if get_cr0 is None:
        raise x.fail("CR0 is not part of this guest state")
    cr0 = get_cr0()
    x.write(x.ea(), 2, cr0 & 0xFFFF)


SEMANTICS: dict[Op, Callable[[Exec], None]] = {Op.XLAT: _xlat, Op.SMSW: _smsw}
