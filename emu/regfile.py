"""Register access for a live Unicorn engine, per CPU mode.

The Python binding's `reg_read` costs microseconds per call, so a whole-file snapshot goes through
one `uc_reg_read_batch` call on preallocated ctypes arrays (~3 us for 20 registers instead of ~45).
In 16/32-bit modes the E-registers are read and R8-R15, FS/GS base read as 0.
"""

from __future__ import annotations

import ctypes

from unicorn import Uc
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from emu.exits import REG_NAMES

_REG64 = {
    "rax": X.UC_X86_REG_RAX,
    "rcx": X.UC_X86_REG_RCX,
    "rdx": X.UC_X86_REG_RDX,
    "rbx": X.UC_X86_REG_RBX,
    "rsp": X.UC_X86_REG_RSP,
    "rbp": X.UC_X86_REG_RBP,
    "rsi": X.UC_X86_REG_RSI,
    "rdi": X.UC_X86_REG_RDI,
    "r8": X.UC_X86_REG_R8,
    "r9": X.UC_X86_REG_R9,
    "r10": X.UC_X86_REG_R10,
    "r11": X.UC_X86_REG_R11,
    "r12": X.UC_X86_REG_R12,
    "r13": X.UC_X86_REG_R13,
    "r14": X.UC_X86_REG_R14,
    "r15": X.UC_X86_REG_R15,
    "rip": X.UC_X86_REG_RIP,
    "rflags": X.UC_X86_REG_RFLAGS,
    "fs_base": X.UC_X86_REG_FS_BASE,
    "gs_base": X.UC_X86_REG_GS_BASE,
}
_REG32 = {
    "rax": X.UC_X86_REG_EAX,
    "rcx": X.UC_X86_REG_ECX,
    "rdx": X.UC_X86_REG_EDX,
    "rbx": X.UC_X86_REG_EBX,
    "rsp": X.UC_X86_REG_ESP,
    "rbp": X.UC_X86_REG_EBP,
    "rsi": X.UC_X86_REG_ESI,
    "rdi": X.UC_X86_REG_EDI,
    "rip": X.UC_X86_REG_EIP,
    "rflags": X.UC_X86_REG_EFLAGS,
}
XMM = [getattr(X, f"UC_X86_REG_XMM{i}") for i in range(16)]
YMM = [getattr(X, f"UC_X86_REG_YMM{i}") for i in range(16)]
FP = [getattr(X, f"UC_X86_REG_FP{i}") for i in range(8)]  # MMX mmN = the mantissa of x87 register N


def reg_ids(mode: int) -> dict[str, int]:
    """Unicorn register ids for the names of REG_NAMES that exist in `mode`."""
    return dict(_REG64) if mode == 64 else dict(_REG32)


class RegFile:
    """Fast whole-file snapshots and single-register access on one engine."""

    def __init__(self, uc: Uc, mode: int) -> None:
        self.uc = uc
        self.mode = mode
        self.ids = reg_ids(mode)
        self.width_mask = (1 << 64) - 1 if mode == 64 else 0xFFFFFFFF
        names = [n for n in REG_NAMES if n in self.ids]
        self._slots = [REG_NAMES.index(n) for n in names]
        n = len(names)
        self._n = n
        self._idarr = (ctypes.c_int * n)(*[self.ids[name] for name in names])
        self._vals = (ctypes.c_uint64 * n)()
        base = ctypes.addressof(self._vals)
        self._ptrs = (ctypes.c_void_p * n)(*[base + 8 * i for i in range(n)])
        self._read_batch = uclib.uc_reg_read_batch

    def snapshot(self) -> tuple[int, ...]:
        """All of REG_NAMES in order (absent registers are 0)."""
        self._read_batch(self.uc._uch, self._idarr, self._ptrs, self._n)
        out = [0] * len(REG_NAMES)
        vals = self._vals
        for i, slot in enumerate(self._slots):
            out[slot] = vals[i]
        return tuple(out)

    def get(self, name: str) -> int:
        rid = self.ids.get(name)
        return 0 if rid is None else int(self.uc.reg_read(rid))

    def set(self, name: str, value: int) -> None:
        rid = self.ids.get(name)
        if rid is None:
            if value & self.width_mask != 0 or name not in REG_NAMES:
                raise ValueError(f"register {name} does not exist in {self.mode}-bit mode")
            return
        self.uc.reg_write(rid, value & self.width_mask)

    def get_xmm(self, index: int) -> int:
        return int(self.uc.reg_read(XMM[index]))

    def set_xmm(self, index: int, value: int) -> None:
        self.uc.reg_write(XMM[index], value & ((1 << 128) - 1))

    def get_ymm(self, index: int) -> int:
        return int(self.uc.reg_read(YMM[index]))

    def set_ymm(self, index: int, value: int) -> None:
        self.uc.reg_write(YMM[index], value & ((1 << 256) - 1))

    def get_mm(self, index: int) -> int:
        return int(self.uc.reg_read(FP[index])[0])

    def set_mm(self, index: int, value: int) -> None:
        self.uc.reg_write(FP[index], (value & ((1 << 64) - 1), 0xFFFF))

    def get_cr0(self) -> int:
        return int(self.uc.reg_read(X.UC_X86_REG_CR0))
