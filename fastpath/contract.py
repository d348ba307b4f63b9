"""The pv contract as data: `contract_v1.json` loaded and checked into frozen dataclasses.

The spec lives in one JSON file so the Python fast path, the C fast path, the validator, the tests
and the docs all read the same facts (encoding, registers, modes, prefixes, promises) instead of
each restating them. Loading validates the file's internal consistency, so a bad edit to the
spec fails loudly at load time rather than quietly changing what the fast path accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from emu.errors import ExitlabError

SCHEMA = "exitlab-pv-contract"
SUPPORTED_VERSIONS = (1,)
LEGACY_PREFIX_BYTES = frozenset(bytes.fromhex("f0 f2 f3 2e 36 3e 26 64 65 66 67"))


class ContractError(ExitlabError):
    """The contract file is missing, malformed or contradicts itself."""


@dataclass(frozen=True, slots=True)
class ModeForm:
    """How the agreed instruction reads in one CPU mode (same bytes, different address register)."""

    mode: int
    address_register: str
    intel: str
    att: str


@dataclass(frozen=True, slots=True)
class ExcludedMode:
    """A mode where the agreed bytes mean something else, so the contract does not apply."""

    mode: int
    why: str


@dataclass(frozen=True, slots=True)
class Prefix:
    """A prefix byte the contract forbids; `kind` groups them for violation reasons."""

    byte: int
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Contract:
    """One version of the pv-notify contract. `encoding` is the only byte string the host accepts."""

    version: int
    name: str
    summary: str
    encoding: bytes
    length: int
    direction: str
    size: int
    data_register: str
    legacy_equivalent: str
    forms: tuple[ModeForm, ...]
    excluded_modes: tuple[ExcludedMode, ...]
    mode_note: str
    required_prefixes: bytes
    forbidden_prefixes: tuple[Prefix, ...]
    rex_forbidden: bool
    window_access: str
    access_within_window: bool
    guest_promises: tuple[str, ...]
    host_promises: tuple[str, ...]

    @property
    def modes(self) -> frozenset[int]:
        return frozenset(f.mode for f in self.forms)

    def applies_to(self, mode: int) -> bool:
        return any(f.mode == mode for f in self.forms)

    def form(self, mode: int) -> ModeForm:
        for f in self.forms:
            if f.mode == mode:
                return f
        raise ContractError(f"contract v{self.version} does not apply to {mode}-bit code")

    def excluded_why(self, mode: int) -> str | None:
        return next((e.why for e in self.excluded_modes if e.mode == mode), None)

    def prefix(self, byte: int) -> Prefix | None:
        return next((p for p in self.forbidden_prefixes if p.byte == byte), None)

    def matches(self, mode: int, insn: bytes) -> bool:
        """True when `insn` starts with the agreed encoding and `mode` is a contract mode."""
        return self.applies_to(mode) and insn[: self.length] == self.encoding

    def to_json(self) -> dict[str, Any]:
        """The facts a report or the C build needs, in JSON form."""
        return {
            "version": self.version,
            "encoding": self.encoding.hex(" "),
            "length": self.length,
            "size": self.size,
            "direction": self.direction,
            "data_register": self.data_register,
            "modes": sorted(self.modes),
        }


def _hex_bytes(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ContractError(f"{what} must be a hex string like '66 89 02'")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ContractError(f"{what}: {text!r} is not hex bytes") from None


def _str_tuple(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ContractError(f"{what} must be a list of non-empty strings")
    return tuple(value)


def parse_contract(data: dict[str, Any]) -> Contract:
    """Build a Contract from the decoded JSON and check that it does not contradict itself."""
    try:
        if data.get("schema") != SCHEMA:
            raise ContractError(f"schema must be {SCHEMA!r} (got {data.get('schema')!r})")
        version = data["version"]
        if version not in SUPPORTED_VERSIONS:
            raise ContractError(f"unsupported contract version {version!r} (supported: {SUPPORTED_VERSIONS})")
        encoding = _hex_bytes(data["encoding"], "encoding")
        length, size = int(data["length"]), int(data["size"])
        forms = tuple(
            ModeForm(int(m["mode"]), str(m["address_register"]), str(m["intel"]), str(m["att"]))
            for m in data["modes"]
        )
        excluded = tuple(ExcludedMode(int(m["mode"]), str(m["why"])) for m in data["excluded_modes"])
        forbidden = tuple(
            Prefix(_hex_bytes(p["byte"], "forbidden prefix")[0], str(p["kind"]), str(p["name"]))
            for p in data["forbidden_prefixes"]
        )
        required = b"".join(_hex_bytes(p, "required prefix") for p in data["required_prefixes"])
        window = data["window"]
        contract = Contract(
            version=version,
            name=str(data["name"]),
            summary=str(data["summary"]),
            encoding=encoding,
            length=length,
            direction=str(data["direction"]),
            size=size,
            data_register=str(data["data_register"]),
            legacy_equivalent=str(data["legacy_equivalent"]),
            forms=forms,
            excluded_modes=excluded,
            mode_note=str(data["mode_note"]),
            required_prefixes=required,
            forbidden_prefixes=forbidden,
            rex_forbidden=bool(data["rex_forbidden"]),
            window_access=str(window["access"]),
            access_within_window=bool(window["access_within_window"]),
            guest_promises=_str_tuple(data["guest_promises"], "guest_promises"),
            host_promises=_str_tuple(data["host_promises"], "host_promises"),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ContractError(f"malformed contract: {type(exc).__name__}: {exc}") from None
    _check(contract)
    return contract


def _check(c: Contract) -> None:
    """Internal consistency: the facts that the fast path and the validator rely on."""
    if len(c.encoding) != c.length:
        raise ContractError(
            f"encoding {c.encoding.hex(' ')} is {len(c.encoding)} bytes, but length says {c.length}"
        )
    if c.direction != "write":
        raise ContractError(f"direction must be 'write' (got {c.direction!r}): a notify carries data")
    if c.size not in (1, 2, 4, 8):
        raise ContractError(f"size must be 1, 2, 4 or 8 (got {c.size})")
    if not c.forms:
        raise ContractError("the contract must apply to at least one mode")
    modes = [f.mode for f in c.forms]
    if len(set(modes)) != len(modes) or not set(modes) <= {16, 32, 64}:
        raise ContractError(f"modes must be distinct values of 16, 32, 64 (got {modes})")
    if set(modes) & {e.mode for e in c.excluded_modes}:
        raise ContractError("a mode cannot be both covered and excluded")
    if not c.encoding.startswith(c.required_prefixes):
        raise ContractError("the encoding must start with the required prefixes")
    if any(p.byte not in LEGACY_PREFIX_BYTES for p in c.forbidden_prefixes):
        raise ContractError("forbidden prefixes must be legacy prefix bytes (REX is `rex_forbidden`)")
    if c.window_access != "write-only":
        raise ContractError(f"window access must be 'write-only' (got {c.window_access!r})")


def load_contract(version: int = 1) -> Contract:
    """Load `fastpath/contract_v{version}.json` (shipped as package data)."""
    if version not in SUPPORTED_VERSIONS:
        raise ContractError(f"unsupported contract version {version!r} (supported: {SUPPORTED_VERSIONS})")
    name = f"contract_v{version}.json"
    try:
        text = resources.files("fastpath").joinpath(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"cannot read {name}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(f"{name}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{name}: top level must be an object")
    return parse_contract(data)


CONTRACT_V1: Contract = load_contract(1)
"""The contract every path in this release implements (immutable)."""
