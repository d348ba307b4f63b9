"""`exitlab fuzz --family NAME`: the structured generator restricted to one instruction family
(exitlab/tools/fuzz/families.py, fuzzcore.c family_bytes), and the cases the truth must never run."""

from __future__ import annotations

import capstone
import pytest

from exitlab.tools.fuzz import fastrun
from exitlab.tools.fuzz.case import Case
from exitlab.tools.fuzz.families import FAMILIES, packed
from exitlab.tools.fuzz.runner import FuzzConfig, run_campaign
from exitlab.tools.fuzz.state import idiv_traps_host, unicorn_would_abort

pytestmark = pytest.mark.skipif(not fastrun.available(), reason="no C extension")

# what Capstone names the instructions of each family (prefix of the mnemonic)
MNEMONICS = {
    "string": ("cmps", "scas", "repe cmps", "repne cmps", "repe scas", "repne scas", "rep cmps", "rep scas"),
    "muldiv": ("mul", "imul", "div", "idiv"),
    "shift": ("rol", "ror", "rcl", "rcr", "shl", "sal", "shr", "sar", "shld", "shrd"),
    "bitscan": ("bsf", "bsr", "tzcnt", "lzcnt", "popcnt"),
    "cond": ("cmov", "set"),
}


@pytest.mark.parametrize("family", sorted(MNEMONICS))
def test_family_generates_only_its_forms(family: str) -> None:
    """Every case the family generator makes that Capstone decodes is one of the family's forms
    (prefix mixes the CPU rejects aside), and most aim at memory: their truth touches the window."""
    config = FuzzConfig(cases=400, seed=3, generators=("structured",), fast=True, python_every=0,
                        family=family)
    w = fastrun.worker(config.generators, None, None, family)
    from fastpath._exitlab_c import ffi, lib

    st = ffi.new("struct xl_fz_stats *")
    assert lib.xl_fz_batch_run(w.batch, 3, 0, 400, w.gens, 1, w.corpus, 0, w.cases, w.out, st) == 0
    seen, decoded = set(), 0
    for k in range(400):
        case = fastrun.case_from_c(w.cases[k], k)
        mode = capstone.CS_MODE_64 if case.mode == 64 else capstone.CS_MODE_32
        cs = capstone.Cs(capstone.CS_ARCH_X86, mode)
        insn = next(cs.disasm(case.code + b"\0" * 15, case.rip, count=1), None)
        if insn is None:
            continue
        decoded += 1
        name = insn.mnemonic.split()[-1] if insn.mnemonic.startswith(("rep", "lock", "bnd", "notrack")) else (
            insn.mnemonic)
        assert name.startswith(MNEMONICS[family]), (family, case.code.hex(" "), insn.mnemonic)
        seen.add(name)
    assert decoded >= 300 and int(st.mmio[0]) >= 150, (decoded, int(st.mmio[0]))
    assert len(seen) >= 4, seen
    result = run_campaign(config)
    assert result.tally.cases == 400


def test_family_templates_fit_the_c_side() -> None:
    for name in FAMILIES:
        data, n = packed(name)
        assert n >= 1 and len(data) == 7 * n


def test_idiv_of_the_most_negative_dividend_is_never_run_in_unicorn() -> None:
    """unicorn 2.1.4 kills the process with SIGFPE for `idiv` of EDX:EAX = 2**63 by -1 (host idiv):
    the fuzzer skips IDIV with that dividend (and the 16-bit one), whatever the divisor."""
    assert idiv_traps_host({"rdx": 0x80000000, "rax": 0}) and idiv_traps_host({"rdx": 0x8000, "rax": 0})
    assert not idiv_traps_host({"rdx": 0x80000000, "rax": 1})
    case = Case.make(bytes.fromhex("f7 f9"), 64, {"rdx": 0x80000000, "rax": 0, "rcx": 0xFFFFFFFF},
                     (0xFEB00000, 0x1000), 0, {}, 0x1000, "structured", 0)
    assert unicorn_would_abort(case)
    safe = Case.make(bytes.fromhex("f7 f9"), 64, {"rdx": 0, "rax": 0, "rcx": 3},
                     (0xFEB00000, 0x1000), 0, {}, 0x1000, "structured", 0)
    assert not unicorn_would_abort(safe)
