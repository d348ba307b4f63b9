"""One exit through a C path on a full guest state (registers, RAM, vector registers, CR0).

A replay record carries neither RAM nor vector registers, and the live engine only the state a
whole program builds; the agreement tests of the stack, atomic, vector and misc families
(tests/emulate/test_c_families.py) need both, so `run_state` hands the C path (via
fastpath/csrc/semcheck.c) exactly the state a Python `BatchCpu` case has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from emu.exits import REG_NAMES, ExitKind
from fastpath._exitlab_c import ffi, lib
from fastpath.cengine import CContext, CResult, _result, path_id

_M64 = (1 << 64) - 1
VS_XMM, VS_YMM, VS_MM, VS_CR0 = 1, 2, 4, 8


@dataclass
class VecState:
    """YMM0-15 (XMM i = the low half of YMM i), MM0-7 and CR0; None = the state has none."""

    ymm: dict[int, int] | None = None
    mm: dict[int, int] | None = None
    cr0: int | None = None
    out_ymm: dict[int, int] = field(default_factory=dict)
    out_mm: dict[int, int] = field(default_factory=dict)


def run_state(ctx: CContext, path: str, mode: int, kind: ExitKind, addr: int, regs: Mapping[str, int],
              ram: bytearray, ram_base: int, vec: VecState | None = None) -> tuple[CResult, dict[str, int]]:
    """Handle the exit (kind, addr) by C path `path`; `ram` (at `ram_base`) is read and written in
    place, `vec`'s out_ymm/out_mm get the vector registers afterwards. Returns the result and the
    registers afterwards."""
    cregs = ffi.new("uint64_t[]", [regs.get(n, 0) & _M64 for n in REG_NAMES])
    vs = ffi.NULL
    if vec is not None:
        vs = ffi.new("struct xl_vecstate *")
        has = 0
        if vec.ymm is not None:
            has |= VS_XMM | VS_YMM
            for i, v in vec.ymm.items():
                for q in range(4):
                    vs.ymm[i][q] = (v >> (64 * q)) & _M64
        if vec.mm is not None:
            has |= VS_MM
            for i, v in vec.mm.items():
                vs.mm[i] = v & _M64
        if vec.cr0 is not None:
            has |= VS_CR0
            vs.cr0 = vec.cr0
        vs.has = has
    res = ffi.new("struct xl_result *")
    buf = ffi.from_buffer(ram)
    lib.xl_sem_run(ctx.cdata, path_id(path), mode, list(ExitKind).index(kind), addr, cregs,
                   ffi.cast("uint8_t *", buf), ram_base, len(ram), vs, res)
    if vec is not None:
        vec.out_ymm = {i: sum(int(vs.ymm[i][q]) << (64 * q) for q in range(4)) for i in range(16)}
        vec.out_mm = {i: int(vs.mm[i]) for i in range(8)}
    return _result(res), {n: int(cregs[i]) for i, n in enumerate(REG_NAMES)}
