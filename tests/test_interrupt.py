"""SEMANTICS rules 10 and 11: SIGINT stops every engine with reason `interrupted` (also a busy loop
with no exits), and any valid timeout (up to 10**6 s) works without killing the watchdog."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from emu.errors import ExitlabError
from emu.interrupt import MAX_TIMEOUT, TIMEOUT, Watchdog, check_timeout
from emu.kvm import kvm_unavailable_reason
from emu.machine import StopReason
from tests.helpers import run_asm

_M = "from emu.machine import Machine\n"
CHILD = {
    "unicorn-inplace": _M + "r = Machine(image).run(timeout=600)",
    "unicorn-exit": _M + "r = Machine(image, mmio_style='exit').run(timeout=600)",
    "unicorn-budget": _M + "r = Machine(image).run(max_insns=2**62, timeout=600)",
    "kvm": "from emu.kvm import run_machine_kvm\nr = run_machine_kvm(image, timeout=600)",
}


@pytest.mark.parametrize("engine", sorted(CHILD))
def test_sigint_stops_a_busy_loop_with_reason_interrupted(engine: str) -> None:
    if engine == "kvm" and kvm_unavailable_reason() is not None:
        pytest.skip(f"no usable KVM: {kvm_unavailable_reason()}")
    script = textwrap.dedent(
        """
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the engine's watchdog takes over
        from emu.assemble import assemble
        image = assemble("l: jmp l")
        print("ready", flush=True)
        """
    ) + CHILD[engine] + "\nprint(r.stop.reason.value, hex(r.stop.rip), flush=True)\n"
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    stopper = threading.Event()

    def keep_interrupting() -> None:  # SIGINT before the run starts is ignored; repeat until it lands
        while not stopper.wait(0.05):
            if child.poll() is not None:
                return
            child.send_signal(signal.SIGINT)

    t = threading.Thread(target=keep_interrupting, daemon=True)
    t.start()
    try:
        out, err = child.communicate(timeout=60)
    finally:
        stopper.set()
        child.kill()
    assert child.returncode == 0, err
    reason, rip = out.split()
    assert reason == "interrupted"
    assert rip == "0x8000"


@pytest.mark.parametrize("timeout", [1e-9, 0.5, 1.0, 1e6, 10**6])
def test_valid_timeouts(timeout: float) -> None:
    check_timeout(timeout)


@pytest.mark.parametrize(
    "timeout", [0, -1, math.inf, -math.inf, math.nan, 1e10, 1e30, MAX_TIMEOUT * 1.01, "5", True]
)
def test_invalid_timeouts_are_refused(timeout: object) -> None:
    with pytest.raises(ValueError):
        check_timeout(timeout)  # type: ignore[arg-type]
    with pytest.raises(ExitlabError):
        run_asm("hlt", timeout=timeout)  # type: ignore[arg-type]


def test_largest_timeout_does_not_kill_the_watchdog() -> None:
    """H1: threading.Timer(1e10) died with OverflowError; the guest then ran forever."""
    result, _ = run_asm("hlt", timeout=MAX_TIMEOUT)
    assert result.stop.reason is StopReason.HLT
    fired: list[str] = []
    dog = Watchdog(fired.append, MAX_TIMEOUT).start()
    dog.finish()
    dog.finish()  # idempotent
    assert fired == []


def test_deadline_stops_a_busy_loop_with_reason_timeout() -> None:
    result, _ = run_asm("l: jmp l", timeout=0.05)
    assert result.stop.reason is StopReason.TIMEOUT
    assert result.stop.rip == 0x8000


def test_watchdog_fires_once() -> None:
    fired: list[str] = []
    done = threading.Event()

    def stop(reason: str) -> None:
        fired.append(reason)
        done.set()

    dog = Watchdog(stop, 0.01).start()
    assert done.wait(30)
    dog.finish()
    assert fired == [TIMEOUT]


def test_sigint_handler_restored_after_a_run() -> None:
    before = signal.getsignal(signal.SIGINT)
    run_asm("hlt")
    assert signal.getsignal(signal.SIGINT) is before


def test_run_from_a_worker_thread_keeps_the_timeout() -> None:
    """Signal handlers can only be installed on the main thread; elsewhere the watchdog still times out."""
    results: list[StopReason] = []

    def work() -> None:
        results.append(run_asm("l: jmp l", timeout=0.05)[0].stop.reason)
        results.append(run_asm("hlt")[0].stop.reason)

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert results == [StopReason.TIMEOUT, StopReason.HLT]
