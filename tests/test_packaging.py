"""The pins live in one place ([project] dependencies); the build requirements must admit them."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def test_build_requirements_admit_the_pinned_versions():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = {}
    for dep in meta["project"]["dependencies"]:
        req = Requirement(dep)
        spec = str(req.specifier)
        if spec.startswith("=="):
            pins[req.name] = spec[2:]
    build = {Requirement(r).name: Requirement(r) for r in meta["build-system"]["requires"]}
    for name in ("unicorn", "capstone"):
        assert name in pins, f"{name} must be pinned with == in [project] dependencies"
        assert build[name].specifier.contains(pins[name]), (name, pins[name], str(build[name].specifier))


def test_every_command_module_and_guest_is_packaged():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(meta["tool"]["setuptools"]["packages"])
    for init in ROOT.glob("*/**/__init__.py"):
        pkg = ".".join(init.parent.relative_to(ROOT).parts)
        if pkg.split(".")[0] in ("emu", "fastpath", "exitlab"):
            assert pkg in packages, f"{pkg} is not listed in [tool.setuptools] packages"
