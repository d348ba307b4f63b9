"""Before / after for the length function, side by side in one process: this tree's extension and
another build of it (for example the sources of an older commit), walking the same .text buffers,
interleaved round by round so that both see the same machine load.

    git worktree add --detach /tmp/old <commit>
    (cd /tmp && .venv/bin/python /tmp/old/fastpath/_build.py)   # -> /tmp/build/cffi/fastpath/_exitlab_c*.so
    .venv/bin/python bench/length_before_after.py /tmp/build/cffi/fastpath/_exitlab_c*.so [--rounds 7]
        [--binary PATH[:MAX_MIB] ...]

Prints, for each build, MiB/s and ns/insn (best round; thread CPU time of a C loop over the whole
.text, as `exitlab bench --decoders` does) and the exactness counts against iced-x86.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exitlab.tools import decoderbench as db  # noqa: E402


def _load(so: Path, name: str) -> Any:
    """A cffi extension loaded from a file, under a module name of its own."""
    spec = importlib.util.spec_from_file_location(f"{name}._exitlab_c", so)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{so}: not loadable")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sweep(mod: Any, data: bytes, mode: int) -> tuple[int, int]:
    res = mod.ffi.new("struct xl_sweep *")
    if mod.lib.xl_bench_sweep(db.C_DECODERS["exitlab-length"], data, len(data), mode, res) < 0:
        raise SystemExit("xl_bench_sweep failed")
    return int(res.ns), int(res.insns)


def _exactness(mod: Any, data: bytes, mode: int, ref: db.Reference) -> tuple[int, int, int]:
    """(wrong, declined, false accepts) against iced-x86, as `exitlab bench --decoders` counts them."""
    offs = mod.ffi.new("uint32_t[]", ref.offsets)
    out = mod.ffi.new("int8_t[]", max(len(ref.offsets), 1))
    code = db.C_DECODERS["exitlab-length"]
    if mod.lib.xl_bench_lengths_at(code, data, len(data), mode, offs, len(ref.offsets), out) < 0:
        raise SystemExit("xl_bench_lengths_at failed")
    wrong, declined, false_acc, _ = db.compare(ref, list(out)[: len(ref.offsets)], data)
    return wrong, declined, false_acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old_so", type=Path, help="the other build's _exitlab_c*.so")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--binary", action="append", default=[], help="PATH or PATH:MAX_MIB (first MiB of .text)")
    a = ap.parse_args()
    secs = []
    for b in a.binary or [str(p) for p in db.default_binaries()[0]]:
        path, _, cap = b.partition(":")
        s = db.elf_text(path)
        if cap:
            s.data = s.data[: int(float(cap) * (1 << 20))]
        secs.append(s)
    import fastpath._exitlab_c as new

    builds = {"before": _load(a.old_so.resolve(), "_xl_before"), "after": new}
    best: dict[str, list[int]] = {k: [1 << 62] * len(secs) for k in builds}
    insns: dict[str, list[int]] = {k: [0] * len(secs) for k in builds}
    for _ in range(a.rounds):
        for i, s in enumerate(secs):
            for k, mod in builds.items():
                ns, n = _sweep(mod, s.data, s.mode)
                best[k][i] = min(best[k][i], ns)
                insns[k][i] = n
    nbytes = sum(len(s.data) for s in secs)
    refs = [db.iced_reference(s.data, s.mode) for s in secs]
    print(f"{len(secs)} binaries, {nbytes / (1 << 20):.1f} MiB of .text: " + ", ".join(s.path for s in secs))
    head = ("build", "MiB/s", "ns/insn", "insns", "wrong", "declined", "false acc")
    print("{:8} {:>8} {:>8} {:>10} {:>6} {:>8} {:>9}".format(*head))
    for k, mod in builds.items():
        ns, n = sum(best[k]), sum(insns[k])
        counts = [_exactness(mod, s.data, s.mode, r) for s, r in zip(secs, refs, strict=True)]
        w, d, f = (sum(c[j] for c in counts) for j in range(3))
        print(f"{k:8} {nbytes / (1 << 20) / (ns / 1e9):8.1f} {ns / n:8.2f} {n:10d} {w:6d} {d:8d} {f:9d}")


if __name__ == "__main__":
    main()
