"""fastpath/fast.py: what the fast path reads, what it returns, when it declines, and that a machine
running `--path fast` ends in exactly the state `--path generic` does on every example guest."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

import pytest

from emu import guests
from emu.batchcpu import BatchCpu, default_ram_regions
from emu.board import default_board
from emu.cpu import DeviceAccess, Outcome
from emu.errors import EmulationError
from emu.exits import REG_NAMES, ExitKind, ExitRecord
from emu.machine import Machine, MmioStyle
from emu.platform import LOAD_ADDR, NOTIFY_MMIO, NOTIFY_MMIO_SIZE, REGS_MMIO
from exitlab import cli
from fastpath.fast import DEFAULT_PV_WINDOWS, FastPath, fast_path

ENC = bytes.fromhex("66 89 02")
RIP = LOAD_ADDR + 0x40


class SpyCpu:
    """A BatchCpu that logs every call a path makes, so tests can say exactly what it touched."""

    def __init__(self, mode: int, code: bytes, rip: int = RIP, **regs: int) -> None:
        self.inner = BatchCpu(mode, regs, mmio=(NOTIFY_MMIO, NOTIFY_MMIO_SIZE),
                              ram=default_ram_regions(rip, (NOTIFY_MMIO, NOTIFY_MMIO_SIZE)))
        self.inner.write_mem(rip, code)
        self.mode = mode
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)

        def logged(*args: Any) -> Any:
            self.calls.append((name, *args))
            return target(*args)

        return logged


def exit_for(cpu: SpyCpu, kind: ExitKind = ExitKind.MMIO_WRITE, addr: int = NOTIFY_MMIO + 8,
             rip: int = RIP, mode: int | None = None) -> ExitRecord:
    regs = tuple(cpu.inner.regs[n] for n in REG_NAMES)
    return ExitRecord(kind, rip, cpu.mode if mode is None else mode, addr, cpu.inner.read_mem(rip, 15), regs,
                      truth_size=99, truth_value=0xBAD)


@pytest.mark.parametrize("mode", [32, 64])
def test_conforming_exit_reads_three_bytes_and_ax_only(mode: int) -> None:
    rax = 0xDEADBEEF_CAFE1234 if mode == 64 else 0xCAFE1234
    cpu = SpyCpu(mode, ENC + b"\xf4", rax=rax, rdx=NOTIFY_MMIO + 8)
    out = fast_path(exit_for(cpu), cpu)  # type: ignore[arg-type]
    assert out == Outcome(RIP + 3, (DeviceAccess(NOTIFY_MMIO + 8, 2, True, 0x1234),))
    assert cpu.calls == [("read_mem", RIP, 3), ("get", "rax"), ("mmio_write", NOTIFY_MMIO + 8, 2, 0x1234)]


def test_truth_fields_are_never_used() -> None:
    """truth_size/value are Unicorn's view (set to nonsense in exit_for); the result ignores them."""
    cpu = SpyCpu(64, ENC, rax=7)
    out = fast_path(exit_for(cpu), cpu)  # type: ignore[arg-type]
    assert out is not None and out.accesses[0].size == 2 and out.accesses[0].value == 7


@pytest.mark.parametrize(
    "mode, kind, code",
    [
        (16, ExitKind.MMIO_WRITE, ENC),  # mov dword ptr [bp+si], eax in 16-bit code
        (64, ExitKind.MMIO_READ, ENC),
        (64, ExitKind.PIO_OUT, ENC),
        (64, ExitKind.HYPERCALL, ENC),
        (64, ExitKind.MMIO_WRITE, bytes.fromhex("66 89 0a")),
        (32, ExitKind.MMIO_WRITE, bytes.fromhex("3e 66 89 02")),
        (64, ExitKind.MMIO_WRITE, bytes.fromhex("89 02")),
    ],
)
def test_not_mine_touches_no_device_and_no_register(mode: int, kind: ExitKind, code: bytes) -> None:
    cpu = SpyCpu(mode, code, rax=1)
    assert fast_path(exit_for(cpu, kind), cpu) is None  # type: ignore[arg-type]
    assert all(c[0] == "read_mem" and c[2] == 3 for c in cpu.calls)


def test_instruction_cut_short_by_the_end_of_memory_is_not_mine() -> None:
    end = max(b + s for b, s in default_ram_regions(RIP, (NOTIFY_MMIO, NOTIFY_MMIO_SIZE)))
    cpu = SpyCpu(64, b"")
    cpu.inner.write_mem(end - 2, ENC[:2])
    assert fast_path(exit_for(cpu, rip=end - 2), cpu) is None  # type: ignore[arg-type]


