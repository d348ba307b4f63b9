"""fastpath/contract.py and contract_v1.json: the spec loads, is self-consistent, means what it says
under two independent decoders and the reference assembler, and docs/contract.md states the same."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import capstone
import pytest

from emu.assemble import assemble
from fastpath.contract import CONTRACT_V1, Contract, ContractError, load_contract, parse_contract

DOC = Path(__file__).resolve().parents[1] / "docs" / "contract.md"


def raw_spec() -> dict:
    return json.loads(resources.files("fastpath").joinpath("contract_v1.json").read_text())


def test_v1_facts_from_the_issue() -> None:
    c = load_contract(1)
    assert c == CONTRACT_V1
    assert c.encoding == bytes.fromhex("66 89 02")
    assert (c.length, c.size, c.direction, c.data_register) == (3, 2, "write", "ax")
    assert c.modes == frozenset({32, 64})
    assert c.form(64).address_register == "rdx" and c.form(32).address_register == "edx"
    assert c.form(64).intel == "mov word ptr [rdx], ax" and c.form(32).att == "movw %ax, (%edx)"
    assert not c.applies_to(16) and "bp + si" in (c.excluded_why(16) or "")
    assert c.legacy_equivalent == "out dx, ax"
    assert {p.byte for p in c.forbidden_prefixes} == set(bytes.fromhex("f0 f2 f3 2e 36 3e 26 64 65 67 66"))
    assert c.rex_forbidden and c.window_access == "write-only" and c.access_within_window
    assert len(c.host_promises) >= 3 and any("false positive" in p for p in c.host_promises)


def test_contract_is_frozen_data() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONTRACT_V1.size = 4  # type: ignore[misc]
    assert not hasattr(CONTRACT_V1, "__dict__")  # slots
    assert isinstance(CONTRACT_V1.forms, tuple) and isinstance(CONTRACT_V1.host_promises, tuple)


def test_matches_is_mode_and_bytes() -> None:
    c = CONTRACT_V1
    assert c.matches(64, bytes.fromhex("66 89 02 90")) and c.matches(32, bytes.fromhex("66 89 02"))
    assert not c.matches(16, bytes.fromhex("66 89 02"))
    assert not c.matches(64, bytes.fromhex("66 89")) and not c.matches(64, bytes.fromhex("3e 66 89 02"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(length=4), "length"),
        (lambda d: d.update(encoding="66 89"), "length"),
        (lambda d: d.update(encoding="zz"), "not hex"),
        (lambda d: d.update(direction="read"), "direction"),
        (lambda d: d.update(schema="other"), "schema"),
        (lambda d: d.update(version=2), "unsupported"),
        (lambda d: d.pop("size"), "malformed"),
        (lambda d: d["excluded_modes"].append({"mode": 64, "why": "x"}), "both covered and excluded"),
        (lambda d: d.update(required_prefixes=["67"]), "required prefixes"),
        (lambda d: d["forbidden_prefixes"].append({"byte": "48", "kind": "rex", "name": "REX.W"}), "legacy"),
        (lambda d: d.update(modes=[]), "at least one mode"),
    ],
)
def test_inconsistent_spec_is_rejected(edit, message: str) -> None:
    data = copy.deepcopy(raw_spec())
    edit(data)
    with pytest.raises(ContractError, match=message):
        parse_contract(data)


def test_unknown_version_cannot_be_loaded() -> None:
    with pytest.raises(ContractError, match="unsupported"):
        load_contract(2)


@pytest.mark.parametrize("mode", [32, 64])
def test_encoding_means_the_contract_under_capstone(mode: int) -> None:
    c: Contract = CONTRACT_V1
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64 if mode == 64 else capstone.CS_MODE_32)
    insn = next(cs.disasm(c.encoding + b"\xcc" * 8, 0x1000, 1))
    assert insn.size == c.length
    assert f"{insn.mnemonic} {insn.op_str}" == c.form(mode).intel


@pytest.mark.parametrize("mode", [32, 64])
def test_encoding_means_the_contract_under_iced(mode: int) -> None:
    iced = pytest.importorskip("iced_x86")
    c = CONTRACT_V1
    insn = iced.Decoder(mode, c.encoding + b"\xcc" * 8, ip=0x1000).decode()
    assert insn.len == c.length and insn.mnemonic == iced.Mnemonic.MOV
    assert insn.op0_kind == iced.OpKind.MEMORY and insn.memory_size == iced.MemorySize.UINT16
    assert insn.memory_base == (iced.Register.RDX if mode == 64 else iced.Register.EDX)
    assert insn.memory_index == iced.Register.NONE and insn.memory_displacement == 0
    assert insn.op1_register == iced.Register.AX
    assert insn.segment_prefix == iced.Register.NONE and not insn.has_lock_prefix


def test_encoding_means_something_else_in_16_bit_code() -> None:
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
    insn = next(cs.disasm(CONTRACT_V1.encoding, 0, 1))
    assert f"{insn.mnemonic} {insn.op_str}" == "mov dword ptr [bp + si], eax"
    assert "mov dword ptr [bp + si], eax" in (CONTRACT_V1.excluded_why(16) or "")


@pytest.mark.parametrize("mode", [32, 64])
def test_gnu_as_emits_exactly_the_encoding(mode: int) -> None:
    """The reference assembler turns both spellings of the contract into exactly its bytes."""
    f = CONTRACT_V1.form(mode)
    src = f"{f.intel}\n.att_syntax prefix\n{f.att}\n.intel_syntax noprefix\n"
    assert assemble(src, mode=mode).code == CONTRACT_V1.encoding * 2


def _doc_c_block() -> str:
    m = re.search(r"```c\n(.*?)```", DOC.read_text(), re.S)
    assert m, "docs/contract.md must show the C inline asm"
    return m[1]


@pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("objcopy")), reason="needs gcc + objcopy")
def test_the_documented_c_inline_asm_compiles_to_the_encoding(tmp_path: Path) -> None:
    src = tmp_path / "drv.c"
    src.write_text(
        _doc_c_block()
        + "void kick(volatile uint16_t *b, uint16_t q) { pv_notify(b + 2 * q, q); }\n"
        + "void kick_any(volatile uint16_t *b, uint16_t q) { pv_notify_any(b + 2 * q, q); }\n"
    )
    obj, text = tmp_path / "drv.o", tmp_path / "drv.text"
    subprocess.run(["gcc", "-O2", "-ffreestanding", "-c", str(src), "-o", str(obj)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(text)], check=True)
    assert text.read_bytes().count(CONTRACT_V1.encoding) == 2


def test_the_doc_agrees_with_the_data() -> None:
    doc = DOC.read_text()
    c = CONTRACT_V1
    assert c.encoding.hex(" ") in doc
    for f in c.forms:
        assert f.intel in doc and f.att in doc
    assert c.legacy_equivalent in doc and "16-bit" in doc and "write-only" in doc
    for p in c.forbidden_prefixes:
        assert f"{p.byte:02x}" in doc, p
    assert "asm volatile(\"movw %%ax, (%%rdx)\" :: \"a\"(idx), \"d\"(addr)" in doc
