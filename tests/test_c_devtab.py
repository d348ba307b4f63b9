"""The C engine's device table (fastpath/devtab.py, fastpath/csrc/devtab.h): the flat C devices are
an accelerator checked against the Python device model, every other device is the Python one
reached by callback, and a device fault ends the run as it does in the Python engine."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emu.assemble import assemble
from emu.board import Board, default_board
from emu.bus import Space
from emu.devices import IoEventFd, RegisterDevice
from emu.machine import Machine
from exitlab.commands.run import run_image
from fastpath.cengine import CContext, ffi
from fastpath.devtab import NO_PORT, DeviceTable

PATHS = ["inplace", "generic", "fast", "wildcard"]

# Every flat device, every way in: notify by MMIO data write, by port, by wildcard-able address,
# at offsets with and without a registration, unmatched and >= 64 values; the register file at
# every width and across its bytes; the console by byte and by word.
FLAT = """
    mov rbx, NOTIFY_MMIO
    mov ax, 3
    mov word ptr [rbx + 12], ax
    mov word ptr [rbx + 2], ax
    mov ax, 70
    mov word ptr [rbx], ax
    mov dx, NOTIFY_PORT
    mov ax, 5
    out dx, ax
    in ax, dx
    mov eax, dword ptr [rbx + 8]
    mov r14, REGS_MMIO
    mov qword ptr [r14 + 0x20], rbx
    mov word ptr [r14 + 0x31], ax
    mov byte ptr [r14 + 0xfff], 0x5a
    mov ecx, dword ptr [r14]
    mov rdx, qword ptr [r14 + 0x20]
    mov dx, CONSOLE_PORT
    mov al, 0x68
    out dx, al
    mov ax, 0x0a69
    out dx, ax
    add dx, 5
    in al, dx
    hlt
"""

# A board with devices C has no flat copy of: a second register file (a callback device) and a
# notify device with an extra data-matched registration (not the flat notify any more).
CALLBACK = """
    mov rbx, NOTIFY_MMIO
    mov ax, 7
    mov word ptr [rbx + 8], ax
    mov r14, 0xfeb10000
    mov dword ptr [r14 + 4], 0x12345678
    mov eax, dword ptr [r14 + 4]
    mov rcx, qword ptr [r14]
    mov eax, 0x100
    mov rbx, 0xfeb10010
    mov ecx, 4
    mov edx, 0xabcd
    vmcall
    hlt
"""


def extra_board() -> Board:
    board = default_board()
    board.bus.add(Space.MMIO, 0xFEB10000, 0x1000, RegisterDevice(name="regs2"))
    board.notify.register(IoEventFd(offset=8, size=2, datamatch=7))
    return board


def run(src: str, engine: str, path: str, board: Board | None = None) -> tuple[dict[str, Any], Board]:
    board = board or default_board()
    res = run_image(assemble(src), board, engine=engine, path=path)
    d = json.loads(json.dumps(res.to_json()))
    d["devices"].pop("c_engine", None)
    d["devices"]["notify"].pop("kicks_other", None)
    return d, board


@pytest.mark.parametrize("path", PATHS)
def test_flat_devices_agree_with_the_python_model(path: str) -> None:
    py, _ = run(FLAT, "python", path)
    c, board = run(FLAT, "c", path)
    assert py["stop"]["reason"] == "hlt"
    assert c == py
    # the C engine's state was synced into the Python devices: the same objects say the same
    assert board.regs.mem[0xFFF] == 0x5A and board.console.text == "hi\n"
    if path != "wildcard":  # address-only: the queue comes from the offset, no data is learned
        assert board.notify.kicks[70] == 1 and board.notify.kicks[5] == 1


def test_flat_devices_are_used_for_the_default_board() -> None:
    board = default_board()
    m = Machine(assemble("hlt"), board=board, mmio_style="exit")
    table = DeviceTable(board, m)
    assert set(table.flat) == {"notify_mmio", "notify_port", "regs", "console"}
    assert table.callback == {Space.MMIO: [], Space.PIO: []}
    assert table.cdata.trace == ffi.NULL  # no trace asked: the C loop never calls into Python for one


@pytest.mark.parametrize("path", PATHS)
def test_callback_devices_agree_with_the_python_model(path: str) -> None:
    py, _ = run(CALLBACK, "python", path, extra_board())
    c, board = run(CALLBACK, "c", path, extra_board())
    assert py["stop"]["reason"] == "hlt"
    assert c == py
    assert py["devices"]["regs2"]["writes"] == 2  # the guest's store and the hypercall's
    assert py["devices"]["notify"]["eventfds"]


def test_callback_board_goes_through_the_table() -> None:
    board = extra_board()
    table = DeviceTable(board, Machine(assemble("hlt"), board=board, mmio_style="exit"))
    assert "notify_mmio" not in table.flat and "notify_port" not in table.flat  # extra registration
    assert [m.base for m in table.callback[Space.MMIO]] == [0xFEB00000, 0xFEB10000]
    ctx = CContext()
    table.install(ctx)
    assert ctx.cdata.dev.notify_size == 0 and ctx.cdata.dev.notify_port == NO_PORT
    assert ctx.cdata.tab != ffi.NULL
    table.uninstall(ctx)
    assert ctx.cdata.tab == ffi.NULL


class Faulty:
    name = "faulty"

    def read(self, offset: int, size: int) -> int:
        raise RuntimeError("no such register")

    def write(self, offset: int, size: int, value: int) -> None:
        raise RuntimeError("read-only")

    def state(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize("engine", ["python", "c"])
@pytest.mark.parametrize("src", ["mov dx, 0x5000\nin al, dx\nhlt", "mov dx, 0x5000\nout dx, al\nhlt"])
def test_a_device_fault_stops_the_run(engine: str, src: str) -> None:
    board = default_board()
    board.bus.add(Space.PIO, 0x5000, 4, Faulty())
    res = run_image(assemble(src), board, engine=engine, path="fast")
    assert res.stop.reason.value == "device_error"
    assert "0x5000" in res.stop.message


SUBPAGE = """
    mov r14, 0xfeb20000
    mov dword ptr [r14 + 0x10], 0x01020304
    mov eax, dword ptr [r14 + 0x10]
    mov ecx, dword ptr [r14 + 0x200]
    mov dword ptr [r14 + 0x204], ecx
    hlt
