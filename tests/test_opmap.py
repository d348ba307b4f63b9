"""The opcode map (emu/x86-opcode-map.txt) and what is generated from it.

- every generated file (emu/opmap.py, fastpath/csrc/opmap.h, opmap_subset.h) is what the map gives
  now, so a row added to the map without regenerating fails here, not at run time;
- the map's names exist: every Capstone instruction name, every op's semantics module;
- the tables built from it say what the map says (decode's FORMS, the C subset decoder's opcodes);
- a malformed map line is an error naming the line.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from capstone import x86_const as X

from emu import gen_opmap
from emu.access import Op
from emu.decode import FORMS, REFUSED
from emu.emulate import SEMANTICS
from emu.opmap import FORM_ROWS, OP_FAMILY, STRING_OPS, SUBSET_KINDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted(gen_opmap.outputs(), key=str), ids=lambda p: p.name)
def test_generated_file_is_current(path: Path) -> None:
    want = gen_opmap.outputs()[path]
    assert path.read_text() == want, (
        f"{path.relative_to(ROOT)} is stale: run .venv/bin/python emu/gen_opmap.py && make venv"
    )


def test_check_mode_reports_nothing_stale(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_opmap.main(["--check"]) == 0, capsys.readouterr().out


def test_every_capstone_name_exists() -> None:
    m = gen_opmap.parse(gen_opmap.MAP.read_text())
    for row in m.forms:
        for name in row.ids:
            assert hasattr(X, f"X86_INS_{name}"), f"X86_INS_{name} is not a Capstone id"


def test_every_op_runs_in_its_family_module() -> None:
    """[ops] names the emu/semantics module of each op; the dispatch table agrees."""
    for op, family in OP_FAMILY.items():
        importlib.import_module(f"emu.semantics.{family}")
        if op in STRING_OPS:
            continue  # the REP loop of emu/semantics/string.py runs them
        assert op in SEMANTICS, f"{op} has no semantics"
        assert SEMANTICS[op].__module__ == f"emu.semantics.{family}", (op, SEMANTICS[op].__module__)


def test_forms_come_from_the_map() -> None:
    assert len(FORMS) == len(FORM_ROWS)
    for name, op, lock, _a16, _align, sized, _np, _cc in FORM_ROWS:
        form = FORMS[getattr(X, f"X86_INS_{name}")]
        assert (form.op, form.lockable, form.sized) == (op, lock, sized), name
    assert set(REFUSED) == {X.X86_INS_MASKMOVDQU, X.X86_INS_VMASKMOVDQU, X.X86_INS_MASKMOVQ}
    assert {op for op in Op if op is not Op.SSE_STORE} == {row[1] for row in FORM_ROWS}


def test_c_subset_kinds_follow_the_map() -> None:
    cengine = pytest.importorskip("fastpath.cengine")
    assert cengine.SUBSET_KINDS == SUBSET_KINDS
    m = gen_opmap.parse(gen_opmap.MAP.read_text())
    for row in m.subset:
        code = bytes([0x0F] * row.map + [row.opcode, 0x00, 0, 0, 0, 0, 0, 0, 0, 0])
        if "rexw" in row.flags:
            code = b"\x48" + code
        got = cengine.decode_subset(code, 64)
        assert got is not None and got.kind == row.kind, (row, got)


@pytest.mark.parametrize(("line", "why"), [
    ("MOV  nosuchop  paths:MOV  -", "unknown op"),
    ("MOV  mov  nowhere:MOV  -", "C table"),
    ("MOV  mov  paths:MOV  shiny", "unknown property"),
    ("MOV  mov  paths:MOV", "4 columns"),
])
def test_bad_rows_are_errors_naming_the_line(line: str, why: str) -> None:
    text = gen_opmap.MAP.read_text().replace("[subset]", line + "\n\n[subset]", 1)
    with pytest.raises(gen_opmap.MapError, match=why) as info:
        gen_opmap.parse(text)
    assert "x86-opcode-map.txt:" in str(info.value)
