"""Oracle 4: the same snippets under real KVM and under the Unicorn machine.

Everything that needs /dev/kvm skips with the reason when it is absent or unusable; the ABI checks
(struct sizes, ioctl numbers) run everywhere. No timing assertions.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import capstone
import pytest

from emu import guests
from emu import kvm_abi as A
from emu.assemble import assemble, load_guest
from emu.board import default_board
from emu.errors import ExitlabError
from emu.exits import ExitKind
from emu.kvm import KvmVm, kvm_backend, kvm_unavailable_reason, run_machine_kvm
from emu.machine import Machine, StopReason
from emu.platform import KVM_ENOSYS, STACK_TOP, PlatformSpec

REASON = kvm_unavailable_reason()
needs_kvm = pytest.mark.skipif(REASON is not None, reason=f"no usable KVM: {REASON}")
MASK64 = (1 << 64) - 1
GUESTS = [n for n in guests.names() if not n.startswith("pci_")]


def both(src_or_image, mode: int = 64, timeout: float = 5.0):
    image = assemble(src_or_image, mode=mode) if isinstance(src_or_image, str) else src_or_image
    k = run_machine_kvm(image, default_board(), timeout=timeout, keep_records=True)
    u = Machine(image, board=default_board(), keep_records=True).run(timeout=timeout)
    return k, u


def insn_len(code: bytes, mode: int, addr: int) -> int:
    md = capstone.Cs(
        capstone.CS_ARCH_X86,
        {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32}.get(mode, capstone.CS_MODE_64),
    )
    return next(md.disasm(code, addr)).size


# -- ABI, no KVM needed ------------------------------------------------------------------------
def test_ioctl_numbers_match_the_kernel_headers() -> None:
    # Values printed by a C program including <linux/kvm.h> on x86-64.
    assert A.KVM_GET_API_VERSION == 0xAE00
    assert A.KVM_CREATE_VM == 0xAE01
    assert A.KVM_GET_VCPU_MMAP_SIZE == 0xAE04
    assert A.KVM_GET_SUPPORTED_CPUID == 0xC008AE05
    assert A.KVM_CREATE_VCPU == 0xAE41
    assert A.KVM_SET_USER_MEMORY_REGION == 0x4020AE46
    assert A.KVM_RUN == 0xAE80
    assert (A.KVM_GET_REGS, A.KVM_SET_REGS) == (0x8090AE81, 0x4090AE82)
    assert (A.KVM_GET_SREGS, A.KVM_SET_SREGS) == (0x8138AE83, 0x4138AE84)
    assert A.KVM_IOEVENTFD == 0x4040AE79
    assert A.KVM_SET_CPUID2 == 0x4008AE90


def test_struct_layouts() -> None:
    assert ctypes.sizeof(A.KvmRegs) == 144 and A.KvmRegs.rip.offset == 128
    assert ctypes.sizeof(A.KvmSregs) == 312 and A.KvmSregs.interrupt_bitmap.offset == 280
    assert A.KvmRun.u.offset == 32
    assert A.KvmRunMmio.len.offset == 16 and A.KvmRunIo.data_offset.offset == 8


# -- register round trips ---------------------------------------------------------------------
@needs_kvm
@pytest.mark.parametrize("mode", [16, 32, 64])
def test_regs_and_sregs_round_trip(mode: int) -> None:
    with KvmVm(PlatformSpec()) as vm:
        vm.setup(mode, 0x8000, STACK_TOP)
        s1 = vm.get_sregs()
        vm.set_sregs(s1)
        assert bytes(vm.get_sregs()) == bytes(s1)
        want = A.KvmRegs(**{f: i * 0x1111 + 1 for i, (f, _) in enumerate(A.KvmRegs._fields_)})
        want.rflags = 0x2
        vm.set_regs(want)
        assert bytes(vm.get_regs()) == bytes(want)
        if mode == 64:
            assert s1.efer & A.EFER_LMA and s1.cs.l == 1 and s1.cr0 & A.CR0_PG
        elif mode == 32:
            assert s1.cr0 & A.CR0_PE and s1.cs.db == 1 and not s1.cr0 & A.CR0_PG


# -- the built-in guests, both machines ---------------------------------------------------------------
def _compare_records(k, u, mode: int) -> None:
    """Same accesses in the same order. KVM may report a write-like exit after it completed the
    instruction (RIP already past it): accept exactly the instruction's length, nothing else."""
    assert len(k.records) == len(u.records)
    for a, b in zip(k.records, u.records, strict=True):
        assert (a.kind, a.addr, a.truth_size, a.truth_value) == (b.kind, b.addr, b.truth_size, b.truth_value)
        if a.rip != b.rip:
            assert a.kind in (ExitKind.MMIO_WRITE, ExitKind.PIO_OUT), (a, b)
            assert a.rip == b.rip + insn_len(b.insn, mode, b.rip), (hex(a.rip), hex(b.rip), b.insn.hex())


