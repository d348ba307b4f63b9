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
    assert A.KvmRun.kvm_valid_regs.offset == 288 and A.KvmRun.s_regs.offset == 304  # kvm_sync_regs


@needs_kvm
def test_sync_regs_rip_equals_kvm_get_regs() -> None:
    with KvmVm(PlatformSpec()) as vm:
        vm.load(assemble("mov eax, dword ptr [0xfeb01000]\nhlt\n"))
        vm.setup(64, 0x8000, STACK_TOP)
        if not vm.enable_sync_regs():
            pytest.skip("KVM_CAP_SYNC_REGS without KVM_SYNC_X86_REGS")
        assert vm.kvm_run() == A.KVM_EXIT_MMIO
        assert vm.exit_rip() == vm.get_regs().rip == 0x8000


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
    # KVM reports a write exit after it completed the instruction (RIP past it, 7 bytes); the
    # engine finds the instruction and stops on it (SEMANTICS rule 6)
    k, u = both("mov dword ptr [0x500000], eax\nhlt\n")
    assert k.stop.reason is u.stop.reason is StopReason.UNMAPPED
    assert k.stop.rip == u.stop.rip == 0x8000


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


# -- streams T8: KVM's exits vs the exit model (SEMANTICS rules 4 and 6; emu/kvm_probe.py) ---------
def _vs_reference(src: str, mode: int = 64):
    """The KVM outcome and its field differences from the stream fuzzer's independent reference."""
    from exitlab.tools.fuzz.streams_compare import diff_fields
    from exitlab.tools.fuzz.streams_ref import reference
    from exitlab.tools.fuzz.streams_run import run_kvm

    image = assemble(src, mode=mode)
    ref, _ = reference(image)
    got = run_kvm(image, None)
    assert got is not None
    return ref, got, diff_fields(ref, got)


# (program, mode, stop rip, {register: value}, what the devices saw) -- each a minimized repro of
# the seed-404/601 campaigns; before the fix KVM reached the device and/or stopped past the insn
T8_CASES = {
    # a read running off REGS_MMIO's end: KVM read the 5 in-window bytes from the device first
    "read-straddle": ("mov ebx, 0xfeb01ffb\nmov rsi, qword ptr [ebx]\nhlt\n", 64, 0x8005,
                      {"rsi": 0}, {"regs.reads": 0}),
    # a write running off the end, REX.W: `4e 48 ab` and `48 ab` both decode; stop on the real start
    "stosq-straddle": ("mov rdi, 0xfeb01ffc\nmov eax, 1316205108\nstosq\nhlt\n", 64, 0x800F,
                       {"rdi": 0xFEB01FFC}, {"regs.writes": 0}),
    "mov-rex-straddle": ("mov ebx, 5\nmov rsi, 0xfeb01ffc\nmov qword ptr [rsi], rbx\nhlt\n", 64, 0x800F,
                         {"rsi": 0xFEB01FFC}, {"regs.writes": 0}),
    "stosw-straddle": ("mov rdi, 0xfeb01fff\nmov eax, 71626533\nstosw\nhlt\n", 64, 0x800F,
                       {"rdi": 0xFEB01FFF}, {"regs.writes": 0}),
    "movups-straddle": ("mov r9, 0xfeb01ffd\nmovups xmmword ptr [r9], xmm2\nhlt\n", 64, 0x800A,
                        {"r9": 0xFEB01FFD}, {"regs.writes": 0}),
    # a 16-byte store whose first 8-byte piece ends short of the window's end (seed 602)
    "movups-sib-straddle": ("mov r9, 0xfeb01fef\nmov r8, 14\nmovups xmmword ptr [r9+r8*4-0x31], xmm3\nhlt\n",
                            64, 0x8011, {"r9": 0xFEB01FEF}, {"regs.writes": 0}),
    # REP: KVM wrote RCX/RDI back for the faulting iteration (rcx 5, rdi 2)
    "rep-stosw-page0": ("mov ecx, 6\nrep stosw\nhlt\n", 64, 0x8005, {"rcx": 6, "rdi": 0}, {}),
    "rep-movsd-page0": ("mov rsi, 0x100041\nmov ecx, 5\nrep movsd\nhlt\n", 64, 0x800C,
                        {"rcx": 5, "rsi": 0x100041, "rdi": 0}, {}),
    "rep-stosw-straddle": ("mov rdi, 0xfeb01fff\nmov ecx, 2\nmov eax, 656955455\nrep stosw\nhlt\n", 64,
                           0x8014, {"rcx": 2, "rdi": 0xFEB01FFF}, {"regs.writes": 0}),
    # the last iteration faults: KVM leaves RIP on the REP even when RCX reaches 0 (seed 602)
    "rep-stosd-last-iteration": ("mov rdi, 0xfeb01ffc\nmov ecx, 2\nrep stosd\nhlt\n", 64, 0x800F,
                                 {"rcx": 1, "rdi": 0xFEB02000}, {"regs.writes": 1}),
    # KVM writes RFLAGS back only when a REP ends: at a later iteration's read exit they are stale
    "rep-scasd-flags": ("mov rdi, 0xfeb01ff8\nmov ecx, 4\nrep scasd\nhlt\n", 64, 0x800F,
                        {"rcx": 2, "rdi": 0xFEB02000}, {"regs.reads": 2}),
    "repe-cmpsd-flags": ("mov rsi, 0x100000\nmov rdi, 0xfeb01ff0\nmov ecx, 8\nrepe cmpsd\nhlt\n", 64,
                         0x8016, {}, {}),
    # the other operand faults: MOVS/CMPS read their first operand from a device before
    "movsq-dst-page0": ("mov rsi, 0xfeb01038\nmovsq\nhlt\n", 64, 0x800A,
                        {"rsi": 0xFEB01038, "rdi": 0}, {"regs.reads": 0}),
    "rep-movsd-dst-straddle": ("mov rsi, 0xfeb0000c\nmov rdi, 0xfeb01ffe\nmov ecx, 6\nrep movsd\nhlt\n", 64,
                               0x8019, {"rcx": 6, "rsi": 0xFEB0000C}, {"notify.reads": 0, "regs.writes": 0}),
    "cmpsw-straddle": ("mov rsi, 0xfeb00038\nmov rdi, 0xfeb01fff\ncmpsw\nhlt\n", 64, 0x8014,
                       {"rsi": 0xFEB00038}, {"notify.reads": 0, "regs.reads": 0}),
    "movsd-32bit-straddle": ("mov esi, 0xfeb00038\nmov edi, 0xfeb01fff\nmovsd\nhlt\n", 32, 0x800A,
                             {"rdi": 0xFEB01FFF}, {"notify.reads": 0, "regs.writes": 0}),
    # KVM's emulator refuses these SSE stores (KVM_EXIT_INTERNAL_ERROR): the address faults first
    "movq-page0": ("movq qword ptr [r8d], xmm2\nhlt\n", 64, 0x8000, {}, {}),
    "movd-page0-32bit": ("movd dword ptr [ebx], xmm2\nhlt\n", 32, 0x8000, {}, {}),
}


