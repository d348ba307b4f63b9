"""Regenerate ../gcc_mmio_cases.jsonl from accessors.c (needs gcc and objdump; the tests do not).

Every instruction in the objects that dereferences a pointer argument becomes one batch case with
that pointer set to the MMIO window; run: python tests/data/gcc_mmio/regen.py [OUT]
(OUT defaults to the checked-in file; tests write to a temporary file and compare).
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).parent
MMIO = 0xFEB00000
# Registers that hold the pointer argument on entry (SysV x86-64: rdi; i386: loaded from the stack
# into some register first, so any memory operand not based on esp counts).
MEM = re.compile(r"\((%[a-z0-9]+)\)|\d*\((%[a-z0-9]+)(,%[a-z0-9]+,\d)?\)")


def cases(mode: int) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        obj = pathlib.Path(tmp) / "a.o"
        subprocess.run(["gcc", "-O2", f"-m{mode}", "-c", str(HERE / "accessors.c"), "-o", str(obj)], check=True)  # noqa: E501
        dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-w", str(obj)], capture_output=True,
                              text=True, check=True).stdout
        raw = subprocess.run(["objdump", "-d", "-w", str(obj)], capture_output=True, text=True, check=True).stdout  # noqa: E501
    for _line, rline in zip(dump.splitlines(), raw.splitlines(), strict=False):
        parts = rline.split("\t")
        if len(parts) < 3 or "(" not in parts[2]:
            continue
        text = parts[2]
        m = re.search(r"\((%[a-z0-9]+)", text)
        if not m or m.group(1) in ("%esp", "%rsp", "%rip") or text.startswith(("lea", "push", "pop", "call", "nop", "data16", "cs nop")):  # noqa: E501
            continue
        base = m.group(1)[1:]
        full = {"e": "r"}.get(base[0], "") + base[1:] if mode == 32 else base
        out.append({"bytes": parts[1].strip(), "mode": mode, "rip": 4096, "regs": {full: MMIO + 0x100},
                    "mmio": [MMIO, 4096], "read_value": 0x8877665544332211, "asm": text.strip()})
    return out


if __name__ == "__main__":
    rows = cases(64) + cases(32)
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "gcc_mmio_cases.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(len(rows), "cases")
