"""Live runs with C hooks on Unicorn against the Python machine running the same guest.

The same snippet runs on the Python machine (exit style, generic path) and on the C engine with
each C path; the final registers and the device state must agree exactly.  Stop reasons too.
"""

from __future__ import annotations

import importlib.resources

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.generic import GenericPath
from emu.machine import Machine
from emu.platform import DEFAULT_SYMBOLS
from fastpath import cengine as c

READS_64 = """
    mov rbx, REGS_MMIO
    mov eax, [rbx]
    movzx ecx, word ptr [rbx+4]
    movsx rdx, byte ptr [rbx+3]
    mov r8, qword ptr [rbx]
    mov byte ptr [rbx+0x10], 0x7f
    mov dword ptr [rbx+0x20], 0x12345678
    mov qword ptr [rbx+0x28], -2
    mov ah, [rbx+1]
    mov r11w, [rbx+2]
    movsxd r12, dword ptr [rbx+0x20]
    mov rdx, REGS_MMIO + 0x30
    mov word ptr fs:[rdx], 0x4142
    lea rdi, [rbx+0x40]
    mov ecx, 8
    mov al, 0x5a
    rep stosb
    lea rsi, [rip+data]
    lea rdi, [rbx+0x80]
    mov ecx, 4
    rep movsb
    mov rsi, rbx
    lea rdi, [rip+buf]
    mov ecx, 2
    rep movsd
    mov r13d, [rip+buf]
    mov r14d, [rip+buf+4]
    mov al, byte ptr [REGS_MMIO + 0x10]
    hlt
data: .byte 1, 2, 3, 4
buf: .quad 0
"""

READS_32 = """
    mov ebx, REGS_MMIO
    mov eax, [ebx]
    movzx ecx, byte ptr [ebx+1]
    movsx edx, word ptr [ebx+2]
    mov word ptr [ebx+0x10], 0x1234
    mov [ebx+0x14], ecx
    mov bh, 0
    mov esi, NOTIFY_MMIO
    mov edx, esi
    mov ax, 3
    mov word ptr [edx], ax
    std
    mov edi, REGS_MMIO + 0x60
    mov ecx, 3
    mov eax, 0x11223344
    rep stosd
    cld
    hlt
"""

PIO_HC = """
    mov dx, CONSOLE_PORT
    mov al, 'h'
    out dx, al
    mov al, 'i'
    out dx, al
    mov dx, NOTIFY_PORT
    mov ax, 2
    out dx, ax
    mov dx, CONSOLE_PORT + 5
    in al, dx
    mov r9, rax
    mov eax, HC_MMIO_WRITE
    mov ebx, NOTIFY_MMIO
    mov ecx, 2
    mov edx, 3
    vmcall
    mov r10, rax
    mov eax, 0x999
    vmmcall
    mov r11, rax
    mov eax, HC_MMIO_WRITE
    mov ecx, 3
    vmcall
    hlt
"""

NOTIFY = """
    mov ecx, 400
    mov rbx, NOTIFY_MMIO
    xor eax, eax
1:  lea rdx, [rbx + rax*4]
    mov word ptr [rdx], ax
    inc eax
    and eax, 3
    dec ecx
    jnz 1b
    hlt
"""


def _python(src: str, mode: int, style: str = "exit") -> tuple[object, Machine]:
    path = GenericPath() if style == "exit" else None
    m = Machine(assemble(src, mode=mode), board=default_board(), mmio_style=style, path=path)
    return m.run(timeout=20), m


def _c(src: str, mode: int, path: str, style: str = "exit", **kw):
    ctx = c.CContext()
    return c.run_machine_c(assemble(src, mode=mode), path=path, style=style, ctx=ctx, **kw), ctx


CASES = [(READS_64, 64), (READS_32, 32), (PIO_HC, 64), (NOTIFY, 64)]


@pytest.mark.parametrize("src,mode", CASES, ids=["reads64", "reads32", "pio_hc", "notify"])
@pytest.mark.parametrize(
    "path,style", [("subset", "exit"), ("capstone", "exit"), ("pv-fast", "exit"), ("subset", "inplace")]
)
def test_c_engine_equals_python_machine(src: str, mode: int, path: str, style: str) -> None:
    py, m = _python(src, mode, style)  # in-place: one exit per access on both sides
    cr, ctx = _c(src, mode, path, style)
    assert py.stop.reason.value == "hlt", py.stop
    assert cr.stop.reason.value == "hlt", cr.stop
    assert cr.stop.rip == py.stop.rip
    assert cr.regs == py.regs
    assert ctx.kicks == {q: n for q, n in m.board.notify.kicks.items()}
    assert ctx.regs_mem == bytes(m.board.regs.mem)
    assert ctx.console.decode("latin-1") == m.board.console.text
    assert cr.exits == py.exits
    assert cr.devices["c_engine"]["inplace_mismatch"] == 0  # in-place: the path saw what Unicorn did


def test_wildcard_live_counts_per_queue() -> None:
    cr, ctx = _c(NOTIFY, 64, "wildcard")
    assert cr.stop.reason.value == "hlt"
    assert ctx.kicks == {0: 100, 1: 100, 2: 100, 3: 100}
    assert ctx.counts["wildcard"] == 400


@pytest.mark.parametrize(
    "src,reason",
    [
        ("mov eax, [0x500000]\nhlt", "unmapped"),
        ("ud2", "invalid_insn"),
        ("jmp .", "timeout"),
        ("int3", "triple_fault"),
    ],
)
def test_stop_reasons_match_python(src: str, reason: str) -> None:
    m = Machine(assemble(src, mode=64), board=default_board(), mmio_style="exit", path=GenericPath())
    py = m.run(timeout=0.3)
    cr, _ = _c(src, 64, "subset", timeout=0.3)
    assert py.stop.reason.value == reason
    assert cr.stop.reason.value == reason, cr.stop
    assert cr.stop.rip == py.stop.rip


def test_budget() -> None:
    cr, _ = _c("1: jmp 1b", 64, "subset", max_insns=1000)
    assert cr.stop.reason.value == "budget"


def test_emulation_error_has_rip_and_bytes() -> None:
    # outside the C path's tables (SHL was the example until the C path learnt shifts, issue 14)
    src = "mov rbx, REGS_MMIO\nnop\naddps xmm0, xmmword ptr [rbx]\nhlt"
    img = assemble(src, mode=64)
    cr, ctx = _c(src, 64, "subset")
    assert cr.stop.reason.value == "emulation_error"
    rip = img.entry + 10 + 1
    assert cr.stop.rip == rip
    assert cr.stop.insn.startswith(bytes.fromhex("0f 58 03"))
    assert ctx.error is not None and ctx.error.status == "unsupported" and ctx.error.rip == rip


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4


def test_live_memory_does_not_grow_with_exits() -> None:
    syms = {**DEFAULT_SYMBOLS, "KICKS": 30000}
    src = (importlib.resources.files("fastpath.workloads") / "bench_mmio.S").read_text()  # any cwd
    img = assemble(src, mode=64, symbols=syms)
    m = Machine(img, board=default_board(), mmio_style="exit")
    m.init_regs()
    ctx = c.CContext()
    r = c.run_live(m, "subset", start_rip=img.entry, ctx=ctx)
    assert r.stop == "hlt" and r.exits == 30000
    before = _rss_kib()
    for _ in range(3):
        r = c.run_live(m, "subset", start_rip=img.entry, ctx=ctx)
        assert r.stop == "hlt" and r.exits == 30000
    assert _rss_kib() - before < 1024
    assert ctx.counts["subset"] == 30000