@needs_kvm
@pytest.mark.parametrize("name", GUESTS)
def test_builtin_guest_matches_unicorn(name: str) -> None:
    image = load_guest(guests.builtin(name))
    hypercalls = name == "kick_hypercall"
    k, u = both(image, timeout=0.5 if hypercalls and kvm_backend() == "pvm" else 5.0)
    assert u.stop.reason is StopReason.HLT
    if hypercalls:
        # vmcall never reaches userspace under KVM: the kernel answers HC_MMIO_WRITE (unknown to it)
        # with -KVM_ENOSYS, so the guest's first call fails and it stops early; Unicorn does all 256.
        assert u.exits["hypercall"] == 256 and u.regs["rax"] == 0
        assert k.exits["hypercall"] == 0 and k.devices["notify"]["writes"] == 0
        if kvm_backend() == "pvm":
            # kvm_pvm has its own hypercall ABI: the instruction never completes; the watchdog ends it.
            assert k.stop.reason is StopReason.TIMEOUT
            assert k.regs["rax"] == 0x100 and k.regs["r13"] == 0
        else:
            assert k.stop.reason is StopReason.HLT
            assert k.regs["rax"] == (-KVM_ENOSYS) & MASK64
            assert (k.regs["r12"], k.regs["r13"]) == (64, 0)
        return
    assert k.stop.reason is StopReason.HLT and k.stop.rip == u.stop.rip
    assert k.regs == u.regs
    assert k.console == u.console
    for kind in ("mmio_write", "mmio_read", "pio_out", "pio_in"):
        assert k.exits[kind] == u.exits[kind], kind
    assert k.devices == u.devices  # notify kicks per queue, register device, console
    _compare_records(k, u, image.mode)


@needs_kvm
def test_32bit_guest_pio_mmio_and_regs() -> None:
    src = (
        "mov ebx, REGS_MMIO\nmov eax, dword ptr [ebx]\nmov dx, NOTIFY_PORT\nmov esi, eax\n"
        "mov eax, 2\nout dx, ax\nmov word ptr [ebx + 0x10], 0xbeef\nmovzx edi, word ptr [ebx + 0x10]\nhlt\n"
    )
    k, u = both(src, mode=32)
    assert k.stop.reason is u.stop.reason is StopReason.HLT
    assert k.regs == u.regs and k.regs["rsi"] == 0x74697865 and k.regs["rdi"] == 0xBEEF
    assert k.devices == u.devices
    _compare_records(k, u, 32)


@needs_kvm
def test_16bit_real_mode() -> None:
    k, u = both("mov ax, 0x1234\nmov dx, NOTIFY_PORT & 0xffff\nout dx, ax\nmov bx, 7\nhlt\n", mode=16)
    assert k.stop.reason is StopReason.HLT and k.regs == u.regs and k.devices == u.devices


@needs_kvm
def test_string_pio_out_and_in() -> None:
    src = (
        "lea rsi, [rip + msg]\nmov ecx, 5\nmov dx, CONSOLE_PORT\nrep outsb\n"
        "lea rdi, [rip + buf]\nmov ecx, 4\nmov dx, 0x80\nrep insb\nmov eax, dword ptr [rip + buf]\nhlt\n"
        'msg: .ascii "hello"\nbuf: .long 0\n'
    )
    k, u = both(src)
    assert k.console == u.console == "hello"
    assert k.exits["pio_out"] == u.exits["pio_out"] == 5 and k.exits["pio_in"] == u.exits["pio_in"] == 4
    assert k.regs == u.regs and k.regs["rax"] == 0xFFFFFFFF  # unclaimed port reads all-ones
    assert 2 <= k.kvm_exits["KVM_EXIT_IO"] <= 9  # string I/O may batch elements into one exit
    _compare_records(k, u, 64)


