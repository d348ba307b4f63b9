"""DIV/IDIV whose quotient overflows stop with the guest's #DE in every engine, never a host SIGFPE.

Unicorn 2.1.4 divides an IDIV r/m32 of EDX:EAX = 2**63 by -1 with a host idiv that kills the
process (emu/divsites.py). Every guest here runs in a subprocess, so a regression fails the test
(status -8, SIGFPE) instead of killing pytest. One case per operand size and signedness, both
engines; the 32-bit IDIV also with its operand in RAM, on a device, in 32- and 16-bit mode, behind
prefixes, written at run time, under a budget and with LOCK.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from emu import divsites
from tests.hostile import ROOT, exitlab

ENGINES = ("python", "c")


def run_guest(source: str, *args: str) -> dict[str, Any]:
    """`exitlab run --json` of an assembly guest in a subprocess; the parsed result."""
    proc = exitlab("run", "--json", *args, "-", stdin=textwrap.dedent(source).encode())
    assert proc.returncode != -signal.SIGFPE, "the guest killed exitlab with SIGFPE"
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr.decode())
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def assert_de(result: dict[str, Any], insn_hex: str) -> None:
    """Stopped with #DE on the divide itself (the bytes at the stop RIP are the DIV/IDIV)."""
    stop = result["stop"]
    assert stop["reason"] == "triple_fault", stop
    assert "#DE" in stop["message"] or "vector 0" in stop["message"], stop
    assert stop["bytes"].startswith(insn_hex), stop


# (name, setup, divide, its bytes, registers as the divide starts: the #DE changes none of them)
OVERFLOWS = [
    ("div8", "mov eax, 0xffff\n mov ecx, 1", "div cl", "f6 f1", {"rax": 0xFFFF, "rcx": 1}),
    ("idiv8", "mov eax, 0x8000\n mov ecx, 0xff", "idiv cl", "f6 f9", {"rax": 0x8000, "rcx": 0xFF}),
    ("div16", "mov edx, 0xffff\n mov eax, 0xffff\n mov ecx, 1", "div cx", "66 f7 f1",
     {"rdx": 0xFFFF, "rax": 0xFFFF, "rcx": 1}),
    ("idiv16", "mov edx, 0x8000\n xor eax, eax\n mov ecx, 0xffff", "idiv cx", "66 f7 f9",
     {"rdx": 0x8000, "rax": 0, "rcx": 0xFFFF}),
    ("div32", "mov edx, 1\n xor eax, eax\n mov ecx, 1", "div ecx", "f7 f1", {"rdx": 1, "rax": 0, "rcx": 1}),
    ("idiv32", "mov edx, 0x80000000\n xor eax, eax\n mov ecx, -1", "idiv ecx", "f7 f9",
     {"rdx": 0x80000000, "rax": 0, "rcx": 0xFFFFFFFF}),
    ("div64", "mov edx, 1\n xor eax, eax\n mov ecx, 1", "div rcx", "48 f7 f1",
     {"rdx": 1, "rax": 0, "rcx": 1}),
    ("idiv64", "mov rdx, 0x8000000000000000\n xor eax, eax\n mov rcx, -1", "idiv rcx", "48 f7 f9",
     {"rdx": 1 << 63, "rax": 0, "rcx": (1 << 64) - 1}),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("name", "setup", "divide", "insn_hex", "regs"), OVERFLOWS,
                         ids=[o[0] for o in OVERFLOWS])
def test_overflow_is_de(
    engine: str, name: str, setup: str, divide: str, insn_hex: str, regs: dict[str, int]
) -> None:
    result = run_guest(f"{setup}\n{divide}\nhlt\n", "--engine", engine)
    assert_de(result, insn_hex)
    for reg, value in regs.items():
        assert result["regs"][reg] == value, (name, reg, result["regs"])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", ["inplace", "generic"])
def test_idiv32_ram_divisor(engine: str, path: str) -> None:
    result = run_guest(
        """
        lea rbx, [rip + val]
        mov edx, 0x80000000
        xor eax, eax
        idiv dword ptr [rbx]
        hlt
        val: .long -1
        """, "--engine", engine, "--path", path,
    )
    assert_de(result, "f7 3b")
    assert (result["regs"]["rdx"], result["regs"]["rax"]) == (0x80000000, 0)


DEVICE_DIVISOR = """
    mov rbx, REGS_MMIO
    mov dword ptr [rbx + 0x10], -1
    mov edx, 0x80000000
    xor eax, eax
    idiv dword ptr [rbx + 0x10]
    hlt
"""


