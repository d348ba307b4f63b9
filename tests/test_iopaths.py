"""Port I/O and hypercalls as paths (emu/iopaths.py) and fallback chains as data (emu/chain.py):
the paths reach devices only through the Cpu seam, so a BatchCpu sees every access they make."""

from __future__ import annotations

import pytest

from emu.batchcpu import BatchCpu
from emu.chain import Chain
from emu.cpu import DeviceAccess, Outcome
from emu.errors import EmulationError
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.iopaths import HypercallPath, PioPath, pio_length
from emu.platform import HC_MMIO_WRITE, KVM_EFAULT, KVM_EINVAL, KVM_ENOSYS
from fastpath.hostpaths import CHAINS, make_path

M64 = (1 << 64) - 1


def _rec(kind: ExitKind, insn: bytes, addr: int = 0, size: int = 0, value: int = 0, mode: int = 64,
         rip: int = 0x8000) -> ExitRecord:
    regs = tuple(rip if n == "rip" else 0 for n in REG_NAMES)
    return ExitRecord(kind, rip, mode, addr, insn + bytes(15 - len(insn)), regs, size, value)


@pytest.mark.parametrize(
    "insn, mode, length",
    [
        ("ee", 64, 1),  # out dx, al
        ("66 ef", 64, 2),  # out dx, ax
        ("e6 80", 64, 2),  # out 0x80, al
        ("66 e5 10", 32, 3),  # in ax, 0x10
        ("f3 6e", 64, 2),  # rep outsb
        ("f3 48 6d", 64, 3),  # rep insd with REX.W (ignored, but part of the instruction)
        ("48 ec", 32, 0),  # 0x48 is DEC EAX in 32-bit mode: not a port instruction at RIP
        ("48 41 ec", 64, 3),  # two REX: the first is ignored, the instruction still runs
        ("90", 64, 0),
        ("e6", 64, 0),  # imm8 missing: a cut-short record
        ("", 64, 0),
        ("66" * 15 + "ee", 64, 0),  # longer than 15 bytes
    ],
)
def test_pio_length(insn: str, mode: int, length: int) -> None:
    assert pio_length(bytes.fromhex(insn), mode) == length


def test_pio_out_and_in_go_through_the_cpu() -> None:
    cpu = BatchCpu(64, read_value=0xABCD1234)
    out = PioPath().handle(_rec(ExitKind.PIO_OUT, bytes.fromhex("66 ef"), 0x3F8, 2, 0x1_BEEF), cpu)
    assert out == Outcome(0x8002, (DeviceAccess(0x3F8, 2, True, 0xBEEF, True),))
    got = PioPath().handle(_rec(ExitKind.PIO_IN, bytes.fromhex("e4 60"), 0x60, 1), cpu)
    assert got == Outcome(0x8002, (DeviceAccess(0x60, 1, False, 0x34, True),))
    assert cpu.accesses == [out.accesses[0], got.accesses[0]]


def test_pio_path_declines_other_exits() -> None:
    cpu = BatchCpu(64)
    assert PioPath().handle(_rec(ExitKind.MMIO_WRITE, b"\x88\x02", 0x1000, 1), cpu) is None
    assert cpu.accesses == []


def test_a_pio_record_without_a_port_instruction_is_refused_before_the_device() -> None:
    """Resuming at RIP + 0 would be silently wrong (found by helper replay): a clear error, no access."""
    cpu = BatchCpu(64)
    with pytest.raises(EmulationError, match="no port I/O instruction at rip=0x8000 bytes=90"):
        PioPath().handle(_rec(ExitKind.PIO_OUT, b"\x90", 0x3F8, 1, 0x41), cpu)
    assert cpu.accesses == []
    # KVM's I/O exit has RIP past the instruction, which KVM completes: resume where it says
    out = PioPath(completed=True).handle(_rec(ExitKind.PIO_OUT, b"\x90", 0x3F8, 1, 0x41), cpu)
    assert out == Outcome(0x8000, (DeviceAccess(0x3F8, 1, True, 0x41, True),))


def test_device_access_and_outcome_stay_frozen_values() -> None:
    """They are built through their slots (emu/cpu.py): same equality, hash, keywords, immutability."""
    import dataclasses

    a = DeviceAccess(1, 2, True, 3)
    assert a == DeviceAccess(gpa=1, size=2, write=True, value=3, pio=False)
    assert hash(a) == hash(DeviceAccess(1, 2, True, 3))
    assert dataclasses.replace(a, value=9).value == 9 and Outcome(5, (a,)).iterations == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.gpa = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        DeviceAccess(1, 2)  # type: ignore[call-arg]


def _hc(cpu: BatchCpu, mode: int = 64, rip: int = 0x8000) -> Outcome | None:
    rec = _rec(ExitKind.HYPERCALL, bytes.fromhex("0f 01 c1"), mode=mode, rip=rip)
    return HypercallPath().handle(rec, cpu)


def test_hypercall_mmio_write_is_split_per_device_region() -> None:
    cpu = BatchCpu(64, mmio=(0xFEB00000, 0x2000), regions=[(0xFEB00000, 0x1000), (0xFEB01000, 0x1000)])
    cpu.regs.update(rax=HC_MMIO_WRITE, rbx=0xFEB00FFE, rcx=4, rdx=0x11223344)
    out = _hc(cpu)
    assert out is not None and out.next_rip == 0x8003 and cpu.regs["rax"] == 0
    pieces = (DeviceAccess(0xFEB00FFE, 2, True, 0x3344), DeviceAccess(0xFEB01000, 2, True, 0x1122))
    assert out.accesses == pieces and tuple(cpu.accesses) == pieces


