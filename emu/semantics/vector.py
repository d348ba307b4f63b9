"""SSE and AVX moves between memory and xmm/ymm registers (no arithmetic).

Loads: the register gets the `size` bytes read, zero-extended — to bit 127 for legacy SSE (bits
255:128 of the YMM register are kept, SDM vol. 1 14.1.2), to bit 255 for VEX forms (VMOVSS,
VMOVDQU xmm, ...). That covers MOVD/MOVQ/MOVSS/MOVSD (memory forms zero the rest), the 16-byte
moves, LDDQU, MOVNTDQA and the VEX.128/256 moves. Stores write the low `size` bytes.
MMX MOVD/MOVQ load into / store from mmN (64 bits; MOVD zero-extends). The x87 side effects of an
MMX instruction (TOS = 0, all tags valid, exponent bits set) are not part of the guest state a path
sees and are not modelled (Unicorn does not set the exponent either).
Aligned forms (MOVDQA/MOVAPS/MOVAPD/MOVNT*, VMOVDQA/VMOVAPS/VMOVAPD/VMOVNT* at their own size)
are #GP on a misaligned operand, checked before any access. A 16-byte access reaches a device as
two 8-byte accesses and a 32-byte one as four, low address first (KVM's 8-byte MMIO chunks).
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Op
from emu.semantics.core import Exec, mask


def _vec(x: Exec) -> None:
    a = x.a
    reg = a.reg or "xmm0"
    addr = x.ea()
    # Touch the register first: a Cpu without it (a trace replay, a state without YMM/MMX) must
    # decline before the device sees the load (SEMANTICS rule 5).
    x.get_vec("ymm" + reg[3:] if a.vex and reg.startswith("xmm") else reg)
    if a.op is Op.SSE_STORE:
        x.write(addr, a.size, x.get_vec(reg) & mask(a.size))
    else:
        x.set_vec(reg, x.read(addr, a.size), a.vex)


SEMANTICS: dict[Op, Callable[[Exec], None]] = {Op.SSE_LOAD: _vec, Op.SSE_STORE: _vec}