@pytest.mark.parametrize("path", ["inplace", "generic", "fast", "wildcard"])
def test_idiv32_device_divisor_python(path: str) -> None:
    """In place the device read happens inside Unicorn (the guard hands QEMU 0 for the -1); exit
    style the read faults first and the generic path's IDIV raises #DE. Either way the device saw
    exactly one read, as on hardware (#DE comes after the read)."""
    result = run_guest(DEVICE_DIVISOR, "--engine", "python", "--path", path)
    assert_de(result, "f7 7b 10")
    assert result["devices"]["regs"]["reads"] == 1


@pytest.mark.parametrize("path", ["inplace", "capstone"])
def test_idiv32_device_divisor_c(path: str) -> None:
    """The C paths may not emulate IDIV on a device (an `emulation_error` stop); never a crash."""
    result = run_guest(DEVICE_DIVISOR, "--engine", "c", "--path", path)
    if result["stop"]["reason"] != "emulation_error":
        assert_de(result, "f7 7b 10")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("mode", "insn_hex"), [(32, "f7 f9"), (16, "66 f7 f9")])
def test_idiv32_other_modes(engine: str, mode: int, insn_hex: str) -> None:
    result = run_guest(
        f"# exitlab: mode={mode}\nmov edx, 0x80000000\nxor eax, eax\nmov ecx, -1\nidiv ecx\nhlt\n",
        "--engine", engine,
    )
    assert_de(result, insn_hex)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("prefixes", ["0x48, 0x40", "0x48, 0x2e", "0xf2", "0x2e, 0x2e, 0x2e, 0x2e, 0x2e"])
def test_idiv32_behind_prefixes(engine: str, prefixes: str) -> None:
    """A REX.W followed by another REX or a legacy prefix does not count (QEMU, like hardware): still
    the 32-bit IDIV."""
    result = run_guest(
        f"mov edx, 0x80000000\nxor eax, eax\nmov ecx, -1\n.byte {prefixes}, 0xf7, 0xf9\nhlt\n",
        "--engine", engine,
    )
    assert result["stop"]["reason"] == "triple_fault", result["stop"]
    assert result["regs"]["rdx"] == 0x80000000


@pytest.mark.parametrize("engine", ENGINES)
def test_lock_idiv32_is_ud(engine: str) -> None:
    """LOCK IDIV is #UD (SDM); Unicorn ignores the prefix, so the guard gives the #UD stop."""
    result = run_guest("mov edx, 0x80000000\nxor eax, eax\nmov ecx, -1\n.byte 0xf0, 0xf7, 0xf9\nhlt\n",
                       "--engine", engine)
    assert result["stop"]["reason"] == "invalid_insn", result["stop"]


@pytest.mark.parametrize("engine", ENGINES)
def test_idiv32_written_at_run_time(engine: str) -> None:
    """Code written by the guest is rescanned before it runs (W^X guard): its IDIV is hooked too."""
    result = run_guest(
        """
        lea rbx, [rip + slot]
        mov dword ptr [rbx], 0xf4f9f7    # idiv ecx; hlt
        mov edx, 0x80000000
        xor eax, eax
        mov ecx, -1
        jmp rbx
        .p2align 12
        slot: .fill 16, 1, 0x90
        """, "--engine", engine,
    )
    assert_de(result, "f7 f9 f4")


@pytest.mark.parametrize("engine", ENGINES)
def test_budget_before_the_idiv_wins(engine: str) -> None:
    """A budget that runs out at the IDIV stops there as `budget`; one more instruction gives #DE."""
    guest = "mov edx, 0x80000000\nxor eax, eax\nmov ecx, -1\nidiv ecx\nhlt\n"
    assert run_guest(guest, "--engine", engine, "--max-insns", "3")["stop"]["reason"] == "budget"
    assert_de(run_guest(guest, "--engine", engine, "--max-insns", "4"), "f7 f9")


@pytest.mark.parametrize("engine", ENGINES)
def test_non_overflowing_idiv_still_divides(engine: str) -> None:
    """The hooked IDIV runs as before when it does not trap: -100 / -7 = 14 rest -2, and the most
    negative quotient that fits (-2**31 / 1), in a loop (the hook runs at every execution)."""
    result = run_guest(
        """
        mov esi, 3
        again:
        mov edx, -1
        mov eax, -100
        mov ecx, -7
        idiv ecx
        mov r8d, eax
        mov r9d, edx
        mov edx, -1
        mov eax, 0x80000000
        mov ecx, 1
        idiv ecx
        dec esi
        jnz again
        hlt
        """, "--engine", engine,
    )
    assert result["stop"]["reason"] == "hlt", result["stop"]
    regs = result["regs"]
    assert (regs["r8"], regs["r9"]) == (14, 0xFFFFFFFE)
    assert (regs["rax"], regs["rdx"]) == (0x80000000, 0)


