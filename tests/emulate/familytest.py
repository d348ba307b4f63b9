"""Helpers for tests/emulate/test_<family>.py: one differential campaign and a BatchCpu factory."""

from __future__ import annotations

from difftest import MMIO, RIP, campaign

from emu.batchcpu import BatchCpu, default_ram_regions

CASES = 300  # per family and seed in the test suite; `python tests/emulate/difftest.py` runs more


def assert_family_agrees(name: str, seed: int = 1, cases: int = CASES) -> None:
    agree, both, known, total, failures = campaign(name, cases, seed)
    assert agree + both + known == total, "\n".join(failures)
    assert agree >= total // 2, f"too few comparable cases: {agree}/{total}"


def batch(code: bytes, mode: int = 64, regs: dict[str, int] | None = None, read_value: int = 0,
          mmio: tuple[int, int] = MMIO, **kw: object) -> BatchCpu:
    cpu = BatchCpu(mode, {"rflags": 0x2, **(regs or {}), "rip": RIP}, mmio, read_value,
                   default_ram_regions(RIP, mmio), **kw)  # type: ignore[arg-type]
    cpu.write_mem(RIP, code)
    return cpu