"""


@pytest.mark.parametrize("path", PATHS)
def test_the_unclaimed_rest_of_a_device_window_is_the_bus(path: str) -> None:
    """A device smaller than its page: the rest of the window is still device space (an exit the
    bus answers all-ones and counts unclaimed), in both engines."""

    def board() -> Board:
        b = default_board()
        b.bus.add(Space.MMIO, 0xFEB20000, 0x100, RegisterDevice(name="small", size=0x100))
        return b

    py, pyb = run(SUBPAGE, "python", path, board())
    c, cb = run(SUBPAGE, "c", path, board())
    assert py["stop"]["reason"] == "hlt" and py["regs"]["rcx"] == 0xFFFFFFFF
    assert c == py
    assert cb.bus.unclaimed == pyb.bus.unclaimed


def test_console_output_past_the_flat_buffer_is_kept() -> None:
    src = "mov dx, CONSOLE_PORT\nmov ecx, 5000\nl: mov al, cl\nand al, 0x3f\nadd al, 0x30\nout dx, al\n"
    src += "loop l\nhlt"
    py, _ = run(src, "python", "fast")
    c, board = run(src, "c", "fast")
    assert len(py["console"]) == 5000
    assert c == py and board.console.text == py["console"]


@pytest.mark.parametrize(
    "src",
    [
        "mov r14, REGS_MMIO\nmov eax, 7\nimul eax, dword ptr [r14]\nhlt",  # no C path emulates IMUL
        "mov r14, REGS_MMIO\nmov ax, 5\ncmp word ptr [r14 + 4], ax\nsetb cl\nhlt",
        "mov r14, REGS_MMIO\nmov dword ptr [r14 + 8], 3\nadd dword ptr [r14 + 8], 4\nhlt",
    ],
)
def test_inplace_performs_what_no_c_path_emulates_as_python_does(src: str) -> None:
    """`--engine c --path inplace`: Unicorn performs the instruction, the device sees its accesses,
    as in the Python engine's in-place hook (run_live's strict default declines instead)."""
    py, _ = run(src, "python", "inplace")
    c, _ = run(src, "c", "inplace")
    assert py["stop"]["reason"] == "hlt" and c == py


def test_inplace_raw_is_not_for_string_instructions() -> None:
    """INS into a device: Unicorn's dummy store is no guest access (emu/inplace.py knows); the raw
    fallback must not hand it to the device, so the C engine declines rather than write twice."""
    src = "mov rdi, REGS_MMIO + 0x18\nmov ecx, 2\nmov dx, 0x5000\nrep insb\nhlt"
    c, board = run(src, "c", "inplace")
    assert c["stop"]["reason"] == "emulation_error" and board.regs.writes == 0
