"""The platform's numbers and the hypercall ABI are written once, in Python, for both languages.

- fastpath/csrc/platform_gen.h is exactly what gen_platform.py writes from emu/platform.py now, and
  names every number emu/platform.py defines (a new one cannot be left out of C);
- the built extension was compiled from it: the flat C devices come up at the platform's addresses
  with the register device's id (a stale build fails here, not in a benchmark);
- no C header or C exit path spells a platform address or hypercall number by hand any more (the
  fuzzer's and the ASan driver's own test inputs are listed with their reason).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from emu import platform
from emu.devices import RegisterDevice

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "fastpath" / "csrc"
sys.path.insert(0, str(CSRC))
import gen_platform  # noqa: E402

HEADER = CSRC / "platform_gen.h"


def test_header_file_is_current() -> None:
    assert HEADER.read_text() == gen_platform.render(), (
        "fastpath/csrc/platform_gen.h is stale: run .venv/bin/python fastpath/csrc/gen_platform.py "
        "> fastpath/csrc/platform_gen.h && make venv"
    )


def _defines(text: str) -> dict[str, int]:
    return {m[1]: int(m[2], 0) for m in re.finditer(r"#define (XL_\w+) (0x[0-9a-f]+|\d+)u", text)}


def test_every_platform_number_is_generated() -> None:
    numbers = {k: v for k, v in vars(platform).items() if k.isupper() and type(v) is int}
    assert numbers, "emu/platform.py defines no numbers?"
    defined = _defines(HEADER.read_text())
    for name, value in numbers.items():
        assert defined.get(f"XL_{name}") == value, f"{name} is not XL_{name} = {value:#x} in C"


def test_the_build_uses_the_generated_numbers() -> None:
    cengine = pytest.importorskip("fastpath.cengine")
    dev = cengine.CContext().cdata.dev
    assert (dev.notify_base, dev.notify_size) == (platform.NOTIFY_MMIO, platform.NOTIFY_MMIO_SIZE)
    assert (dev.regs_base, dev.regs_size) == (platform.REGS_MMIO, platform.REGS_MMIO_SIZE)
    assert (dev.notify_port, dev.console_port) == (platform.NOTIFY_PORT, platform.CONSOLE_PORT)
    assert bytes(dev.regs) == bytes(RegisterDevice().mem)


# Literal platform numbers allowed outside platform_gen.h, each with its reason.
ALLOWED = {
    "fuzzcore.c": "the fuzzer's own MMIO windows and RAM for its generated cases (its test inputs)",
    "asan_driver.c": "the sanitizer driver's hand-picked interesting inputs",
}
# Every address and port of the platform (sizes like 0x1000 are too common to search for).
_LITERALS = (platform.NOTIFY_MMIO, platform.REGS_MMIO, platform.NOTIFY_PORT, platform.CONSOLE_PORT,
             platform.PCI_CONFIG_ADDRESS, platform.PCI_CONFIG_DATA, platform.PCI_MMIO_BASE)


def test_no_hand_written_platform_numbers_in_c() -> None:
    pattern = re.compile(r"\b0x0*(" + "|".join(f"{v:x}" for v in _LITERALS) + r")(ull|u|ul)?\b", re.I)
    found = []
    for path in sorted(CSRC.glob("*.[ch]")):
        if path.name == HEADER.name or path.name in ALLOWED:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.name}:{lineno}: {line.strip()}")
    assert not found, "platform numbers written by hand (use platform_gen.h):\n" + "\n".join(found)


def test_hypercall_numbers_are_defined_for_c() -> None:
    text = HEADER.read_text()
    defined = _defines(text)
    assert defined["XL_HC_MMIO_WRITE"] == platform.HC_MMIO_WRITE
    assert defined["XL_HYPERCALL_LEN"] == 3
    assert defined["XL_VMCALL"].to_bytes(3, "little") == bytes.fromhex("0f01c1")
    assert defined["XL_VMMCALL"].to_bytes(3, "little") == bytes.fromhex("0f01d9")