def test_emulate_batch_idiv32_device() -> None:
    """`emulate --batch` never runs Unicorn: the generic path's IDIV gives a #DE error line."""
    case = {"bytes": "f7 3b", "mode": 64, "rip": 4096, "regs": {"rdx": 0x80000000, "rax": 0, "rbx": 0x10000},
            "mmio": [0x10000, 4096], "read_value": 0xFFFFFFFF}
    proc = exitlab("emulate", "--batch", "-", stdin=(json.dumps(case) + "\n").encode())
    assert proc.returncode == 0, proc.stderr.decode()
    line = json.loads(proc.stdout.decode().splitlines()[0])
    assert "#DE" in line["error"] and "quotient too large" in line["error"], line


def test_stream_reference_stops_with_de() -> None:
    """The stream fuzzer's reference (Unicorn with the windows as RAM) stops as for any #DE."""
    code = textwrap.dedent(
        """
        from emu.assemble import assemble
        from exitlab.tools.fuzz.streams_ref import reference
        for src in ("mov edx, 0x80000000\\nxor eax, eax\\nmov ecx, -1\\nidiv ecx\\nhlt\\n",
                    "mov rbx, REGS_MMIO\\nmov dword ptr [rbx + 0x10], -1\\nmov edx, 0x80000000\\n"
                    "xor eax, eax\\nidiv dword ptr [rbx + 0x10]\\nhlt\\n"):
            out, _ = reference(assemble(src))
            print(out.stop, out.devices["regs.reads"])
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.split() == ["triple_fault", "0", "triple_fault", "1"]


# -- which forms trap: the measurement behind emu/divsites.py, against raw Unicorn --------------

_PROBE = textwrap.dedent(
    """
    import sys
    from unicorn import Uc, UcError, UC_ARCH_X86, UC_MODE_16, UC_MODE_32, UC_MODE_64
    from unicorn import x86_const as X
    cases = [line.split() for line in sys.stdin.read().splitlines()]
    for i in range(int(sys.argv[1]), len(cases)):
        mode, code, eax, edx, ecx = cases[i]
        mode = int(mode)
        print(i, flush=True)
        uc = Uc(UC_ARCH_X86, {16: UC_MODE_16, 32: UC_MODE_32, 64: UC_MODE_64}[mode])
        uc.mem_map(0x1000, 0x1000)
        code = bytes.fromhex(code)
        uc.mem_write(0x1000, code + b"\\xf4")
        regs = (X.UC_X86_REG_RAX, X.UC_X86_REG_RDX, X.UC_X86_REG_RCX) if mode == 64 else (
            X.UC_X86_REG_EAX, X.UC_X86_REG_EDX, X.UC_X86_REG_ECX)
        for reg, v in zip(regs, (eax, edx, ecx)):
            uc.reg_write(reg, int(v, 16))
        try:
            uc.emu_start(0x1000, 0x1000 + len(code))
        except UcError:
            pass
    """
)


def _cases() -> list[tuple[int, bytes, int, int, int]]:
    """Every DIV/IDIV size in every mode (and the prefix forms of the operand-size rule) with the
    dividends and divisors at the edges of the signed and unsigned ranges."""
    forms: list[tuple[int, bytes, int]] = []  # mode, code, operand bits
    for mode in (16, 32, 64):
        for bits in (8, 16, 32, 64):
            if bits == 64 and mode != 64:
                continue
            pre = {8: b"", 16: b"" if mode == 16 else b"\x66", 32: b"\x66" if mode == 16 else b"",
                   64: b"\x48"}[bits]
            for reg in (0xF1, 0xF9):  # DIV ECX, IDIV ECX
                forms.append((mode, pre + (b"\xf6" if bits == 8 else b"\xf7") + bytes([reg]), bits))
    for pre, bits in ((b"\x48\x66", 16), (b"\x66\x48", 64), (b"\x48\x40", 32), (b"\x40\x48", 64),
                      (b"\x48\x2e", 32), (b"\x41\x66", 16), (b"\xf0", 32), (b"\xf3", 32)):
        forms.append((64, pre + b"\xf7\xf9", bits))
    cases = []
    for mode, code, bits in forms:
        dividends = {0, 1, 1 << (2 * bits - 1), (1 << (2 * bits - 1)) - 1, (1 << 2 * bits) - 1}
        divisors = {1, (1 << bits) - 1, 1 << (bits - 1), 2}
        for dividend in dividends:
            lo, hi = (dividend, 0) if bits == 8 else (dividend & ((1 << bits) - 1), dividend >> bits)
            cases.extend((mode, code, lo, hi, divisor) for divisor in divisors)
    return cases


def test_only_idiv32_of_int64_min_by_minus_one_traps() -> None:
    """Run every case under raw Unicorn in child processes (restarted after each crash): the cases
    that kill the process are exactly those emu/divsites.py predicts."""
    cases = _cases()
    stdin = "\n".join(f"{m} {c.hex()} {a:x} {d:x} {x:x}" for m, c, a, d, x in cases)
    crashed, start = set(), 0
    while start < len(cases):
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(start)], input=stdin, capture_output=True,
                              text=True, timeout=300)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGFPE, proc.stderr
        last = int(proc.stdout.split()[-1])
        crashed.add(last)
        start = last + 1
    predicted = {
        i for i, (mode, code, eax, edx, ecx) in enumerate(cases)
        if divsites.idiv32(code, mode) is not None and divsites.host_traps(edx, eax, ecx)
    }
    assert crashed == predicted
    assert predicted  # the bug is still there to guard against (else drop the guard: emu/divsites.py)


def test_fuzz_oracle_run_one_stops_with_de() -> None:
    """emu.oracle.run_one (the one-instruction fuzzer's truth) runs the IDIV under Unicorn too: a -1
    divisor in a register, in RAM or read from the window is "cpu exception 0" with the state before
    the IDIV (the window read recorded: it happens before the fault); -100 / -7 still divides."""
    code = textwrap.dedent(
        """
        from emu.oracle import run_one
        regs = {"rdx": 0x80000000, "rax": 0, "rcx": 0xFFFFFFFF, "rbx": 0x10000}
        ram = [(0x1000, 0x1000)]
        for code, extra in ((b"\\xf7\\xf9", {}), (b"\\xf7\\x3b", {}), (b"\\xf7\\x3b", {"rbx": 0x1800}),
                            (b"\\xf7\\xf9", {"rdx": 0xFFFFFFFF, "rax": 0xFFFFFF9C, "rcx": 0xFFFFFFF9})):
            r = run_one(code, 64, 0x1000, {**regs, **extra}, (0x10000, 0x1000), 0xFFFFFFFF, ram,
                        ram_data=[(0x1800, b"\\xff" * 4)])
            print(r.fault, r.reg("rip"), r.reg("rax"), r.reg("rdx"), len(r.accesses))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    de = "cpu exception 0 4096 0 2147483648"
    assert proc.stdout.splitlines() == [f"{de} 0", f"{de} 1", f"{de} 0", "None 4098 14 4294967294 0"]


@pytest.mark.parametrize("engine", ENGINES)
def test_many_idiv_sites_one_hook_on_all_code(engine: str) -> None:
    """Past the per-site hook limit (Python 512, C 256; C also past 64 in one page) one hook on all
    code takes over: the 601st IDIV still stops with #DE, the 600 before it still divide."""
    result = run_guest(
        """
        xor edx, edx
        mov eax, 5
        mov ecx, 1
        .rept 600
        idiv ecx
        .endr
        mov edx, 0x80000000
        xor eax, eax
        mov ecx, -1
        idiv ecx
        hlt
        """, "--engine", engine,
    )
    assert_de(result, "f7 f9 f4")


def test_scan_finds_every_idiv32_start() -> None:
    """emu/divsites.py scan: every start of an IDIV r/m32, also inside a prefix run; not the 16- or
    64-bit forms, not F7 /6 (DIV) nor F6 /7 (IDIV r/m8)."""
    data = bytes.fromhex("90 2e f7 f9 90 66 f7 f9 48 f7 f9 f7 f1 f6 f9 48 40 f7 3d 00 00 00 00")
    # 2e f7 f9 from +1 or +2; f7 f9 behind 66 (+6) and behind REX.W (+9) as instructions of their own;
    # 48 40 f7 3d (the REX.W does not count) from +0xf, +0x10, +0x11
    assert divsites.scan(data, 0x1000, 64) == {0x1001, 0x1002, 0x1006, 0x1009, 0x100F, 0x1010, 0x1011}
    assert divsites.scan(bytes.fromhex("66 f7 f9 f7 f9"), 0, 16) == {0}
    assert divsites.scan(bytes.fromhex("66 f7 f9 f7 f9"), 0, 32) == {1, 3}