@needs_kvm
@pytest.mark.parametrize("name", sorted(T8_CASES))
def test_access_leaving_the_windows_faults_before_any_device_access(name: str) -> None:
    src, mode, rip, regs, devices = T8_CASES[name]
    ref, got, diff = _vs_reference(src, mode)
    assert (got.stop, got.rip) == ("unmapped", rip), got.message
    for reg, value in regs.items():
        assert got.regs[reg] == value, reg
    for key, value in devices.items():
        assert got.devices[key] == value, key
    assert diff == []


@needs_kvm
def test_ins_into_a_window_is_one_device_write_per_element() -> None:
    # KVM reads the 3 port bytes in one exit and stores them with one 3-byte MMIO write
    ref, got, diff = _vs_reference("mov rdi, 0xfeb01016\nmov ecx, 3\nrep insb\nhlt\n")
    assert got.stop == "hlt" and got.devices["regs.writes"] == 3 and got.exits["pio_in"] == 3
    assert diff == []


@needs_kvm
def test_ins_running_off_a_window_faults_before_the_port_read() -> None:
    ref, got, diff = _vs_reference("mov rdi, 0xfeb01fff\nmov ecx, 2\nrep insb\nhlt\n")
    assert (got.stop, got.rip) == ("unmapped", 0x800F)
    assert got.regs["rcx"] == 1 and got.regs["rdi"] == 0xFEB02000
    assert got.devices["regs.writes"] == 1 and got.exits["pio_in"] == 1
    assert diff == []


# KVM caps an INS batch by the bytes left in the page but counts elements: a word/dword batch can
# cross the window end (2 port reads, one 4-byte store straddling); with DF=1 it reads ahead RCX
# elements per exit and stores one (6 port reads for 3 elements); downwards from RAM into page 0
INS_CASES = {
    "insw-batch-crosses-end": ("mov rdi, 0xfeb01ffd\nmov ecx, 2\nrep insw\nhlt\n", "unmapped",
                               {"rcx": 1, "rdi": 0xFEB01FFF}, 1, 1),
    "insd-batch-crosses-end": ("mov rdi, 0xfeb01ffb\nmov ecx, 3\nrep insd\nhlt\n", "unmapped",
                               {"rcx": 2, "rdi": 0xFEB01FFF}, 1, 1),
    "insb-df1-window": ("std\nmov rdi, 0xfeb01010\nmov ecx, 3\nrep insb\ncld\nhlt\n", "hlt",
                        {"rcx": 0, "rdi": 0xFEB0100D}, 3, 3),
    "insb-df1-ram-into-page0": ("std\nmov rdi, 0x1002\nmov ecx, 4\nrep insb\nhlt\n", "unmapped",
                                {"rcx": 1, "rdi": 0xFFF}, 3, 0),
}


@needs_kvm
@pytest.mark.parametrize("name", sorted(INS_CASES))
def test_ins_port_reads_and_stores_per_element(name: str) -> None:
    src, stop, regs, pio_in, writes = INS_CASES[name]
    ref, got, diff = _vs_reference(src)
    assert got.stop == stop and got.exits["pio_in"] == pio_in and got.devices["regs.writes"] == writes
    for reg, value in regs.items():
        assert got.regs[reg] == value, reg
    assert diff == []


@needs_kvm
@pytest.mark.parametrize("insn", ["outsw", "outsd"])
def test_outs_element_running_off_a_window_faults_before_the_device_read(insn: str) -> None:
    # the generic path does not decode OUTS: the engine checks the element's source itself
    ref, got, diff = _vs_reference(f"mov rsi, 0xfeb01ffd\nmov ecx, 2\nmov dx, 0x80\nrep {insn}\nhlt\n")
    assert (got.stop, got.rip) == ("unmapped", 0x8013)
    assert got.devices["regs.reads"] == (1 if insn == "outsw" else 0)
    assert diff == []


@needs_kvm
def test_write_exactly_to_a_window_end_still_completes() -> None:
    # the edge check must not refuse an access that ends exactly at the window's end
    ref, got, diff = _vs_reference("mov rsi, 0xfeb01ff8\nmov rax, -1\nmov qword ptr [rsi], rax\n"
                                   "mov ecx, 2\nmov rdi, 0xfeb01ffc\nrep stosw\nhlt\n")
    assert got.stop == "hlt" and got.devices["regs.writes"] == 3
    assert diff == []
