"""LOCK #UD guard of the C engine (SEMANTICS rule 9, issue 13 C1).

Unicorn 2.1.4 aborts the whole process while translating LOCK BT/BTS/BTR/BTC with a register
operand, and drops the prefix of LOCK XADD/XCHG with register operands.  The C engine scans code
pages before Unicorn translates them (also code written at run time) and stops `invalid_insn`.
A regression here aborts the test process, which is why every case runs in a subprocess first.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastpath._exitlab_c import lib

from emu.assemble import assemble
from emu.board import default_board
from emu.machine import Machine
from fastpath import cengine as c

CONFIGS = [("subset", "exit"), ("capstone", "exit"), ("pv-fast", "exit"), ("subset", "inplace")]

UD = {
    "lock bts reg": "f0 0f ab c8",
    "lock btr reg": "f0 0f b3 c8",
    "lock btc reg": "f0 0f bb c8",
    "lock bt reg": "f0 0f a3 c8",
    "lock bts imm": "f0 0f ba e8 01",
    "lock xadd reg": "f0 0f c1 c0",
    "lock xchg reg": "f0 87 c0",
    "rex lock bts": "48 f0 0f ab c8",
}


def run(src: str, path: str, style: str, **kw):
    img = assemble(src)
    m = Machine(img, board=default_board(), mmio_style=style)
    m.init_regs()
    kw.setdefault("timeout", 20.0)
    return c.run_live(m, path, style=style, start_rip=img.entry, **kw), m


def _bytes_src(hexbytes: str) -> str:
    return ".byte " + ",".join("0x" + b for b in hexbytes.split()) + "\nhlt"


def test_guarded_bytes_do_not_abort_the_process() -> None:
    """The process survives every case (an abort would kill pytest itself)."""
    code = (
        "from emu.assemble import assemble\nfrom fastpath import cengine as c\n"
        f"for h in {list(UD.values())!r}:\n"
        "    src = '.byte ' + ','.join('0x' + b for b in h.split()) + '\\nhlt'\n"
        "    for p in ('fast', 'inplace'):\n"
        "        r = c.run_machine_c(assemble(src), path=p)\n"
        "        assert r.stop.reason.value == 'invalid_insn', (h, p, r.stop)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("path,style", CONFIGS)
@pytest.mark.parametrize("name", list(UD))
def test_lock_ud_stops_invalid_insn(name: str, path: str, style: str) -> None:
    r, _ = run("mov eax, 5\n" + _bytes_src(UD[name]), path, style)
    assert (r.stop, r.rip) == ("invalid_insn", 0x8005)
    assert r.insn.startswith(bytes.fromhex(UD[name]))


@pytest.mark.parametrize("path,style", CONFIGS)
def test_lock_bts_written_at_run_time_is_caught(path: str, style: str) -> None:
    """Self-modifying code: the page was scanned clean, then the guest writes LOCK BTS into it."""
    src = "lea rdi, [rip+t]\nmov dword ptr [rdi], 0xc8ab0ff0\nt: nop\nnop\nnop\nnop\nhlt"
    r, _ = run(src, path, style)
    assert (r.stop, r.rip) == ("invalid_insn", 0x800D)


def test_lock_bts_written_by_a_path_is_caught() -> None:
    """A REP MOVS from MMIO into code is emulated by the C path (a host write into RAM)."""
    src = """
        mov r14, REGS_MMIO
        mov dword ptr [r14], 0xc8ab0ff0
        mov rsi, r14
        lea rdi, [rip+t]
        mov ecx, 4
        cld
        rep movsb
    t:  nop
        nop
        nop
        nop
        hlt
    """
    r, _ = run(src, "subset", "exit")
    assert r.stop == "invalid_insn"
    assert r.insn.startswith(bytes.fromhex("f0 0f ab c8"))


@pytest.mark.parametrize("path,style", CONFIGS)
def test_valid_lock_and_stray_f0_bytes_run(path: str, style: str) -> None:
    """LOCK BTS on memory is fine; an F0 byte inside other instructions (a displacement) is no site."""
    src = """
        mov rbx, 0x100000
        mov eax, 3
        lock bts dword ptr [rbx], eax
        mov ecx, 40
    1:  mov edx, 0xc8ab0ff0
        dec ecx
        jnz 1b
        mov esi, [rbx]
        hlt
    """
    r, m = run(src, path, style)
    assert r.stop == "hlt"
    assert int(m.regfile.get("rsi")) == 8


def test_budget_reaching_a_guarded_instruction() -> None:
    r, _ = run("nop\n" + _bytes_src(UD["lock bts reg"]), "subset", "exit", max_insns=1)
    assert (r.stop, r.rip) == ("budget", 0x8001)
    r, _ = run("nop\n" + _bytes_src(UD["lock bts reg"]), "subset", "exit", max_insns=2)
    assert (r.stop, r.rip) == ("invalid_insn", 0x8001)


@pytest.mark.parametrize(
    "hexbytes,mode,ud",
    [
        ("f0 0f ab c8", 64, True),
        ("f0 0f ab 08", 64, False),  # lock bts [rax], ecx
        ("f0 0f ba 28 01", 64, False),  # lock bts [rax], 1
        ("f0 0f ba 20 01", 64, True),  # lock bt [rax], 1: BT is not lockable
        ("f0 01 d8", 64, True),
        ("f0 01 18", 64, False),
        ("f0 83 38 01", 64, True),  # lock cmp
        ("f0 82 00 01", 32, False),
        ("f0 82 00 01", 64, True),
        ("f0 0f c7 08", 64, False),  # cmpxchg8b [rax]
        ("f0 0f c7 c8", 64, True),
        ("f0 f4", 64, True),
        ("f0", 64, False),
        ("0f ab c8", 64, False),
    ],
)
def test_lock_ud_rule(hexbytes: str, mode: int, ud: bool) -> None:
    b = bytes.fromhex(hexbytes)
    assert bool(lib.xl_lock_ud(b, len(b), mode)) is ud


# ------------------------------------------------------------------ issue 13 W10: system instructions
@pytest.mark.parametrize("path,style", CONFIGS)
@pytest.mark.parametrize(
    "src,rip,vector",
    [
        ("syscall\nhlt", 0x8000, 6),  # #UD: EFER.SCE clear
        ("sysenter\nhlt", 0x8000, 13),  # #GP: IA32_SYSENTER_CS = 0
        ("mov ecx, 0x12345\nxor eax, eax\nxor edx, edx\nwrmsr\nhlt", 0x8009, 13),  # no such MSR
        ("mov rax, cr0\nand eax, 0x7ffffffe\nmov cr0, rax\nhlt", 0x8008, 13),  # leaving long mode
        ("xor eax, eax\nltr ax\nhlt", 0x8002, 13),  # null selector
    ],
    ids=["syscall", "sysenter", "wrmsr", "cr0", "ltr"],
)
def test_system_instructions_fault_like_the_platform(
    src: str, rip: int, vector: int, path: str, style: str
) -> None:
    """Unicorn runs them as silent no-ops; the platform has no IDT: a real CPU triple-faults."""
    r, _ = run(src, path, style)
    assert (r.stop, r.rip, r.addr) == ("triple_fault", rip, vector)


def test_allowed_system_instructions_are_carried_out() -> None:
    src = """
        mov rax, cr0
        mov cr0, rax
        mov ecx, 0xc0000102
        mov eax, 0x1234
        xor edx, edx
        wrmsr
        mov rbx, cr0
        hlt
    """
    r, m = run(src, "subset", "exit")
    assert r.stop == "hlt"
    assert int(m.regfile.get("rbx")) == 0x80000033
    assert m.uc.msr_read(0xC0000102) == 0x1234


def test_fetch_from_a_device_window_in_place_is_unmapped() -> None:
    for style in ("exit", "inplace"):
        r, _ = run("mov rax, NOTIFY_MMIO\njmp rax", "subset", style)
        assert (r.stop, r.rip, r.addr) == ("unmapped", 0xFEB00000, 0xFEB00000)


@pytest.mark.parametrize("path,style", CONFIGS)
def test_store_into_its_own_block_counts_once(path: str, style: str) -> None:
    """QEMU restarts a store that invalidates its own translated block; the budget counts it once."""
    src = "lea rdi, [rip+t]\nmov dword ptr [rdi], 0xc8ab0ff0\nt: nop\nnop\nnop\nnop\nhlt"
    r, _ = run(src, path, style, max_insns=3)
    assert (r.stop, r.rip) == ("invalid_insn", 0x800D)
    r, _ = run(src, path, style, max_insns=2)
    assert (r.stop, r.rip) == ("budget", 0x800D)