@needs_kvm
def test_triple_fault() -> None:
    # #DE with no IDT: both machines call it a triple fault.
    k, u = both("xor ecx, ecx\nmov eax, 1\ndiv ecx\nhlt\n")
    assert k.stop.reason is u.stop.reason is StopReason.TRIPLE_FAULT
    assert k.stop.rip == u.stop.rip == 0x8007
    # ud2: KVM escalates #UD to KVM_EXIT_SHUTDOWN; Unicorn reports the invalid instruction itself.
    k, u = both("nop\nud2\nhlt\n")
    assert k.stop.reason is StopReason.TRIPLE_FAULT and k.stop.rip == 0x8001
    assert u.stop.reason is StopReason.INVALID_INSN


@needs_kvm
def test_unmapped_access_stops_like_unicorn() -> None:
    k, u = both("mov eax, dword ptr [0x10]\nhlt\n")
    assert k.stop.reason is u.stop.reason is StopReason.UNMAPPED
    assert k.stop.rip == u.stop.rip == 0x8000
    # A write exit may come after KVM completed the instruction: RIP is then past it (7 bytes).
    k, u = both("mov dword ptr [0x500000], eax\nhlt\n")
    assert k.stop.reason is u.stop.reason is StopReason.UNMAPPED and u.stop.rip == 0x8000
    assert k.stop.rip in (0x8000, 0x8007)


@needs_kvm
@pytest.mark.parametrize("body", ["jmp .", "1: mov dx, NOTIFY_PORT\nout dx, ax\njmp 1b"])
def test_runaway_loop_stops_at_the_timeout(body: str) -> None:
    r = run_machine_kvm(assemble(body + "\n"), default_board(), timeout=0.3)
    assert r.stop.reason is StopReason.TIMEOUT  # returning at all proves the watchdog ended it


@needs_kvm
def test_trace_and_max_insns(tmp_path: Path) -> None:
    from exitlab.cli import main

    trace = tmp_path / "t.jsonl"
    assert main(["run", "kick_pio", "--engine", "kvm", "--trace", str(trace), "--json"]) == 0
    lines = trace.read_text().splitlines()
    assert json.loads(lines[0])["path"] == "kvm" and len(lines) == 1 + 256
    assert main(["run", "hello", "--engine", "kvm", "--path", "generic"]) == 1
    with pytest.raises(ExitlabError, match="cannot count"):
        run_machine_kvm(assemble("hlt\n"), default_board(), max_insns=10)


@needs_kvm
def test_kvm_bench_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from exitlab.cli import main

    out = tmp_path / "b.json"
    assert main(["kvm-bench", "--exits", "50", "--repeat", "1", "--json", str(out)]) == 0
    assert "seed cycles" in capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("pio", "mmio"):
        assert rows[name]["cycles_per_txn_median"] > 0 and rows[name]["host_ns_per_exit_median"] > 0
        assert rows[name]["userspace_exits"] == [50]
    for name in ("pio-ioeventfd", "mmio-ioeventfd", "mmio-wildcard"):
        if not rows[name]["skipped"]:
            assert rows[name]["cycles_per_txn_median"] > 0 and rows[name]["eventfd_counts"] == [50]
    assert rows["hypercall"]["skipped"] or rows["hypercall"]["cycles_per_txn_median"] > 0


def test_unavailable_kvm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import emu.kvm

    monkeypatch.setattr(emu.kvm, "KVM_DEVICE", "/nonexistent/kvm")
    reason = kvm_unavailable_reason()
    assert reason is not None and "/nonexistent/kvm: no such device" in reason
    with pytest.raises(emu.kvm.KvmUnavailableError):
        run_machine_kvm(assemble("hlt\n"), default_board())
