"""PUSH, POP, CALL, JMP through memory, RET, LEAVE, ENTER: instructions whose memory is (also) the stack.

They reach the generic path when the stack sits in MMIO (every push/pop is then a device access)
or when an explicit operand does (PUSH m, POP m, CALL/JMP through a pointer in MMIO). Every access
of the instruction is probed before the first one (a fault leaves the state untouched); the device
sees them in the order QEMU performs them: PUSH m reads the operand, then writes the stack; CALL m
reads the pointer, then pushes the return address; POP m reads the stack, then writes the operand,
whose address is computed with the *incremented* RSP (SDM: POP with an RSP-based destination).
ENTER follows QEMU's gen_enter: push RBP, copy level-1 frame pointers, push the frame pointer.
Element size: 8 in 64-bit mode (2 under 66 without REX.W for PUSH/POP/LEAVE), 4 in 32-bit mode.
A branch target that is not canonical is #GP on the branch, before anything is pushed.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.access import Op
from emu.decode import effective_address
from emu.semantics.core import GP, Exec, canonical, mask


def _sp(x: Exec) -> tuple[str, int, int]:
    """(stack pointer name, its value, address mask)."""
    name = x.sp_name()
    return name, x.get_reg(name), mask(x.stack_size())


def _target(x: Exec, target: int) -> int:
    target &= (1 << x.mode) - 1
    if x.mode == 64 and not canonical(target):
        raise x.fault(GP, f"non-canonical branch target {target:#x}")
    return target


def _push(x: Exec) -> None:
    a = x.a
    n = a.size
    name, sp, amask = _sp(x)
    slot = (sp - n) & amask
    if a.reg is not None:
        x.probe(slot, n, True)
        value = x.get_reg(a.reg)
    elif a.imm is not None:
        x.probe(slot, n, True)
        value = a.imm
    else:
        src = x.ea()
        x.probe(src, n, False)
        x.probe(slot, n, True)
        value = x.read(src, n)
    x.write(slot, n, value)
    x.set_reg(name, slot)


def _pop(x: Exec) -> None:
    a = x.a
    n = a.size
    name, sp, amask = _sp(x)
    new_sp = (sp + n) & amask
    if a.reg is not None:
        value = x.read(sp, n)
        x.set_reg(name, new_sp)
        x.set_reg(a.reg, value)
        return

    def after_pop(reg: str) -> int:
        return new_sp if reg == "rsp" else x.cpu.get(reg)

    dst = effective_address(a.mem, after_pop, x.next_rip, x.mode)
    x.probe(sp, n, False)
    x.probe(dst, n, True)
    value = x.read(sp, n)
    x.write(dst, n, value)
    x.set_reg(name, new_sp)


def _call(x: Exec) -> None:
    a = x.a
    n = 8 if x.mode == 64 else 4
    name, sp, amask = _sp(x)
    slot = (sp - n) & amask
    if a.reg is not None:
        target = x.get_reg(a.reg)
    elif a.imm is not None:
        target = a.imm
    else:
        src = x.ea()
        x.probe(src, a.size, False)
        x.probe(slot, n, True)
        target = x.read(src, a.size)
    target = _target(x, target)
    x.write(slot, n, x.next_rip)
    x.set_reg(name, slot)
    x.next_rip = target


def _jmp(x: Exec) -> None:
    a = x.a
    x.next_rip = _target(x, x.read(x.ea(), a.size))


def _ret(x: Exec) -> None:
    a = x.a
    n = a.size
    name, sp, amask = _sp(x)
    target = _target(x, x.read(sp, n))
    x.set_reg(name, (sp + n + (a.imm or 0)) & amask)
    x.next_rip = target


def _leave(x: Exec) -> None:
    """LEAVE: RSP = RBP, then pop RBP (BP under 66)."""
    a = x.a
    n = a.size
    name, _, amask = _sp(x)
    bp_full = "rbp" if x.mode == 64 else "ebp"
    frame = x.get_reg(bp_full) & amask
    value = x.read(frame, n)
    x.set_reg(name, (frame + n) & amask)
    x.set_reg({2: "bp", 4: "ebp", 8: "rbp"}[n], value)


def _enter(x: Exec) -> None:
    """ENTER imm16, level (QEMU's gen_enter order)."""
    a = x.a
    n = a.size
    level = int(a.reg2 or "0") & 31
    name, sp, amask = _sp(x)
    bp_full = "rbp" if x.mode == 64 else "ebp"
    bp = x.get_reg(bp_full)
    frame = (sp - n) & amask
    copies = [((bp - n * i) & amask, (frame - n * i) & amask) for i in range(1, level)]
    x.probe(frame, n, True)
    for src, dst in copies:
        x.probe(src, n, False)
        x.probe(dst, n, True)
    if level:
        x.probe((frame - n * level) & amask, n, True)
    x.write(frame, n, bp)
    for src, dst in copies:
        x.write(dst, n, x.read(src, n))
    if level:
        x.write((frame - n * level) & amask, n, frame)
    x.set_reg(bp_full, frame)
    x.set_reg(name, (frame - (a.imm or 0) - n * level) & amask)


SEMANTICS: dict[Op, Callable[[Exec], None]] = {
    Op.PUSH: _push, Op.POP: _pop, Op.CALL: _call, Op.JMP: _jmp, Op.RET: _ret,
    Op.LEAVE: _leave, Op.ENTER: _enter,
}
