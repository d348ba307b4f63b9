"""The Unicorn truth run from C (fastpath/csrc/fuzzcore.c): `run_one`'s result without a new engine
per case.

emu.oracle.run_one opens, maps and tears down a Unicorn engine for every case, which is most of
the fuzzer's time. `CTruth` keeps one engine per (mode, MMIO window, RIP) — the generators use
four windows and one RIP, so a campaign opens at most eight — and resets it per case in C
(uc_context_restore, the dirty RAM pages zeroed, the code rewritten and its translation dropped).
It returns the same `OracleResult`; tests/test_fuzz_fast.py checks the two agree case by case.
"""

from __future__ import annotations

from typing import Any

import capstone  # noqa: F401  (loads libcapstone before the extension)
import unicorn  # noqa: F401  (loads libunicorn before the extension)
from fastpath._exitlab_c import ffi, lib
from unicorn import UcError

from emu.batchcpu import default_ram_regions
from emu.cpu import DeviceAccess
from emu.exits import GPR_NAMES
from emu.oracle import OracleResult, run_one
from exitlab.tools.fuzz.case import Case

FZ_OK, FZ_UCERR, FZ_EXCEPTION, FZ_STEPS = 0, 1, 2, 3
MAX_ACC = 64
_M64 = (1 << 64) - 1
_M128 = (1 << 128) - 1
_REG_INDEX = {"rflags": 17, "fs_base": 18, "gs_base": 19, **{n: i for i, n in enumerate(GPR_NAMES)}}
_MAX_ENGINES = 16


def pack_case(case: Case, out: Any) -> None:
    """Fill a `struct xl_fz_case` from a Case (registers not named are 0, rflags 0x2)."""
    regs = out.regs
    for i in range(20):
        regs[i] = 0
    regs[17] = 0x2
    for name, value in case.regs:
        regs[_REG_INDEX[name]] = value & _M64
    regs[16] = case.rip
    xm = case.xmm_dict()
    n = (max(xm) + 1) if xm else 0
    for i in range(n):
        v = xm.get(i, 0)
        out.xmm[i][0] = v & _M64
        out.xmm[i][1] = (v >> 64) & _M64
    out.n_xmm = n
    out.mmio_base, out.mmio_size = case.mmio
    out.read_value = case.read_value
    code = case.code[:15]
    out.code[0 : len(code)] = code
    out.len = len(code)
    out.mode = case.mode


def fault_text(kind: int, code: int) -> str | None:
    """The `fault` string run_one reports for a C truth's fault kind and code."""
    if kind == FZ_OK:
        return None
    if kind == FZ_UCERR:
        return str(UcError(code))
    if kind == FZ_EXCEPTION:
        return f"cpu exception {code}"
    return "step limit reached"


def unpack_truth(t: Any, mode: int) -> OracleResult:
    n = min(int(t.n_acc), MAX_ACC)
    accs = tuple(
        DeviceAccess(int(a.gpa), int(a.size), bool(a.write), int(a.value))
        for a in (t.acc[i] for i in range(n))
    )
    ngpr = 16 if mode == 64 else 8
    regs = [(GPR_NAMES[i], int(t.regs[i])) for i in range(ngpr)]
    regs.append(("rip", int(t.next_rip)))
    regs.append(("rflags", int(t.regs[17])))
    xmm = tuple(int(t.xmm[i][0]) | int(t.xmm[i][1]) << 64 for i in range(ngpr))
    return OracleResult(accs, tuple(regs), xmm, int(t.next_rip), fault_text(int(t.fault), int(t.fault_code)))


class CTruth:
    """Engines by (mode, window, rip), opened on first use; `run(case)` is run_one for a Case."""

    def __init__(self) -> None:
        self._engines: dict[tuple[int, int, int, int], Any] = {}
        self._case = ffi.new("struct xl_fz_case *")
        self._truth = ffi.new("struct xl_fz_truth *")

    def engine(self, mode: int, rip: int, mmio: tuple[int, int]) -> Any:
        """The engine for that layout (None when Unicorn refuses it: the caller uses run_one)."""
        key = (mode, rip, mmio[0], mmio[1])
        eng = self._engines.get(key)
        if eng is None and key not in self._engines:
            if len(self._engines) >= _MAX_ENGINES:
                self.close()
            err = ffi.new("int *")
            raw = lib.xl_fz_open(mode, rip, mmio[0], mmio[1], err)
            eng = ffi.gc(raw, lib.xl_fz_close) if raw != ffi.NULL else None
            self._engines[key] = eng
        return eng

    def run(self, case: Case) -> OracleResult:
        eng = self.engine(case.mode, case.rip, case.mmio)
        if eng is None or case.mode not in (32, 64) or not 1 <= len(case.code) <= 15 or int(
            lib.xl_fz_run(eng, _packed(self._case, case), self._truth)
        ) != 0:
            ram = default_ram_regions(case.rip, case.mmio)
            return run_one(case.code, case.mode, case.rip, case.reg_dict(), case.mmio, case.read_value,
                           ram, case.xmm_dict())
        return unpack_truth(self._truth, case.mode)

    def close(self) -> None:
        self._engines.clear()


def _packed(buf: Any, case: Case) -> Any:
    pack_case(case, buf)
    return buf
