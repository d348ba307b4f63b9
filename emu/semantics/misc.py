"""XLAT and MOVSXD r16.

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


SEMANTICS: dict[Op, Callable[[Exec], None]] = {Op.XLAT: _xlat}
