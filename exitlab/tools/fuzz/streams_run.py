"""Run one stream program through every engine x path configuration, in process (issue 11).

Each run is reduced to an `Outcome`: the fields the comparator checks, in one normal form for the
Python engine, the C engine, KVM and the independent reference (streams_ref):

- `stop`: reason and RIP;
- `regs`: the GPRs that exist in the mode and RFLAGS' status flags + DF (ARITH_FLAGS; IF/TF/RF and
  reserved bits are the engine's business);
- `xmm`: XMM0-3 (Unicorn engines only; KVM leaves them out);
- `devices`: device accesses as the device saw them: notify kicks per queue (queues >= 16 summed
  as "other"), notify writes/reads/unmatched, register-device reads/writes, its 4 KiB contents (hash);
- `exits`: port I/O elements in/out and hypercalls. MMIO exit counts are NOT compared: in place,
  Unicorn reports one callback per access, exit style one trap per instruction (a REP over MMIO is
  one exit), KVM one exit per access piece; the device access counts above are what must agree;
- `console`: bytes written to the console;
- `ram`: a hash of the RAM a program can touch (stack page, code page, the scratch area).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emu.assemble import GuestImage
from emu.board import Board, default_board
from emu.exits import GPR_NAMES
from emu.kvm import KvmMachine, kvm_unavailable_reason
from emu.machine import Machine, MmioStyle
from emu.platform import LOAD_ADDR, PAGE
from exitlab.tools.fuzz.streams_gen import SCRATCH, SCRATCH_SIZE
from fastpath.hostpaths import make_path

ARITH_FLAGS = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800  # CF PF AF ZF SF DF OF
RAM_RANGES = ((LOAD_ADDR - PAGE, 2 * PAGE), (SCRATCH - PAGE, SCRATCH_SIZE + 2 * PAGE))
RUN_TIMEOUT = 2.0  # seconds per run; programs are short and bounded, a timeout is itself a finding
NQUEUES = 16


@dataclass
class Outcome:
    config: str
    stop: str
    rip: int
    message: str = ""
    regs: dict[str, int] = field(default_factory=dict)
    xmm: tuple[int, ...] | None = None
    devices: dict[str, Any] = field(default_factory=dict)
    regs_mem: bytes = b""
    exits: dict[str, int] = field(default_factory=dict)
    console: bytes = b""
    ram: str = ""
    insns: int | None = None  # instructions executed (reference only)
    exit_rips: tuple[int, ...] | None = None  # RIPs of exits in order (None: the engine keeps no records)

    def fields(self) -> dict[str, Any]:
        """The compared fields, flat: name -> value."""
        out: dict[str, Any] = {"stop": (self.stop, self.rip)}
        for k, v in self.regs.items():
            out[f"reg.{k}"] = v
        if self.xmm is not None:
            for i, v in enumerate(self.xmm):
                out[f"xmm{i}"] = v
        for k, v in self.devices.items():
            out[f"dev.{k}"] = v
        out["dev.regs_mem"] = hashlib.sha1(self.regs_mem).hexdigest()[:16]
        for k, v in self.exits.items():
            out[f"exits.{k}"] = v
        out["console"] = self.console
        out["ram"] = self.ram
        if self.exit_rips is not None:
            out["exits.rips"] = collapse_rips(self.exit_rips, self.stop, self.rip)
        return out

    def to_json(self) -> dict[str, Any]:
        regs_nonzero = {f"{i:#x}": b for i, b in enumerate(self.regs_mem) if b and i >= 8}
        return {
            "config": self.config,
            "stop": self.stop,
            "rip": self.rip,
            "message": self.message,
            "regs": self.regs,
            "xmm": list(self.xmm) if self.xmm is not None else None,
            "devices": self.devices,
            "regs_nonzero": regs_nonzero,
            "exits": self.exits,
            "console": self.console.decode("latin-1"),
            "ram": self.ram,
        }


def collapse_rips(rips: tuple[int, ...], stop: str, stop_rip: int) -> tuple[int, ...]:
    """The exit RIPs in a form every MMIO style shares: consecutive repeats are one (in place reports
    each access of an instruction or REP, exit style one exit per instruction), and exits at the
    stopping instruction of a non-hlt stop are dropped (a path records the exit it then declines or
    faults on; the reference discards a faulting instruction's accesses)."""
    out: list[int] = []
    for r in rips:
        if not out or out[-1] != r:
            out.append(r)
    if stop != "hlt":
        while out and out[-1] == stop_rip:
            out.pop()
    return tuple(out)


def ram_hash(read: Callable[[int, int], bytes]) -> str:
    h = hashlib.sha1()
    for base, size in RAM_RANGES:
        h.update(read(base, size))
    return h.hexdigest()[:16]


def norm_regs(regs: dict[str, int], mode: int) -> dict[str, int]:
    names = GPR_NAMES if mode == 64 else GPR_NAMES[:8]
    out = {n: regs.get(n, 0) for n in names}
    out["rflags"] = regs.get("rflags", 0) & ARITH_FLAGS
    return out


def norm_kicks(kicks: dict[Any, int], other: int = 0) -> dict[str, int]:
    out: dict[str, int] = {}
    for q, n in kicks.items():
        q = int(q)
        if q < NQUEUES:
            out[str(q)] = out.get(str(q), 0) + n
        else:
            other += n
    if other:
        out["other"] = other
    return {k: v for k, v in sorted(out.items()) if v}


def py_devices(board: Board) -> dict[str, Any]:
    n, r = board.notify, board.regs
    return {
        "notify.kicks": norm_kicks(dict(n.kicks)),
        "notify.writes": n.writes,
        "notify.reads": n.reads,
        "notify.unmatched": n.unmatched,
        "regs.reads": r.reads,
        "regs.writes": r.writes,
    }


# ------------------------------------------------------------------------------ configurations
PY_CONFIGS = ("py-inplace", "py-generic", "py-fast", "py-wildcard")
C_CONFIGS = ("c-inplace", "c-capstone", "c-subset", "c-pv-fast", "c-wildcard", "c-generic", "c-fast")
KVM_CONFIG = "kvm"
ALL_CONFIGS = (*PY_CONFIGS, *C_CONFIGS, KVM_CONFIG)
WILDCARD = ("py-wildcard", "c-wildcard")


def _xmm(regfile: Any) -> tuple[int, ...]:
    return tuple(regfile.get_xmm(i) for i in range(4))


def run_python(
    image: GuestImage, path_name: str, max_insns: int | None, path: Callable[[Board], Any] | None = None
) -> Outcome:
    """The Python engine as `exitlab run --path NAME` drives it; `path` builds a replacement path
    object from the board (tests plant deliberately wrong paths this way)."""
    board = default_board()
    style = MmioStyle.INPLACE if path_name == "inplace" and path is None else MmioStyle.EXIT
    obj = path(board) if path is not None else make_path(path_name, board)
    m = Machine(image, board=board, mmio_style=style, path=obj, keep_records=True)
    res = m.run(max_insns=max_insns, timeout=RUN_TIMEOUT)
    return Outcome(
        config=f"py-{path_name}",
        stop=res.stop.reason.value,
        rip=res.stop.rip,
        message=res.stop.message,
        regs=norm_regs(res.regs, image.mode),
        xmm=_xmm(m.regfile),
        devices=py_devices(board),
        regs_mem=bytes(board.regs.mem),
        exits={k: res.exits.get(k, 0) for k in ("pio_in", "pio_out", "hypercall")},
        console=bytes(board.console.out),
        ram=ram_hash(m.read_ram),
        exit_rips=tuple(r.rip for r in res.records),
    )


def run_c(image: GuestImage, path_name: str, max_insns: int | None) -> Outcome:
    """The C engine as `exitlab run --engine c --path NAME` drives it, keeping the machine so RAM
    and XMM can be read afterwards."""
    from fastpath.cengine import CLI_PATHS, KIND_CODES, CContext, run_live

    cpath, style = CLI_PATHS.get(path_name, (path_name, "exit"))
    ctx = CContext()
    m = Machine(image, board=default_board(), mmio_style=style)
    m.init_regs()
    res = run_live(
        m, path=cpath, style=style, max_insns=max_insns, timeout=RUN_TIMEOUT, ctx=ctx, start_rip=image.entry,
        inplace_raw=True,
    )
    reason = {"max_exits": "budget", "uc_error": "triple_fault", "none": "triple_fault"}.get(
        res.stop, res.stop
    )
    st = ctx.state()
    nt = st["notify"]
    kinds = {k.value: res.kind_counts[i] for i, k in enumerate(KIND_CODES)}
    msg = res.error.message() if res.error is not None else res.stop
    return Outcome(
        config=f"c-{path_name}",
        stop=reason,
        rip=res.rip,
        message=msg,
        regs=norm_regs(m.regs(), image.mode),
        xmm=_xmm(m.regfile),
        devices={
            "notify.kicks": norm_kicks(nt["kicks"], nt["kicks_other"]),
            "notify.writes": nt["writes"],
            "notify.reads": nt["reads"],
            "notify.unmatched": nt["unmatched"],
            "regs.reads": st["regs"]["reads"],
            "regs.writes": st["regs"]["writes"],
        },
        regs_mem=ctx.regs_mem,
        exits={k: kinds.get(k, 0) for k in ("pio_in", "pio_out", "hypercall")},
        console=ctx.console,
        ram=ram_hash(m.read_ram),
    )


def run_kvm(image: GuestImage, max_insns: int | None) -> Outcome | None:
    """KVM runs only programs without a budget (hardware has no instruction counter)."""
    if max_insns is not None:
        return None
    board = default_board()
    m = KvmMachine(image, board)
    try:
        res = m.run(timeout=RUN_TIMEOUT)
        ram = ram_hash(m.vm.read_ram)
    finally:
        m.close()
    return Outcome(
        config=KVM_CONFIG,
        stop=res.stop.reason.value,
        rip=res.stop.rip,
        message=res.stop.message,
        regs=norm_regs(res.regs, image.mode),
        xmm=None,
        devices=py_devices(board),
        regs_mem=bytes(board.regs.mem),
        exits={k: res.exits.get(k, 0) for k in ("pio_in", "pio_out", "hypercall")},
        console=bytes(board.console.out),
        ram=ram,
        # no exit RIPs: KVM completes an MMIO instruction in the kernel and reports the exit with RIP
        # already past it, so its records are not comparable with an exit model's
    )


_KVM_WHY: str | None = None  # "" when usable, else why not


def kvm_skip_reason() -> str:
    """Empty when the KVM configuration runs, else why it is skipped (shown in the summary)."""
    global _KVM_WHY
    if _KVM_WHY is None:
        try:
            _KVM_WHY = kvm_unavailable_reason() or ""
        except Exception as exc:  # noqa: BLE001 - any import/open problem means "skip KVM"
            _KVM_WHY = f"{type(exc).__name__}: {exc}"
    return _KVM_WHY


def kvm_usable() -> bool:
    return kvm_skip_reason() == ""


Runner = Callable[[GuestImage, int | None], Outcome | None]


def _py(path_name: str, image: GuestImage, max_insns: int | None) -> Outcome:
    return run_python(image, path_name, max_insns)


def _c(path_name: str, image: GuestImage, max_insns: int | None) -> Outcome:
    return run_c(image, path_name, max_insns)


def c_aliases(configs: tuple[str, ...] = ALL_CONFIGS) -> dict[str, str]:
    """C configurations that drive exactly the same C path and style as an earlier one (today the
    CLI names generic = capstone and fast = pv-fast): their outcome is reused, not recomputed."""
    from fastpath.cengine import CLI_PATHS

    seen: dict[tuple[str, str], str] = {}
    out: dict[str, str] = {}
    for name in configs:
        if not name.startswith("c-"):
            continue
        p = name[2:]
        key = CLI_PATHS.get(p, (p, "exit"))
        if key in seen:
            out[name] = seen[key]
        else:
            seen[key] = name
    return out


def runners(configs: tuple[str, ...] = ALL_CONFIGS) -> dict[str, Runner]:
    """Callables per configuration name (kvm only when /dev/kvm is usable)."""
    out: dict[str, Runner] = {}
    for name in configs:
        if name.startswith("py-"):
            out[name] = functools.partial(_py, name[3:])
        elif name.startswith("c-"):
            out[name] = functools.partial(_c, name[2:])
        elif name == KVM_CONFIG and kvm_usable():
            out[name] = run_kvm
    return out
