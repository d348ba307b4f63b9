"""The Python replay engine (emu/replay.py, fastpath/replays.py) and `exitlab.replay(engine=...)`.

- for every built-in guest's trace (recorded exit style and in place) and every replay path, the
  Python engine's JSON is the C engine's, timing aside, and both leave the same device state (the
  PCI guest replayed into the 64-device board it was recorded on);
- a replay into a fresh board leaves the device state of the live run;
- every replayed device access is checked against the record: a tampered record, or a trace
  replayed into another board than its own, is an error naming file:line and what differs;
- bad input is refused up front, naming the record: file:line for a trace file, the index for
  records in memory.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import exitlab
from emu import guests
from emu.exits import ExitKind
from emu.replaycheck import ReplayInputError, access_mismatch
from exitlab.commands.run import make_board
from fastpath import replays

pytest.importorskip("fastpath.cengine")

GUESTS = guests.names()
STYLES = ("generic", "inplace")  # exit style and in place record different truths
PATHS = ("pio", "hypercall", "pv-fast", "wildcard", "capstone", "trap")
TIMING = ("ns", "ns_per_exit", "ticks")
# The PCI guest's trace has ~10 000 exits: its exit-style trace only, and the routes that differ in
# Python (pio, hypercall and capstone are one route: generic for MMIO, pio, hypercall).
CASES = [(g, s) for g in GUESTS for s in STYLES if not (g.startswith("pci_") and s == "inplace")]


def _board(guest: str):  # noqa: ANN202 - an emu Board
    return make_board(64, "rotate") if guest.startswith("pci_") else make_board(None, "rotate")


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, dict]]:
    """Each guest's trace per recording style, with the live run's device state."""
    out = {}
    root = tmp_path_factory.mktemp("traces")
    for guest, style in CASES:
        path = root / f"{guest}.{style}.jsonl"
        live = exitlab.run(guest, path=style, trace=path, devices=64 if guest.startswith("pci_") else None)
        assert not live.stop.is_error, (guest, style, live.stop)
        out[guest, style] = (path, live.devices)
    return out


def _json(result) -> dict:  # noqa: ANN001 - either engine's ReplayResult
    doc = result.to_json()
    for key in TIMING:
        doc.pop(key)
    return doc


@pytest.mark.parametrize(("guest", "style"), CASES)
def test_python_replay_equals_c_replay(traces, guest: str, style: str) -> None:
    trace, _ = traces[guest, style]
    paths = ("pv-fast", "wildcard", "capstone", "trap") if guest.startswith("pci_") else PATHS
    for path in paths:
        py_board, c_board = _board(guest), _board(guest)
        py = exitlab.replay(trace, path, engine="python", board=py_board)
        c = exitlab.replay(trace, path, engine="c", board=c_board)
        assert _json(py) == _json(c), (guest, style, path)
        assert py.errors == 0 and py.n > 0, (guest, style, path, py.error)
        assert py_board.state() == c_board.state(), (guest, style, path)
        assert set(py.to_json()) == set(c.to_json())  # the same keys, timing included


@pytest.mark.parametrize("guest", ["kick_mmio", "kick_pio", "kick_hypercall", "hello", "read_regs"])
def test_replay_into_a_fresh_board_leaves_the_live_state(traces, guest: str) -> None:
    trace, live_devices = traces[guest, "generic"]
    board = _board(guest)
    res = exitlab.replay(trace, "capstone", engine="python", board=board)
    assert res.errors == 0
    assert json.loads(json.dumps(board.state())) == json.loads(json.dumps(live_devices))


def test_replay_into_the_wrong_board_is_an_error_naming_the_line(traces) -> None:
    """pci_discover reads config space: the default board answers all-ones, the recording did not."""
    trace, _ = traces["pci_discover", "generic"]
    res = exitlab.replay(trace, "capstone", engine="python")
    assert res.errors > 0 and res.error is not None
    msg = res.error.message()
    assert msg.startswith(f"{trace}:"), msg
    assert "mismatch" in msg and "recorded port access read 0xcfc" in msg, msg


def test_a_tampered_record_is_a_mismatch() -> None:
    live = exitlab.run("kick_mmio", path="generic")
    recs = list(live.records)
    i = next(i for i, r in enumerate(recs) if r.kind is ExitKind.MMIO_WRITE)
    recs[i] = dataclasses.replace(recs[i], truth_value=recs[i].truth_value ^ 1)
    res = replays.py_replay(recs, "pv-fast")
    assert res.errors == 1 and res.mismatches == 1
    assert res.error is not None and res.error.where == f"exit record {i}"
    assert "recorded data" in res.error.reason
    assert res.results()[i].status == "mismatch"
    # the check can be turned off (the bench does), and then nothing is flagged
    assert replays.py_replay(recs, "pv-fast", check=False).errors == 0


def test_access_mismatch_rules() -> None:
    from emu.cpu import DeviceAccess
    from emu.exits import ExitRecord

    regs = (0,) * 20
    w = ExitRecord(ExitKind.MMIO_WRITE, 0x8000, 64, 0x1000, b"", regs, 4, 0xAABBCCDD)
    ok_split = (DeviceAccess(0x1000, 2, True, 0xCCDD), DeviceAccess(0x1002, 2, True, 0xAABB))
    assert access_mismatch(w, ok_split) is None  # one access split at a device boundary
    assert access_mismatch(w, (DeviceAccess(0x1000, 0, True, 0),)) is None  # address-only notify
    assert "recorded 4 bytes" in access_mismatch(w, (DeviceAccess(0x1000, 2, True, 0xCCDD),))
    assert "recorded a write at 0x1000" in access_mismatch(w, (DeviceAccess(0x1004, 4, True, 0xAABBCCDD),))
    assert "no device access" in access_mismatch(w, ())
    rmw = ExitRecord(ExitKind.MMIO_READ, 0x8000, 64, 0x1000, b"", regs, 4, 0)
    assert access_mismatch(rmw, (DeviceAccess(0x1000, 4, False, 7), DeviceAccess(0x1000, 4, True, 8))) is None
    out = ExitRecord(ExitKind.PIO_OUT, 0x8000, 64, 0x80, b"", regs, 1, 0x41)
    assert access_mismatch(out, (DeviceAccess(0x80, 1, True, 0x41, True),)) is None
    bad = access_mismatch(out, (DeviceAccess(0x80, 1, True, 0x42),))
    assert bad is not None and "recorded port access write 0x80/1=0x41" in bad


def test_bad_trace_line_names_file_and_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    exitlab.run("kick_pio", path="generic", trace=trace)
    lines = trace.read_text().splitlines()
    lines[3] = lines[3].replace('"mode":64', '"mode":48')
    trace.write_text("\n".join(lines) + "\n")
    want = rf"{trace}:4: bad exit record \('mode' must be 16, 32 or 64"
    with pytest.raises(exitlab.ExitlabError, match=want):
        exitlab.replay(trace, "pio", engine="python")


def test_bad_record_in_memory_is_refused_before_any_replay() -> None:
    live = exitlab.run("kick_pio", path="generic")
    recs = list(live.records)
    recs[5] = dataclasses.replace(recs[5], truth_size=3)
    board = make_board(None, "rotate")
    with pytest.raises(ReplayInputError, match=r"exit record 5: port I/O size 3 \(must be 1, 2 or 4\)"):
        exitlab.replay(recs, "pio", engine="python", board=board)
    assert board.state() == make_board(None, "rotate").state()  # nothing was replayed


def test_names_and_engines() -> None:
    live = exitlab.run("pv_kick", path="generic")
    res = exitlab.replay(live.records, "generic", engine="python")  # "generic" = capstone, as in C
    assert res.counts["capstone"] == res.n > 0 and res.to_json()["ticks"] is None
    with pytest.raises(exitlab.ExitlabError, match="subset decoder exists only in C"):
        exitlab.replay(live.records, "subset", engine="python")
    with pytest.raises(exitlab.ExitlabError, match="unknown path 'inplace'"):
        exitlab.replay(live.records, "inplace", engine="python")
    with pytest.raises(exitlab.ExitlabError, match="unknown replay engine 'kvm'"):
        exitlab.replay(live.records, "pv-fast", engine="kvm")


def test_pv_fast_fallbacks_and_violations_count_as_in_c() -> None:
    live = exitlab.run("pv_bad_mixed", path="generic")
    py = exitlab.replay(live.records, "pv-fast", engine="python")
    c = exitlab.replay(live.records, "pv-fast")
    assert py.fallbacks == c.fallbacks > 0
    assert py.violations == c.violations > 0


# -- the replay as a backend of the one exit loop (emu/dispatch.py) ---------------------------------
@pytest.mark.parametrize("guest", [g for g in GUESTS if not g.startswith("pci_")] + ["pci_discover"])
def test_replay_as_a_run_of_the_exit_loop(traces, guest: str) -> None:
    """Dispatcher + ReplayBackend: every record routed, counted and kept as in the live run; the
    run ends `hlt` at the end of the trace; the board is left as the live run left it."""
    from emu.replay import replay_run
    from emu.stop import StopReason
    from emu.trace import read_trace

    trace, live_devices = traces[guest, "generic"]
    board = _board(guest)
    stop, dispatch = replay_run(trace, replays.route("pv-fast", board), board, timeout=60, keep_records=True)
    assert stop.reason is StopReason.HLT and "end of the trace" in stop.message, stop
    records = read_trace(trace)
    assert dispatch.records == records
    assert sum(dispatch.exit_counts.values()) == len(records)
    assert json.loads(json.dumps(board.state())) == json.loads(json.dumps(live_devices))


def test_replay_run_stops_at_the_first_bad_exit_naming_it() -> None:
    from emu.board import default_board
    from emu.replay import replay_run
    from emu.stop import StopReason

    recs = list(exitlab.run("kick_mmio", path="generic").records)
    tampered = list(recs)
    tampered[7] = dataclasses.replace(recs[7], truth_value=recs[7].truth_value ^ 1)
    board = default_board()
    stop, dispatch = replay_run(tampered, replays.route("capstone", board), board)
    assert stop.reason is StopReason.EMULATION_ERROR
    assert stop.message.startswith("exit record 7: the replayed device accesses differ from the record")
    assert sum(dispatch.exit_counts.values()) == 8  # the 8th exit was routed, then the run stopped
    undecodable = list(recs)
    undecodable[3] = dataclasses.replace(recs[3], insn=bytes.fromhex("0f 0b"))
    board = default_board()
    stop, _ = replay_run(undecodable, replays.route("capstone", board), board)
    assert stop.reason is StopReason.EMULATION_ERROR and stop.message.startswith("exit record 3: ")
    pio = list(exitlab.run("kick_pio", path="generic").records)
    pio[2] = dataclasses.replace(pio[2], insn=b"\x90")
    board = default_board()
    stop, _ = replay_run(pio, replays.route("pio", board), board)
    assert stop.reason is StopReason.EMULATION_ERROR
    assert stop.message.startswith(f"exit record 2: no port I/O instruction at rip={pio[2].rip:#x}")


RICH = """# exitlab: mode=64
    mov rdx, REGS_MMIO
    mov eax, 0x11223344
    mov dword ptr [rdx+0x10], eax
    add dword ptr [rdx+0x10], 5
    xchg eax, dword ptr [rdx+0x14]
    mov rsi, rdx
    lea rdi, [rip+buf]
    mov ecx, 8
    rep movsb
    movdqu xmm1, [rip+buf]
    movdqu [rdx+0x40], xmm1
    push qword ptr [rdx+0x10]
    pop rax
    mov rbx, NOTIFY_MMIO
    mov qword ptr [rbx+0xffc], rax
    hlt
