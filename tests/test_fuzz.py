"""The differential fuzzer (exitlab/tools/fuzz): a short seeded campaign must be clean, a planted bug
must be found and minimized, reproducers must round-trip, and every fixed finding stays fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exitlab.cli import main
from exitlab.tools.fuzz.atheris_target import case_from_input, check_input, input_from_case
from exitlab.tools.fuzz.case import Case
from exitlab.tools.fuzz.gen import GENERATORS, case_at, load_corpus, make_generators
from exitlab.tools.fuzz.oracles import Checker
from exitlab.tools.fuzz.report import replay, summary_json, write_reproducers
from exitlab.tools.fuzz.runner import FuzzConfig, run_campaign
from exitlab.tools.fuzz.state import may_modify_own_code

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "fuzz_corpus"
REGRESSIONS = sorted((DATA / "fuzz_regressions").glob("*.json"))


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker()


def test_cases_are_reproducible_from_seed_and_index() -> None:
    gens = make_generators(GENERATORS, load_corpus(CORPUS))
    assert [case_at(5, i, gens) for i in range(40)] == [case_at(5, i, gens) for i in range(40)]
    assert case_at(5, 3, gens) != case_at(6, 3, gens)


def test_c_extension_is_exercised(checker: Checker) -> None:
    assert checker.c_status == "ok", checker.c_status
    result = checker.check(
        Case.make(bytes.fromhex("66 89 02"), 64, {"rdx": 0xFEB00010, "rax": 7}, (0xFEB00000, 0x1000), 0)
    )
    assert ("c-pv-fast", "agree") in result.outcomes
    assert ("fast", "agree") in result.outcomes
    assert ("c-subset", "agree") in result.outcomes
    assert not result.findings


def test_short_campaign_is_clean() -> None:
    """The `make test` budget: a few thousand seeded cases, no unexplained disagreement."""
    result = run_campaign(FuzzConfig(cases=2500, seed=2024, jobs=1, corpus=str(CORPUS)), progress=False)
    summary = summary_json(result)
    assert summary["c_extension"] == "ok"
    assert result.tally.cases == 2500
    for oracle in ("generic", "c-subset", "c-capstone", "c-pv-fast", "fast", "length", "c-subset-decoder"):
        assert oracle in summary["outcomes"], oracle
    assert not result.unexplained, [(r.finding.signature, r.minimized.describe()) for r in result.unexplained]


def test_planted_bug_is_found_and_minimized(tmp_path: Path) -> None:
    """A wrong sign extension (switched on by an explicit parameter) must be caught and shrunk."""
    result = run_campaign(
        FuzzConfig(
            cases=1500,
            seed=2024,
            jobs=1,
            generators=("structured",),
            plant="movsx-zero-extends",
            minimize_budget=200,
        ),
        progress=False,
    )
    hits = [
        r
        for r in result.unexplained
        if r.finding.oracle == "generic" and r.finding.cls in ("register", "value")
    ]
    assert hits, "the planted movsx bug was not found"
    best = min(hits, key=lambda r: len(r.minimized.code))
    small = best.minimized
    assert len(small.code) <= 4, small.describe()
    assert len(small.regs) <= 2, small.describe()
    paths = write_reproducers(result, tmp_path)
    path = paths[result.reported.index(best)]
    data = json.loads(path.read_text())
    assert data["plant"] == "movsx-zero-extends" and data["case"]["bytes"]
    assert "movsx" in data["form"].lower()
    # the same file replays: still wrong with the plant, right without it
    _, findings, _ = replay(path)
    assert any(f.explained is None for f in findings)
    clean = dict(data, plant=None)
    (tmp_path / "clean.json").write_text(json.dumps(clean))
    _, findings, _ = replay(tmp_path / "clean.json")
    assert not [f for f in findings if f.explained is None]


def test_case_json_round_trip() -> None:
    case = Case.make(
        b"\x0f\xbe\x02",
        32,
        {"rdx": 0xFEB01004, "rflags": 0x402},
        (0xFEB01000, 0x1000),
        0x8080808080808080,
        {3: 5},
    )
    assert Case.from_json(json.loads(json.dumps(case.to_json()))) == case


def test_harness_input_round_trip_and_corpus(checker: Checker) -> None:
    data = input_from_case(bytes.fromhex("66 89 02"), 32, 1, b"seed")
    case = case_from_input(data)
    assert case.code == bytes.fromhex("66 89 02") and case.mode == 32 and case.mmio[0] == 0xFEB00000
    corpus = load_corpus(CORPUS)
    assert len(corpus) >= 10
    for raw in sorted(CORPUS.iterdir()):
        check_input(raw.read_bytes())  # raises on an unexplained disagreement


def test_self_modifying_cases_are_skipped() -> None:
    # mov [rip+0], ax rewrites the bytes after it: Unicorn would restart it until its step limit
    assert may_modify_own_code(Case.make(bytes.fromhex("66 89 05"), 64, {}, (0xFEB00000, 0x1000), 0))
    assert not may_modify_own_code(
        Case.make(bytes.fromhex("66 89 02"), 64, {"rdx": 0xFEB00000}, (0xFEB00000, 0x1000), 0)
    )


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_fixed_findings_stay_fixed(path: Path, checker: Checker) -> None:
    case, findings, _ = replay(path, checker)
    assert not [f for f in findings if f.explained is None], (case.describe(), findings)


def test_x87_reserved_encodings_have_no_length() -> None:
    """Found by the fuzzer: the C length function gave reserved x87 encodings a length."""
    from fastpath import cengine

    for hexs in ("d9 0b", "db 20", "db 30", "dd 28", "d9 d1", "da e0", "dd f0", "de d8", "df f8"):
        assert cengine.insn_length(bytes.fromhex(hexs) + bytes(6), 64) == -1, hexs
    for hexs in ("d9 03", "db 28", "dd 38", "d9 e8", "da e9", "de d9", "df e0"):
        assert cengine.insn_length(bytes.fromhex(hexs) + bytes(6), 64) == 2, hexs


def test_cli_replay_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--replay", str(REGRESSIONS[0]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clean"] is True
    assert main(["fuzz", "--cases", "60", "--seed", "3", "--json", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cases"] == 60 and summary["cases_per_s"] > 0 and summary["clean"]


def test_cases_unicorn_cannot_run_are_never_handed_to_it(checker: Checker) -> None:
    """Found by the fuzzer: LOCK BTS reg, reg makes unicorn 2.1.4 abort() the whole process; and a
    REP with a huge count (a minimizer variant) would single-step for minutes."""
    abort = Case.make(bytes.fromhex("f0 0f ab c8"), 64, {}, (0xFEB01000, 0x1000), 0)
    assert checker.check(abort).outcomes == (("truth", "skipped-unicorn-aborts"),)
    long_rep = Case.make(
        bytes.fromhex("f3 aa"), 64, {"rcx": 1 << 40, "rdi": 0xFEB01000}, (0xFEB01000, 0x1000), 0
    )
    assert checker.check(long_rep).outcomes == (("truth", "skipped-long-rep"),)


def test_self_modifying_through_a_segment_base_is_skipped() -> None:
    """Found by the 100k run: gs:[rdx] with gs_base on the code page hung the oracle."""
    case = Case.make(bytes.fromhex("66 65 66 89 02"), 64, {"gs_base": 0x1000}, (0xFEB00000, 0x1000), 0)
    assert may_modify_own_code(case)
