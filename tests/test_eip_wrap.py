"""In 32-bit mode EIP wraps at 4 GiB: the next RIP of an instruction ending there is 0 (SDM vol. 1
3.6), and the generic and fast paths must agree on it."""

from emu.batchcpu import BatchCpu, default_ram_regions
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.generic import GenericPath
from fastpath.fast import fast_path

MMIO = (0xFEB00000, 0x1000)
RIP = 0xFFFFFFFD


def _cpu():
    cpu = BatchCpu(32, regs={"rdx": MMIO[0], "rax": 7}, mmio=MMIO, ram=default_ram_regions(RIP, MMIO))
    cpu.write_mem(RIP, bytes.fromhex("668902"))
    return cpu


def _exit(cpu):
    regs = tuple(cpu.get(n) for n in REG_NAMES)
    return ExitRecord(ExitKind.MMIO_WRITE, RIP, 32, MMIO[0], bytes.fromhex("668902"), regs)


def test_generic_and_fast_wrap_eip():
    g_cpu, f_cpu = _cpu(), _cpu()
    g = GenericPath().handle(_exit(g_cpu), g_cpu)
    f = fast_path(_exit(f_cpu), f_cpu)
    assert f is not None
    assert g.next_rip == f.next_rip == 0
    assert g.accesses == f.accesses