buf: .zero 32
"""


def test_statuses_agree_with_c_beyond_the_built_in_guests() -> None:
    """Record by record on a guest with RMW, XCHG, REP MOVS from MMIO to RAM, a vector store, PUSH
    from MMIO and a write across two devices: the same status, accesses and resume RIP as the C
    replay, except where the C replay is documented to refuse (vector moves: it reads no `vec`)."""
    records = exitlab.run(RICH, path="generic").records
    py = exitlab.replay(records, "capstone", engine="python").results()
    c = exitlab.replay(records, "capstone").results()
    cengine = pytest.importorskip("fastpath.cengine")
    statuses = []
    for rec, p, q in zip(records, py, c, strict=True):
        statuses.append(p.status)
        if rec.vec:
            assert (p.status, q.status) == ("ok", "unsupported")
            continue
        assert p.status == q.status, (rec.insn.hex(" "), p, q)
        if p.ok:
            assert (p.next_rip, cengine.access_hash(p.accesses)) == (q.next_rip, q.acc_hash)
    assert statuses.count("nomem") == 2  # REP MOVS into RAM and PUSH: a record carries no RAM
    assert any(len(r.accesses) == 2 and r.accesses[0].gpa + r.accesses[0].size == r.accesses[1].gpa
               for r in py)  # the write across notify -> regs, split in two


def test_in_place_records_of_one_instruction_are_flagged() -> None:
    """In place, an RMW is two records (Unicorn's read, then its write) of one instruction: replaying
    each through an exit path runs the instruction twice. The Python replay says so (mismatch on
    the write's record) instead of leaving a device state the live run never had."""
    records = exitlab.run(RICH, path="inplace").records
    res = exitlab.replay(records, "capstone", engine="python")
    failure = next(r for r in res.results() if r.status == "mismatch")
    assert "recorded a write at 0xfeb01010, replayed [read 0xfeb01010/4" in failure.message


def test_a_device_that_raises_is_an_error_of_its_record() -> None:
    from emu.bus import Space
    from emu.platform import NOTIFY_PORT

    class Broken:
        def read(self, offset: int, size: int) -> int:
            raise RuntimeError("stuck")

        def write(self, offset: int, size: int, value: int) -> None:
            raise RuntimeError("stuck")

        def state(self) -> dict:
            return {}

    records = exitlab.run("kick_pio", path="generic").records
    board = make_board(None, "rotate")
    board.bus.add(Space.PIO, NOTIFY_PORT + 0x100, 2, Broken())  # not the guest's port: no effect
    assert exitlab.replay(records, "pio", engine="python", board=board).errors == 0
    moved = [dataclasses.replace(r, addr=NOTIFY_PORT + 0x100) for r in records]
    res = exitlab.replay(moved, "pio", engine="python", board=board)
    assert res.errors == len(moved) and res.error is not None
    assert res.error.status == "device" and "RuntimeError: stuck" in res.error.reason
