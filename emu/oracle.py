"""Ground truth by Unicorn: run exactly one instruction in a fresh engine and report what it did.

Used by the tests and the fuzzer as the reference for the generic path. The MMIO window is an
`mmio_map` region whose device answers every access with `read_value` truncated to the access
size; a UC_HOOK_MEM_READ|WRITE hook on the window records each access with its absolute address
and full size (16-byte SSE accesses arrive as two 8-byte events, qwords whole). A REP instruction
is stepped until RIP leaves it. Faults (unmapped, invalid, CPU exception) are reported, not raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import capstone
from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_CODE,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_MEM_WRITE,
    UC_MODE_32,
    UC_MODE_64,
    Uc,
    UcError,
)
from unicorn import x86_const as U

from emu import divsites
from emu.cpu import DeviceAccess
from emu.decode import effective_address, mem_operand
from emu.exits import GPR_NAMES
from emu.regfile import RegFile

_GPR64 = [getattr(U, f"UC_X86_REG_{n.upper()}") for n in GPR_NAMES]
_GPR32 = [U.UC_X86_REG_EAX, U.UC_X86_REG_ECX, U.UC_X86_REG_EDX, U.UC_X86_REG_EBX,
          U.UC_X86_REG_ESP, U.UC_X86_REG_EBP, U.UC_X86_REG_ESI, U.UC_X86_REG_EDI]
_XMM = [getattr(U, f"UC_X86_REG_XMM{i}") for i in range(16)]
_YMM = [getattr(U, f"UC_X86_REG_YMM{i}") for i in range(16)]
_FP = [getattr(U, f"UC_X86_REG_FP{i}") for i in range(8)]
STEP_LIMIT = 1 << 17


@dataclass(frozen=True, slots=True)
class OracleResult:
    """What one instruction did under Unicorn. `fault` is None when it completed.

    `regs` holds the GPRs of the mode (8 in 32-bit mode, zero-extended), then rip and rflags;
    `memory` the contents of the `watch` ranges afterwards; `xmm`/`ymm` the vector registers (set
    from the `xmm` (128-bit) and `ymm` (256-bit) arguments; an xmm value keeps its ymm's upper half).
    """

    accesses: tuple[DeviceAccess, ...]
    regs: tuple[tuple[str, int], ...]
    xmm: tuple[int, ...]
    next_rip: int
    fault: str | None = None
    memory: tuple[tuple[int, bytes], ...] = field(default=())
    ymm: tuple[int, ...] = field(default=())  # the full 256-bit registers (xmm = their low halves)
    mm: tuple[int, ...] = field(default=())   # MMX registers (x87 mantissas)

    def reg(self, name: str) -> int:
        return dict(self.regs)[name]


def run_one(
    code: bytes,
    mode: int,
    rip: int,
    regs: Mapping[str, int],
    mmio: tuple[int, int],
    read_value: int,
    ram: Iterable[tuple[int, int]],
    xmm: Mapping[int, int] | None = None,
    ram_data: Iterable[tuple[int, bytes]] = (),
    watch: Iterable[tuple[int, int]] = (),
    ymm: Mapping[int, int] | None = None,
    mm: Mapping[int, int] | None = None,
) -> OracleResult:
    """Execute the instruction `code` at `rip` once (all iterations for REP) in a fresh Uc.

    `ram` regions and the `mmio` window (both page-aligned) are mapped; `ram_data` is written
    after the code. Registers not named are 0 (rflags defaults to 0x2).
    """
    uc = Uc(UC_ARCH_X86, UC_MODE_64 if mode == 64 else UC_MODE_32)
    for base, size in ram:
        uc.mem_map(base, size)
    uc.mem_write(rip, bytes(code))
    for addr, data in ram_data:
        uc.mem_write(addr, bytes(data))
    events: list[DeviceAccess] = []
    current: list[tuple[int, int]] = []
    base, size = mmio

    def on_read(_uc: Uc, offset: int, n: int, _ud: object) -> int:
        # The device's answer to the access the hook last saw is read_value truncated to that
        # access; QEMU may re-split it (qword -> 2 dwords, unaligned -> aligned pieces), so serve
        # each piece by its byte offset in that access (bytes outside it read as 0).
        addr = base + offset
        start, length = current[-1] if current else (addr, n)
        value = read_value & ((1 << (8 * length)) - 1)
        if idiv_device and length == 4 and value == divsites.TRAP_DIVISOR:
            value = 0  # _guard_idiv: QEMU raises #DE for 0 itself instead of SIGFPE-ing on -1
        out = 0
        for i in range(n):
            k = addr + i - start
            if 0 <= k < length:
                out |= ((value >> (8 * k)) & 0xFF) << (8 * i)
        return out

    def on_write(_uc: Uc, _offset: int, _n: int, _value: int, _ud: object) -> None:
        return None

    def on_access(_uc: Uc, access: int, addr: int, n: int, value: int, _ud: object) -> None:
        current.append((addr, n))
        write = access == UC_MEM_WRITE
        shown = value & ((1 << (8 * n)) - 1) if write else read_value & ((1 << (8 * n)) - 1)
        events.append(DeviceAccess(addr, n, write, shown))

    interrupts: list[int] = []

    def on_intr(uc_: Uc, intno: int, _ud: object) -> None:
        interrupts.append(intno)
        uc_.emu_stop()

    idiv_device: list[bool] = []  # set by _guard_idiv: the IDIV's divisor is this window's read

    def on_start(uc_: Uc, address: int, _size: int, _ud: object) -> None:
        verdict = _guard_idiv(uc_, code, mode, address, mmio)
        if verdict == "device":
            idiv_device.append(True)
        elif verdict == "de":
            interrupts.append(0)
            uc_.emu_stop()

    uc.mmio_map(base, size, on_read, None, on_write, None)
    uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, on_access, begin=base, end=base + size - 1)
    uc.hook_add(UC_HOOK_INTR, on_intr)
    if divsites.idiv32(bytes(code), mode) is not None:
        uc.hook_add(UC_HOOK_CODE, on_start, None, rip, rip)

    gprs = _GPR64 if mode == 64 else _GPR32
    names = GPR_NAMES[: len(gprs)]
    wmask = (1 << mode) - 1
    for name, reg in zip(names, gprs, strict=False):
        uc.reg_write(reg, regs.get(name, 0) & wmask)
    uc.reg_write(U.UC_X86_REG_EFLAGS, regs.get("rflags", 0x2))
    if mode == 64:
        uc.reg_write(U.UC_X86_REG_FS_BASE, regs.get("fs_base", 0))
        uc.reg_write(U.UC_X86_REG_GS_BASE, regs.get("gs_base", 0))
    for i, value in (ymm or {}).items():
        uc.reg_write(_YMM[i], value)
    for i, value in (xmm or {}).items():
        uc.reg_write(_XMM[i], value)
    for i, value in (mm or {}).items():
        uc.reg_write(_FP[i], (value, 0xFFFF))
    pc_reg = U.UC_X86_REG_RIP if mode == 64 else U.UC_X86_REG_EIP
    fault = None
    pc = rip
    try:
        for _ in range(STEP_LIMIT):
            uc.emu_start(pc, 0, count=1)
            pc = uc.reg_read(pc_reg)
            if interrupts:
                fault = f"cpu exception {interrupts[0]}"
                break
            if pc != rip:
                break
        else:
            fault = "step limit reached"
    except UcError as exc:
        fault = str(exc)
        pc = uc.reg_read(pc_reg)
    out_regs = [(name, uc.reg_read(reg)) for name, reg in zip(names, gprs, strict=False)]
    out_regs.append(("rip", pc))
    out_regs.append(("rflags", uc.reg_read(U.UC_X86_REG_EFLAGS)))
    nvec = 16 if mode == 64 else 8
    xmms = tuple(uc.reg_read(_XMM[i]) for i in range(nvec))
    ymms = tuple(uc.reg_read(_YMM[i]) for i in range(nvec))
    mms = tuple(int(uc.reg_read(_FP[i])[0]) for i in range(8))
    memory = tuple((addr, bytes(uc.mem_read(addr, n))) for addr, n in watch)
    return OracleResult(tuple(events), tuple(out_regs), xmms, pc, fault, memory, ymms, mms)


def _guard_idiv(uc: Uc, code: bytes, mode: int, rip: int, mmio: tuple[int, int]) -> str | None:
    """Unicorn 2.1.4 SIGFPEs the process on IDIV r/m32 of EDX:EAX = 2**63 by -1 (emu/divsites.py).
    "de": the divisor (register or RAM) is -1, stop with #DE before Unicorn divides; "device": it is
    read from the window (on_read hands QEMU 0 for a -1, so QEMU raises #DE after the read, as
    hardware does); None: nothing to do."""
    form = divsites.idiv32(bytes(code), mode)
    rf = RegFile(uc, mode)
    if form is None or not divsites.host_traps(rf.get("rdx"), rf.get("rax"), divsites.TRAP_DIVISOR):
        return None
    reg = form.register
    if reg is not None:
        divisor = rf.get(GPR_NAMES[reg])
    else:
        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64 if mode == 64 else capstone.CS_MODE_32)
        cs.detail = True
        insn = next(cs.disasm(bytes(code), rip, 1), None)
        mem_type = capstone.x86.X86_OP_MEM
        op = None if insn is None else next((o for o in insn.operands if o.type == mem_type), None)
        if insn is None or op is None:
            return None
        ea = effective_address(mem_operand(insn, op), rf.get, rip + insn.size, mode)
        if mmio[0] <= ea < mmio[0] + mmio[1]:
            return "device"
        try:
            divisor = int.from_bytes(bytes(uc.mem_read(ea, 4)), "little")
        except UcError:
            return None  # unmapped: Unicorn faults on the read before dividing
    return "de" if divisor & 0xFFFFFFFF == divsites.TRAP_DIVISOR else None
