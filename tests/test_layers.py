"""The layers, enforced: every import (top-level or inside a function) read from the source's AST.

* `models/` holds estimators and the bundle: it imports nothing from `labeler/` or `store/`.
* `store/` owns persistence: it imports nothing from `labeler/` or `models/`.
* `labeler/domain.py` and `labeler/taxonomy.py` sit at the bottom of `labeler/`: they import no
  labeler service or interface (only each other).
* Services (every other `labeler` module) import no interface: not the app (`labeler.app*`,
  `labeler.local_app`), not the CLI (`labeler.cli`, `labeler.console`, `labeler.__main__`), not
  launch.py. (The CLI package itself has no cycle: tests/test_store_seams.py.)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABELER_BOTTOM = {"labeler.domain", "labeler.taxonomy"}
INTERFACES = ("labeler.app", "labeler.local_app", "labeler.cli", "labeler.console", "labeler.__main__", "launch")


def _is_interface(path: Path) -> bool:
    module = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    return any(module == i or module.startswith(i + ".") or module.startswith(i + "_") for i in INTERFACES)


SERVICES = [p for p in sorted((ROOT / "labeler").glob("*.py")) if not _is_interface(p)]

# (files, forbidden module prefixes, allowed exceptions)
CONTRACTS = {
    "models imports nothing from labeler or store": (sorted((ROOT / "models").glob("*.py")), ("labeler", "store"), set()),
    "store imports nothing from labeler or models": (sorted((ROOT / "store").glob("*.py")), ("labeler", "models"), set()),
    "labeler's domain and taxonomy import no labeler service or interface": (
        [ROOT / "labeler" / "domain.py", ROOT / "labeler" / "taxonomy.py"], ("labeler",), LABELER_BOTTOM),
    "labeler's services import no interface (app, CLI, launch.py)": (SERVICES, INTERFACES, set()),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file (see `modules_in`)."""
    package = path.parent.relative_to(ROOT).as_posix().replace("/", ".")
    return modules_in(path.read_text(encoding="utf-8"), package, str(path))


def modules_in(source: str, package: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, dotted module) for every import in `source`, at any depth; `from pkg import name` of a
    top-level package yields `pkg.name` (the name is a submodule); relative imports are resolved
    against `package`."""
    tree = ast.parse(source, filename=filename)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if "." in module:
                out.append((node.lineno, module))
            else:   # `from labeler import taxonomy`: the names are the modules
                out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def violations(files: list[Path], forbidden: tuple[str, ...], allowed: set[str]) -> list[str]:
    found = []
    for path in files:
        for line, module in imported_modules(path):
            if not any(module == f or module.startswith(f + ".") or module.startswith(f + "_")
                       for f in forbidden):
                continue
            if module in allowed:
                continue
            found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("contract", list(CONTRACTS))
def test_imports_follow_the_layers(contract):
    files, forbidden, allowed = CONTRACTS[contract]
    assert files, f"no source files found for {contract!r}"
    bad = violations(files, forbidden, allowed)
    assert not bad, f"{contract}; found:\n" + "\n".join(bad)


def test_the_checker_sees_imports_inside_functions_and_relative_ones():
    """The check itself can fail: imports hidden in a function, relative ones and `from labeler
    import taxonomy` in models are all caught."""
    source = ("def f():\n    from labeler import review\n    import store.workspace\n"
              "from . import text\nfrom labeler import taxonomy\n")
    modules = [m for _, m in modules_in(source, "models")]
    assert {"labeler.review", "store.workspace", "models.text", "labeler.taxonomy"} <= set(modules)
    _, forbidden, allowed = CONTRACTS["labeler's domain and taxonomy import no labeler service or interface"]
    # in labeler/domain.py the same lines break the bottom rule by review and the relative `text`, not taxonomy
    assert {m for _, m in modules_in(source, "labeler")
            if m.split(".")[0] in forbidden and m not in allowed} == {"labeler.review", "labeler.text"}
