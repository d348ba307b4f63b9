"""emu/flagsites.py and its C twin find every SETcc-to-memory start, and nothing else."""

from __future__ import annotations

from emu import flagsites
from emu.assemble import assemble


def test_scan_finds_setcc_memory_forms_with_their_prefixes() -> None:
    img = assemble("nop\nsetz byte ptr [r9+0x10]\nsetl bl\nnop\nsetg byte ptr fs:[rax]\nhlt", 64)
    code, base = bytes(img.code), img.load_addr
    # 90 | 41 0f 94 41 10 | 0f 9c c3 | 90 | 64 0f 9f 00 | f4: every byte where a SETcc-to-memory could
    # start (the prefix run included); `setl bl` (register form) gives none
    assert flagsites.scan(code, base, 64) == {base + 1, base + 2, base + 10, base + 11}
    assert flagsites.setcc_mem(code[1:], 64) and flagsites.setcc_mem(code[10:], 64)


def test_register_forms_and_other_opcodes_are_not_sites() -> None:
    assert not flagsites.setcc_mem(bytes.fromhex("0f94c0"), 64)  # sete al
    assert not flagsites.setcc_mem(bytes.fromhex("0fb6c0"), 64)  # movzx
    assert flagsites.setcc_mem(bytes.fromhex("0f9400"), 32)  # sete [eax]
    assert flagsites.scan(bytes.fromhex("90900f94c0f4"), 0x8000, 64) == set()
