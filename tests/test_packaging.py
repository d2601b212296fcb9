"""The project is an installable package: nothing edits the import path, the benches, experiments
and docs import the package (never tests/), every performance bench has a --quick mode (what CI
runs) and every experiment still starts. Issue 17, item 5."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("tests", "bench", "experiments", "docs", "labeler", "models", "store")
# written in pieces so that this file does not match itself
PATH_EDIT = re.compile("sys" + r"\s*\.\s*path\s*(\.\s*(insert|append|extend)\s*\(|\[[^\]]*\]\s*=|\+=|=[^=])"
                       + "|site" + r"\s*\.\s*addsitedir")
TEST_MODULES = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"tests"}


def sources(*folders: str) -> list[Path]:
    files = [p for f in folders for p in sorted((ROOT / f).rglob("*.py"))]
    return [p for p in files if "__pycache__" not in p.parts]


def test_no_module_edits_the_import_path():
    """Tests find the package through pytest's rootdir (pytest.ini `pythonpath`) or the installed
    package; benches, experiments and docs run from the project folder as `python -m ...`."""
    edits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
             for p in sources(*CHECKED) + [ROOT / "launch.py"]
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if PATH_EDIT.search(line)]
    assert not edits, "import path edited:\n" + "\n".join(edits)


def test_benches_experiments_and_docs_do_not_import_the_tests():
    found = []
    for p in sources("bench", "experiments", "docs"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), str(p))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{p.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in TEST_MODULES]
    assert not found, "imports from tests/:\n" + "\n".join(found)


def _modules(folder: str) -> list[str]:
    return [f"{folder}.{p.stem}" for p in sorted((ROOT / folder).glob("*.py"))
            if p.stem not in ("__init__", "common")]


# each module run as `python -m MODULE --help` would run it, one after the other in one interpreter
# (the heavy imports, torch and scikit-learn, are paid once): {module: [exit code or error, stdout]}
HELP_ALL = """
import contextlib, io, json, runpy, sys
out = {}
for module in sys.argv[1:]:
    sys.argv, buf, code = [module, "--help"], io.StringIO(), None
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:
        code = repr(exc)
    out[module] = [code, buf.getvalue()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def helps() -> dict[str, tuple[object, str]]:
    """`--help` of every bench and experiment, run from the project folder as the README runs them."""
    modules = _modules("bench") + _modules("experiments")
    run = subprocess.run([sys.executable, "-c", HELP_ALL, *modules], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 0, run.stderr[-3000:]
    return {m: tuple(v) for m, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.parametrize("module", _modules("bench"))
def test_every_performance_bench_has_a_quick_mode(helps, module):
    code, usage = helps[module]
    assert code == 0, f"{module} --help: {code}"
    assert "--quick" in usage, f"{module} --help does not offer --quick:\n{usage}"


@pytest.mark.parametrize("module", _modules("experiments"))
def test_every_experiment_still_starts(helps, module):
    code, usage = helps[module]
    assert code == 0 and "usage:" in usage, f"{module} --help: {code}"


def test_the_screenshot_script_imports():
    run = subprocess.run([sys.executable, "-c", "import docs.make_screenshots"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