@pytest.mark.parametrize(
    "regs, mode, code",
    [
        ({"rax": 0x7777}, 64, KVM_ENOSYS),
        ({"rax": HC_MMIO_WRITE, "rbx": 0xFEB00000, "rcx": 3}, 64, KVM_EINVAL),
        ({"rax": HC_MMIO_WRITE, "rbx": 0xFEB00000, "rcx": 8}, 32, KVM_EINVAL),  # 8 bytes only in 64-bit
        ({"rax": HC_MMIO_WRITE, "rbx": 0xFEB00FFE, "rcx": 4}, 64, KVM_EFAULT),  # runs off the window
        ({"rax": HC_MMIO_WRITE, "rbx": 0x5000, "rcx": 4}, 64, KVM_EFAULT),
    ],
)
def test_hypercall_errors_touch_no_device(regs: dict[str, int], mode: int, code: int) -> None:
    cpu = BatchCpu(mode, mmio=(0xFEB00000, 0x1000))
    cpu.regs.update(regs)
    out = _hc(cpu, mode)
    assert out is not None and out.accesses == () and cpu.accesses == []
    assert cpu.regs["rax"] == (-code) & (M64 if mode == 64 else 0xFFFFFFFF)


@pytest.mark.parametrize("mode, rip, after", [(32, 0xFFFFFFFE, 1), (16, 0xFFFE, 0x10001), (64, M64 - 1, 1)])
def test_hypercall_resume_wraps_as_kvm(mode: int, rip: int, after: int) -> None:
    """RIP+3 wraps at 64 bits in 64-bit mode, else at 32 (KVM: `rip = (u32)rip`; the C engine)."""
    cpu = BatchCpu(mode)
    cpu.regs["rax"] = 0x7777
    out = _hc(cpu, mode, rip=rip)
    assert out is not None and out.next_rip == after


def test_hypercall_arguments_are_32_bits_outside_64_bit_mode() -> None:
    """kvm_emulate_hypercall truncates the number and the arguments when not in 64-bit mode."""
    cpu = BatchCpu(32, mmio=(0xFEB00000, 0x1000))
    high = 5 << 32
    cpu.regs.update(rax=high | HC_MMIO_WRITE, rbx=high | 0xFEB00010, rcx=high | 2, rdx=high | 0xBEEF)
    out = _hc(cpu, 32)
    assert out is not None and cpu.regs["rax"] == 0
    assert cpu.accesses == [DeviceAccess(0xFEB00010, 2, True, 0xBEEF)]


def test_hypercall_efault_on_a_gap_touches_no_device() -> None:
    """A write over device | gap | device is -KVM_EFAULT before any piece reaches a device."""
    cpu = BatchCpu(64, mmio=(0xFEB00000, 0x2000), regions=[(0xFEB00000, 0xFFF), (0xFEB01000, 0x1000)])
    cpu.mmio_claims = lambda gpa: any(b <= gpa < b + s for b, s in cpu.regions)  # type: ignore[method-assign]
    cpu.regs.update(rax=HC_MMIO_WRITE, rbx=0xFEB00FFD, rcx=8, rdx=M64)
    out = _hc(cpu)
    assert out is not None and out.accesses == () and cpu.accesses == []
    assert cpu.regs["rax"] == (-KVM_EFAULT) & M64


def test_hypercall_path_declines_what_is_no_hypercall() -> None:
    rec = _rec(ExitKind.HYPERCALL, bytes.fromhex("0f 01 c8"))  # monitor
    assert HypercallPath().handle(rec, BatchCpu(64)) is None


class _Fixed:
    def __init__(self, name: str, result: Outcome | None) -> None:
        self.name, self.result, self.calls = name, result, 0

    def handle(self, exit: ExitRecord, cpu: object) -> Outcome | None:
        self.calls += 1
        return self.result


def test_chain_first_outcome_wins_and_is_counted() -> None:
    a, b, c = _Fixed("a", None), _Fixed("b", Outcome(1, ())), _Fixed("c", Outcome(2, ()))
    chain = Chain("abc", (a, b, c))
    assert chain.handle(_rec(ExitKind.MMIO_WRITE, b"\x90"), BatchCpu(64)).next_rip == 1
    assert (a.calls, b.calls, c.calls) == (1, 1, 0) and chain.taken == [0, 1, 0]


def test_chain_of_decliners_names_every_path() -> None:
    chain = Chain("both", (_Fixed("x", None), _Fixed("y", None)))
    want = r"'both' \('x' -> 'y'\) declined the mmio_write exit at rip=0x8000"
    with pytest.raises(EmulationError, match=want):
        chain.handle(_rec(ExitKind.MMIO_WRITE, b"\x90"), BatchCpu(64))
    with pytest.raises(ValueError):
        Chain("empty", ())


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_cli_paths_are_their_chains(name: str) -> None:
    path = make_path(name)
    names = tuple(p.name for p in path.paths) if isinstance(path, Chain) else (path.name,)
    assert names == CHAINS[name]


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_python_chains_are_the_c_routing(name: str) -> None:
    """xl_handle (paths.c) routes MMIO to [the --path's C path, capstone]: the Python chain of the
    same CLI name is that path followed by generic (= capstone), or generic alone."""
    cengine = pytest.importorskip("fastpath.cengine")
    cpath, _style = cengine.CLI_PATHS.get(name, (name, "exit"))
    want = ("generic",) if cpath == "capstone" else (cpath, "generic")
    assert CHAINS[name] == want
