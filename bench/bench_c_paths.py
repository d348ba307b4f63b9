"""C hot loop benchmarks: live runs with C hooks (10^5 exits per round) and replay of the same
exits, per path.  ns/exit and TSC ticks/exit go to `benchmark.extra_info`; the *tax* of a path is
its ns/exit minus the `trap` baseline of the same mode (count-only handler, same exits).

Run: pytest bench/bench_c_paths.py --benchmark-enable --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emu.assemble import assemble
from emu.board import default_board
from emu.machine import Machine
from emu.platform import DEFAULT_SYMBOLS, HC_MMIO_WRITE, NOTIFY_PORT
from fastpath import cengine as c

KICKS = 100_000
WORKLOADS = Path(__file__).resolve().parent.parent / "fastpath" / "workloads"
MMIO_PATHS = ["trap", "pv-fast", "wildcard", "subset", "capstone"]
IN_CACHE = 4096


def _image(name: str, **syms: int):
    src = (WORKLOADS / name).read_text()
    return assemble(src, mode=64, symbols={**DEFAULT_SYMBOLS, "KICKS": KICKS, **syms})


def _machine(image, style: str = "exit") -> Machine:
    m = Machine(image, board=default_board(), mmio_style=style)
    m.init_regs()
    return m


def _info(benchmark, ns: int, ticks: int, exits: int, **extra) -> None:
    benchmark.extra_info.update(
        {"exits": exits, "ns_per_exit": ns / exits, "ticks_per_exit": ticks / exits, **extra}
    )


@pytest.fixture(scope="module")
def mmio_image():
    return _image("bench_mmio.S")


@pytest.fixture(scope="module")
def mmio_trace(mmio_image):
    """The live run's exits, recorded once by the Python machine (in-place style)."""
    m = Machine(mmio_image, board=default_board(), mmio_style="inplace", keep_records=True)
    m.run(timeout=120)
    return c.pack_records(m.records)


@pytest.mark.parametrize("style", ["exit", "inplace"])
@pytest.mark.parametrize("path", MMIO_PATHS)
def test_live_mmio(benchmark, mmio_image, path: str, style: str) -> None:
    benchmark.group = f"c:{path}"
    m = _machine(mmio_image, style)
    ctx = c.CContext()
    ctx.open_capstone()
    out: list[c.LiveResult] = []
    trap_len = 3  # bench_mmio's notify is 66 89 02

    def run() -> None:
        ctx.cdata.trap_len = trap_len
        out.append(c.run_live(m, path, style=style, start_rip=mmio_image.entry, ctx=ctx, timeout=60))

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    r = min(out, key=lambda x: x.ns)
    assert r.stop == "hlt" and r.mmio_exits == KICKS
    _info(benchmark, r.ns, r.ticks, r.exits, mode="live", style=style, path=path)


@pytest.mark.parametrize("path", ["pio", "hypercall", "hypercall-trap"])
def test_live_pio_hypercall(benchmark, path: str) -> None:
    benchmark.group = "c:pio" if path == "pio" else "c:hypercall"
    cpath = "trap" if path == "hypercall-trap" else "subset"  # trap: bare exit, arguments not read
    image = (
        _image("bench_pio.S", PORT=NOTIFY_PORT)
        if path == "pio"
        else _image("bench_hypercall.S", HC=HC_MMIO_WRITE)
    )
    m = _machine(image)
    ctx = c.CContext()
    out: list[c.LiveResult] = []
    benchmark.pedantic(
        lambda: out.append(c.run_live(m, cpath, start_rip=image.entry, ctx=ctx, timeout=60)),
        rounds=3,
        iterations=1,
        warmup_rounds=1,
    )
    r = min(out, key=lambda x: x.ns)
    assert r.stop == "hlt" and r.exits == KICKS
    _info(benchmark, r.ns, r.ticks, r.exits, mode="live", style="exit", path=path)


@pytest.mark.parametrize("in_cache", [False, True], ids=["stream", "in-cache"])
@pytest.mark.parametrize("path", MMIO_PATHS)
def test_replay_mmio(benchmark, mmio_trace, path: str, in_cache: bool) -> None:
    benchmark.group = f"c:{path}"
    ctx = c.CContext()
    ctx.open_capstone()
    ctx.cdata.trap_len = 3
    trace = mmio_trace
    repeat = 1
    if in_cache:
        trace = mmio_trace.head(IN_CACHE)
        repeat = KICKS // IN_CACHE
    best: list[tuple[int, int, int]] = []

    def run() -> None:
        ns = ticks = n = 0
        for _ in range(repeat):
            rr = c.replay(trace, path, ctx, keep_results=False)
            assert rr.errors == 0
            ns, ticks, n = ns + rr.ns, ticks + rr.ticks, n + rr.n
        best.append((ns, ticks, n))

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    ns, ticks, n = min(best)
    _info(benchmark, ns, ticks, n, mode="replay", cache="in-cache" if in_cache else "stream", path=path)
