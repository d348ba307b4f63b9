"""The packages form layers with no arrow running back up, and no modules import each other in a ring.

    exitlab   the CLI (exitlab.cli, exitlab.commands.*) and the public API (exitlab.api)
      |       may import every layer below
    tools     exitlab.tools: bench sweeps, kvm-bench, validate, fuzz (listed in TOOLS)
      |
    fastpath  host paths (pv contract, fast path, wildcard) and the C engine (fastpath.cengine)
      |
    emu       the guest side: machines, platform, devices, bus, exits, traces, decode + semantics

A module may import its own layer or any layer below, never one above. Every `import` statement
is read with `ast`, at module level and inside functions alike: an import hidden in a function is
still an arrow, and hiding one only postpones the cycle to the first call. The only
function-local imports of exitlab's own modules are those in LAZY, each with the reason it is lazy
(an optional part that may be missing, like the C extension, or an import order a tool requires);
a new one fails `test_function_local_imports_are_listed` until it moves to the top of its module
or is listed with its reason. Imports of third-party packages are not arrows between layers
and are not checked (matplotlib, tqdm and atheris are optional extras; pyelftools loads when an ELF is read).
exitlab/cli.py finds its command modules with pkgutil at run time; they are in the top layer
anyway. docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("emu", "fastpath", "exitlab")
LAYERS = ("emu", "fastpath", "tools", "exitlab")  # bottom to top

# The tools layer is the package exitlab.tools; these are its modules (a name covers its submodules).
TOOLS = {
    "exitlab.tools.costs": "the bench sweep (`exitlab bench`)",
    "exitlab.tools.report": "bench tables and plots",
    "exitlab.tools.decoderbench": "`exitlab bench --decoders`",
    "exitlab.tools.kvmcosts": "`exitlab kvm-bench`",
    "exitlab.tools.validate": "`exitlab validate`: a guest checked against the pv contract",
    "exitlab.tools.fuzz": "the differential fuzzer (`exitlab fuzz`) and its atheris harnesses",
}

# (importer, imported) -> why this import stays inside a function.
_C_EXT = "the C extension is optional: exitlab runs (and says why C is unavailable) without it"
_ATHERIS = "imported after atheris instruments it"
LAZY = {
    ("exitlab", "exitlab.api"): "loaded on first use, so the console script (exitlab.cli) starts without it",
    ("exitlab.api", "fastpath.cengine"): _C_EXT,
    ("exitlab.commands._version", "fastpath._exitlab_c"): _C_EXT + "; --version reports its status",
    ("exitlab.commands.run", "fastpath.cengine"): _C_EXT + " (only --engine c needs it)",
    ("fastpath.replays", "fastpath.cengine"): _C_EXT + " (only a C replay needs it)",
    ("fastpath.replays", "fastpath.devtab"): _C_EXT + " (only a C replay into a board needs it)",
    ("exitlab.tools.decoderbench", "fastpath._exitlab_c"): _C_EXT,
    ("exitlab.tools.costs", "fastpath.cengine"): _C_EXT + " (the sweep skips the C rows)",
    ("exitlab.tools.fuzz.oracles", "fastpath.cengine"): _C_EXT + " (the C oracle is skipped)",
    ("exitlab.tools.fuzz.oracles", "exitlab.tools.fuzz.ctruth"):
        _C_EXT + " (the truth falls back to run_one)",
    ("exitlab.tools.fuzz.runner", "exitlab.tools.fuzz.fastrun"): _C_EXT + " (the full Python runner is used)",
    ("exitlab.commands.fuzz", "exitlab.tools.fuzz.fastrun"): _C_EXT + " (the full Python runner is used)",
    ("exitlab.tools.fuzz.streams_run", "fastpath.cengine"): _C_EXT + " (C configurations skipped)",
    ("exitlab.tools.fuzz.atheris_streams", "fastpath.cengine"): _ATHERIS,
    ("exitlab.tools.fuzz.atheris_streams", "exitlab.tools.fuzz.streams_campaign"): _ATHERIS,
    ("exitlab.tools.fuzz.atheris_streams", "exitlab.tools.fuzz.streams_compare"): _ATHERIS,
    ("exitlab.tools.fuzz.atheris_streams", "exitlab.tools.fuzz.streams_known"): _ATHERIS,
    ("exitlab.tools.fuzz.atheris_streams", "exitlab.tools.fuzz.streams_run"): _ATHERIS,
    ("exitlab.tools.fuzz.atheris_length", "fastpath._exitlab_c"): "imported after atheris instruments it",
    ("exitlab.tools.fuzz.atheris_length", "exitlab.tools.fuzz.atheris_length"):
        "run as __main__, the harness re-imports itself under atheris.instrument_imports()",
    ("exitlab.tools.fuzz.atheris_target", "fastpath.cengine"):
        "loaded only after --asan has put the sanitizer build first on fastpath.__path__",
    ("exitlab.tools.fuzz.atheris_target", "exitlab.tools.fuzz.oracles"):
        "imported under atheris.instrument_imports(), after the optional --asan build is chosen",
    ("exitlab.tools.fuzz.atheris_target", "fastpath"):
        "--asan prepends the sanitizer build to fastpath.__path__",
    ("exitlab.tools.fuzz.build_asan", "fastpath._build"): "the cffi build script, needed only when building",
}


@dataclass(frozen=True)
class Arrow:
    importer: str
    imported: str
    where: str  # file:line
    local: bool  # inside a function


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


EXTENSIONS = {"fastpath._exitlab_c"}  # compiled (cffi), so not found as a .py file


def _resolve(name: str) -> str | None:
    """The module of ours that `name` names (a module, or an attribute of one), else None."""
    while name and name not in MODULES and name not in EXTENSIONS:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
        return
    base = node.module or ""
    if node.level:  # relative import: resolve against this module's package
        pkg = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
        base = f"{pkg}.{base}" if base else pkg
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        # `from pkg import mod` is an arrow to pkg.mod; `from mod import name` one to mod
        yield sub if sub in MODULES or sub in EXTENSIONS else base


def _arrows() -> list[Arrow]:
    arrows = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        local = {
            id(sub)
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
            for sub in ast.walk(fn)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(node, module):
                imported = _resolve(target)
                if imported is not None:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    arrows.append(Arrow(module, imported, where, id(node) in local))
    return arrows


ARROWS = _arrows()


def layer(module: str) -> str:
    if module == "exitlab.tools" or module.startswith("exitlab.tools."):
        return "tools"
    if module.split(".")[0] == "exitlab":
        return "exitlab"
    return module.split(".")[0]


def test_the_parser_sees_both_kinds_of_import() -> None:
    """Guard against a vacuous pass: known module-level and function-local arrows are found."""
    found = {(a.importer, a.imported, a.local) for a in ARROWS}
    assert ("fastpath.fast", "emu.cpu", False) in found
    assert ("exitlab.api", "fastpath.cengine", True) in found
    assert len(MODULES) > 60 and len(ARROWS) > 250


def test_no_arrow_runs_back_up() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    up = [
        f"{a.where}: {a.importer} ({layer(a.importer)}) imports {a.imported} ({layer(a.imported)})"
        for a in ARROWS
        if rank[layer(a.imported)] > rank[layer(a.importer)]
    ]
    assert not up, "imports from a higher layer:\n" + "\n".join(up)


def test_tools_are_modules_that_exist() -> None:
    """TOOLS names every module of exitlab.tools, and nothing else is in the tools layer."""
    assert all(t in MODULES for t in TOOLS), sorted(set(TOOLS) - set(MODULES))
    unlisted = [m for m in MODULES if layer(m) == "tools" and m != "exitlab.tools"
                and not any(m == t or m.startswith(t + ".") for t in TOOLS)]
    assert not unlisted, unlisted


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    """No ring of modules importing each other, counting function-local imports except LAZY ones."""
    edges: dict[str, set[str]] = {}
    for a in ARROWS:
        if a.importer != a.imported and not (a.local and (a.importer, a.imported) in LAZY):
            edges.setdefault(a.importer, set()).add(a.imported)
    rings = _cycles(edges)
    assert not rings, "import cycles:\n" + "\n".join(" <-> ".join(r) for r in rings)


def test_function_local_imports_are_listed() -> None:
    """A function-local import of our own code is either a listed lazy load or a dodged cycle."""
    local = {(a.importer, a.imported): a.where for a in ARROWS if a.local}
    unlisted = [f"{where}: {imp} imports {mod}" for (imp, mod), where in sorted(local.items())
                if (imp, mod) not in LAZY]
    assert not unlisted, (
        "function-local imports not in LAZY (move them to the top of the module, or list them "
        "in tests/test_layers.py with the reason they must stay lazy):\n" + "\n".join(unlisted)
    )
    stale = sorted(set(LAZY) - set(local))
    assert not stale, f"LAZY lists imports that are no longer function-local (remove them): {stale}"
