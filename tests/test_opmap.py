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

import capstone
import pytest
from capstone import x86_const as X

from emu import gen_opmap
from emu.access import Op
from emu.decode import FORMS, REFUSED, decode
from emu.emulate import SEMANTICS
from emu.errors import EmulationError
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


def _rows() -> list[gen_opmap.FormRow]:
    return gen_opmap.parse(gen_opmap.MAP.read_text()).forms


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r.ids[0])
def test_every_encoding_is_the_rows_instruction(row: gen_opmap.FormRow) -> None:
    """Each encoding of a row decodes (Capstone, 64-bit mode) to one of the row's ids, and the
    generic path decodes it to the row's op (or refuses the refused rows)."""
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    ids = {getattr(X, f"X86_INS_{name}") for name in row.ids}
    assert row.enc, f"{row.ids}: no encodings"
    for token in row.enc:
        code = gen_opmap.encode(token)
        insn = next(cs.disasm(code, 0x1000, count=1))
        assert insn.id in ids, f"{token} ({code[:insn.size].hex(' ')}) is '{insn.mnemonic}', not {row.ids}"
        if row.refused:
            with pytest.raises(EmulationError, match="byte-masked"):
                decode(code, 64, 0x1000)
            continue
        acc = decode(code, 64, 0x1000)
        if row.op:
            want = {Op(row.op), Op.SSE_STORE} if row.op == "sse_load" else {Op(row.op)}
        else:
            want = {Op.SSE_LOAD, Op.SSE_STORE}  # the second role of MOVSD
        assert acc.op in want, f"{token}: {acc.op} not {want}"


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
    for name, op, _cc, props in FORM_ROWS:
        form = FORMS[getattr(X, f"X86_INS_{name}")]
        assert form.op is op, name
        for field, value in props.items():
            assert getattr(form, field) == value, (name, field)
    movbe = FORMS[X.X86_INS_MOVBE]
    assert movbe.sized and movbe.no_f2f3 and not movbe.lockable
    assert set(REFUSED) == {X.X86_INS_MASKMOVDQU, X.X86_INS_VMASKMOVDQU, X.X86_INS_MASKMOVQ}
    assert {op for op in Op if op is not Op.SSE_STORE} == {row[1] for row in FORM_ROWS}


def test_c_subset_kinds_follow_the_map() -> None:
    cengine = pytest.importorskip("fastpath.cengine")
    assert cengine.SUBSET_KINDS == SUBSET_KINDS
    m = gen_opmap.parse(gen_opmap.MAP.read_text())
    paths_ids = {getattr(X, f"X86_INS_{n}") for f in m.forms if any(t == "paths" for t, _ in f.c)
                 for n in f.ids}
    for row in m.subset:
        code = bytes([0x0F] * row.map + [row.opcode, 0x00, 0, 0, 0, 0, 0, 0, 0, 0])
        if "rexw" in row.flags:
            code = b"\x48" + code
        got = cengine.decode_subset(code, 64)
        assert got is not None and got.kind == row.kind, (row, got)
        # the subset's forms are forms of the full-decode paths' MOV/MOVS/STOS switch (paths.c) too
        insn = next(capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64).disasm(code, 0x1000, count=1))
        assert insn.id in paths_ids, f"subset row {row.form} is '{insn.mnemonic}', not a paths.c form"


@pytest.mark.parametrize(("line", "why"), [
    ("MOV  nosuchop  paths:MOV  -  88/r", "unknown op"),
    ("MOV  mov  nowhere:MOV  -  88/r", "C table"),
    ("MOV  mov  paths:MOV  shiny  88/r", "unknown property"),
    ("MOV  mov  paths:MOV  -", "5 columns"),
    ("MOV  mov  paths:MOV  -  88/q", "not /r"),
    ("MOV  mov  paths:MOV  -  X.88/r", "prefixes are"),
    ("MOV  mov  paths:MOV  -  ZZ/r", "not hex"),
])
def test_bad_rows_are_errors_naming_the_line(line: str, why: str) -> None:
    text = gen_opmap.MAP.read_text().replace("[subset]", line + "\n\n[subset]", 1)
    with pytest.raises(gen_opmap.MapError, match=why) as info:
        gen_opmap.parse(text)
    assert "x86-opcode-map.txt:" in str(info.value)


@pytest.mark.parametrize(("old", "new", "why"), [
    # a second row of an operation with another shape: sem.c has one shape per operation
    ("SAL                                    shl         shift:SHL               sized",
     "SAL                                    shl         shift:SHL               sized,xmm", "disagree"),
    # a sem.c row whose op names no executor
    ("cmov          -          cond       memsrc,needreg             cond",
     "cmov          -          cond       memsrc,needreg             -   ", "no exec"),
])
def test_sem_operations_have_one_executor_and_shape(old: str, new: str, why: str) -> None:
    text = gen_opmap.MAP.read_text()
    assert old in text
    with pytest.raises(gen_opmap.MapError, match=why):
        gen_opmap.parse(text.replace(old, new, 1))


def test_sem_shapes_come_from_the_ops() -> None:
    """sem.c reads each operation's executor and operand shapes from XL_OPMAP_XS_SEM (no per-op code)."""
    sem = gen_opmap.sem_ops(gen_opmap.parse(gen_opmap.MAP.read_text()))
    assert sem["XS_SHLD"] == ("shift", frozenset({"memdst", "imm8", "needreg"}))
    assert sem["XS_MOVNTI"] == ("sse", frozenset({"needreg"}))  # the form's own shape
    assert sem["XS_CMPS"] == ("strcmp", frozenset({"string", "ownops"}))
    c_text = (gen_opmap.ROOT / "fastpath" / "csrc" / "sem.c").read_text()
    assert "XL_OPMAP_XS_SEM" in c_text and "s.op ==" not in c_text and "case XS_" not in c_text