class StubFallback:
    name = "stub"

    def __init__(self, declines: bool = False) -> None:
        self.result = None if declines else Outcome(0x1234, ())
        self.seen: list[ExitRecord] = []

    def handle(self, exit: ExitRecord, cpu: Any) -> Outcome | None:
        self.seen.append(exit)
        return self.result


def test_default_windows_are_the_default_boards_pv_windows() -> None:
    assert list(DEFAULT_PV_WINDOWS) == default_board().pv_windows
    assert FastPath().windows == DEFAULT_PV_WINDOWS and FastPath.name == "fast"


@pytest.mark.parametrize(
    "addr, fast",
    [
        (NOTIFY_MMIO, True),
        (NOTIFY_MMIO + NOTIFY_MMIO_SIZE - 2, True),
        (NOTIFY_MMIO + NOTIFY_MMIO_SIZE - 1, False),  # straddles the window's end
        (REGS_MMIO, False),                           # same bytes, but no pv window: nothing agreed there
        (NOTIFY_MMIO - 1, False),
    ],
)
def test_fast_only_inside_a_pv_window(addr: int, fast: bool) -> None:
    stub = StubFallback()
    path = FastPath(fallback=stub)
    cpu = SpyCpu(64, ENC, rax=3)
    out = path.handle(exit_for(cpu, addr=addr), cpu)  # type: ignore[arg-type]
    assert (out.next_rip == RIP + 3) is fast and (len(stub.seen) == 0) is fast
    assert (path.fast_hits, path.fallbacks) == ((1, 0) if fast else (0, 1))


def test_windows_are_taken_from_the_constructor() -> None:
    path = FastPath([(REGS_MMIO, 0x1000)], fallback=StubFallback())
    cpu = SpyCpu(64, ENC, rax=3)
    assert path.handle(exit_for(cpu, addr=REGS_MMIO), cpu).next_rip == RIP + 3  # type: ignore[arg-type]
    assert path.handle(exit_for(cpu, addr=NOTIFY_MMIO), cpu).next_rip == 0x1234  # type: ignore[arg-type]


def test_a_declining_fallback_is_an_error_not_a_skip() -> None:
    path = FastPath(fallback=StubFallback(declines=True))
    cpu = SpyCpu(64, bytes.fromhex("66 89 0a"))
    with pytest.raises(EmulationError, match="declined"):
        path.handle(exit_for(cpu), cpu)  # type: ignore[arg-type]


def test_fallback_is_the_generic_path() -> None:
    """A violating store in the window is still done right (data from CX), by the generic path."""
    path = FastPath()
    cpu = SpyCpu(64, bytes.fromhex("66 89 4a 04"), rcx=0xABCD, rax=1, rdx=NOTIFY_MMIO)
    out = path.handle(exit_for(cpu, addr=NOTIFY_MMIO + 4), cpu)  # type: ignore[arg-type]
    assert path.fallback.name == "generic"
    assert out == Outcome(RIP + 4, (DeviceAccess(NOTIFY_MMIO + 4, 2, True, 0xABCD),))


def _run(name: str, path: str) -> tuple[Any, ...]:
    from exitlab.commands.run import make_path, resolve_guest

    img = resolve_guest(name, None)
    m = Machine(img, board=default_board(), mmio_style=MmioStyle.EXIT, path=make_path(path))
    r = m.run(timeout=30)
    return r.stop.reason, r.stop.rip, r.regs, r.devices, r.exits


@pytest.mark.parametrize("name", guests.names())
def test_fast_equals_generic_on_every_example_guest(name: str) -> None:
    fast, generic = _run(name, "fast"), _run(name, "generic")
    assert fast == generic


def test_pv_kick_takes_the_fast_path_every_time() -> None:
    from exitlab.commands.run import resolve_guest

    path = FastPath()
    r = Machine(resolve_guest("pv_kick", None), mmio_style=MmioStyle.EXIT, path=path).run()
    assert not r.stop.is_error and path.fast_hits == 128 and path.fallbacks == 0
    assert r.devices["notify"]["kicks"] == {"0": 32, "1": 32, "2": 32, "3": 32}


def _cli_json(*argv: str) -> dict[str, Any]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(list(argv)) == 0
    return json.loads(buf.getvalue())


def test_cli_run_path_fast_matches_generic() -> None:
    fast = _cli_json("run", "pv_kick", "--path", "fast", "--json")
    generic = _cli_json("run", "pv_kick", "--path", "generic", "--json")
    assert fast == generic and fast["exits"]["mmio_write"] == 128
