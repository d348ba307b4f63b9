import json

import pytest

from emu.exits import ExitKind
from emu.trace import SCHEMA, VERSION, TraceError, TraceWriter, read_trace, write_trace
from tests.helpers import run_asm

SRC = """
    mov rdx, NOTIFY_MMIO
    mov ax, 1
    mov word ptr [rdx], ax
    mov rbx, REGS_MMIO
    mov ecx, dword ptr [rbx]
    mov dx, NOTIFY_PORT
    out dx, ax
    mov eax, 0x7777
    vmcall
    hlt
"""


def test_round_trip_equals_records(tmp_path):
    _, m = run_asm(SRC)
    path = tmp_path / "t.jsonl"
    assert write_trace(path, m.records, guest="t") == 4
    back = read_trace(path)
    assert back == m.records
    assert [r.kind for r in back] == [
        ExitKind.MMIO_WRITE,
        ExitKind.MMIO_READ,
        ExitKind.PIO_OUT,
        ExitKind.HYPERCALL,
    ]
    header = json.loads(path.read_text().splitlines()[0])
    assert header["schema"] == SCHEMA and header["version"] == VERSION


def test_machine_streams_trace(tmp_path):
    from emu.assemble import assemble
    from emu.machine import Machine

    path = tmp_path / "live.jsonl"
    with TraceWriter(path, guest="x") as tw:
        res = Machine(assemble(SRC), trace=tw, keep_records=True).run()
    assert read_trace(path) == res.records
    line = json.loads(path.read_text().splitlines()[1])
    assert line["insn"].startswith("66 89 02") and line["regs"]["rdx"] == 0xFEB00000
    assert line["truth"] == {"size": 2, "value": 1}


@pytest.mark.parametrize(
    "content,needle",
    [
        ("", ":1:"),
        ('{"schema": "other"}\n', "not an exitlab-trace"),
        ('{"schema": "exitlab-trace", "version": 99}\n', "version 99"),
        ('{"schema": "exitlab-trace", "version": 1}\n{"kind": "bogus"}\n', ":2:"),
        (
            '{"schema": "exitlab-trace", "version": 1}\n{"kind": "pio_out", "rip": 1, "mode": 64, "addr": 1,'
            ' "regs": {"xyz": 1}}\n',
            "unknown registers",
        ),
    ],
)
def test_bad_traces_name_the_line(tmp_path, content, needle):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(TraceError, match=needle):
        read_trace(p)
