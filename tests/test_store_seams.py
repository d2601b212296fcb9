"""Issue 17, model side: the store owns the SQL, one audited way to move the live version, one F1,
a CLI without import cycles. Real SQLite files, real training on the Rakuten sample."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from labeler.cli import main
from store import Workspace, WorkspaceError

ROOT = Path(__file__).resolve().parent.parent

# Everything outside store/ that the package runs: no SQL text (the store's named operations hold it).
OUTSIDE_STORE = sorted([*(ROOT / "labeler").rglob("*.py"), *(ROOT / "models").rglob("*.py"), ROOT / "launch.py"])
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|BEGIN|PRAGMA|WITH)\b")


def test_no_sql_text_outside_the_store():
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in OUTSIDE_STORE
             for n, line in enumerate(path.read_text().splitlines(), 1) if SQL.search(line)]
    assert (ROOT / "labeler" / "cli" / "__init__.py").exists() and len(OUTSIDE_STORE) > 50
    assert found == []


def _module_imports(path: Path, known: set[str]) -> set[str]:
    """Modules of `known` imported at module level (function-level imports run late, not at import)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs
            if len(subs) < len(node.names):
                out.add(node.module)
    return out & known


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_cli_modules_import_no_cycle_and_launch_does_not_borrow_the_cli():
    files = {_name(p): p for p in (ROOT / "labeler").rglob("*.py")}
    graph = {m: _module_imports(p, set(files)) for m, p in files.items()}

    def reaches(start: str, goal: str) -> bool:
        todo, seen = list(graph[start]), set()
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    cli = [m for m in files if m == "labeler.cli" or m.startswith("labeler.cli")]
    assert "labeler.cli.common" in cli
    assert [m for m in cli if reaches(m, m)] == []
    assert not [m for m in cli if m != "labeler.cli" and reaches(m, "labeler.cli")]   # commands never import main
    launch = _module_imports(ROOT / "launch.py", set(files))
    assert "labeler.console" in launch and not [m for m in launch if m.startswith("labeler.cli")]


def test_the_one_f1_of_the_labeler_is_hand_checkable():
    from labeler.evaluation import scores, stored_metrics
    # class 1: precision 1, recall 1/2, F1 2/3; class 2: precision 2/3, recall 1, F1 4/5
    assert scores([1, 1, 2, 2], [1, 2, 2, 2]) == {"accuracy": 0.75, "weighted_f1": 0.7333, "macro_f1": 0.7333}
    rows = [{"product_id": "a", "top1": 1, "voters": {"text": [[1, 0.9]]}, "source": "out-of-fold"},
            {"product_id": "b", "top1": 2, "voters": {"text": [[1, 0.6]]}, "source": "out-of-fold"},
            {"product_id": "c", "top1": 2, "voters": {"text": [[2, 0.7]]}, "source": None},
            {"product_id": "d", "top1": 2, "voters": {"text": [[2, 0.8]]}, "source": "out-of-fold"},
            {"product_id": "z", "top1": 1, "voters": {}, "source": "out-of-fold"}]        # not labelled: ignored
    metrics, in_sample = stored_metrics(rows, {"a": 1, "b": 1, "c": 2, "d": 2})
    assert in_sample and metrics == {"weighted_f1": 0.7333, "macro_f1": 0.7333, "accuracy": 0.75,
                                     "text_weighted_f1": 1.0, "n": 4, "out_of_fold": 3}
    labeler_files = [p for p in (ROOT / "labeler").rglob("*.py") if p.name != "evaluation.py"]
    assert [str(p) for p in labeler_files if "f1_score" in p.read_text()] == []


# -- the live pointer ---------------------------------------------------------------------------
def _versions(ws: Workspace, tmp_path: Path) -> tuple[str, str]:
    v1, v2 = "v001-a", "v002-b"
    ws.register_model_version(v1, tmp_path / "v1", make_live=False)
    ws.register_model_version(v2, tmp_path / "v2", parent=v1, make_live=False)
    return v1, v2


def test_every_store_path_that_moves_the_live_version_writes_its_history(workspace, tmp_path):
    v1, v2 = _versions(workspace, tmp_path)
    assert workspace.live_history() == [] and workspace.live_version() is None
    workspace.set_live_version(v1)                                  # the older names, same audited path
    workspace.register_model_version("v003-c", tmp_path / "v3", parent=v2)     # registered live
    assert [(h["version"], h["previous"]) for h in workspace.live_history()] == [("v003-c", v1), (v1, None)]
    from store import versions
    assert versions.set_live(workspace, v2, "ada", "reads titles better", reason="rollback") == "v003-c"
    history = [(h["version"], h["previous"], h["who"], h["why"]) for h in reversed(workspace.live_history())]
    assert history == [(v1, None, "", ""), ("v003-c", v1, "", ""), (v2, "v003-c", "ada", "reads titles better")]
    workspace.write(lambda c: c.execute("UPDATE model_versions SET status = 'failed' WHERE id = ?", (v1,)))
    with pytest.raises(WorkspaceError, match=f"{v1} is failed"):
        versions.set_live(workspace, v1, "ada", "back")
    with pytest.raises(WorkspaceError, match="unknown model version 'nope'.*known: v001-a, v002-b, v003-c"):
        versions.set_live(workspace, "nope", "ada", "")
    assert workspace.live_version() == v2 and len(workspace.live_history()) == 3   # nothing written


@pytest.fixture(scope="module")
def small_catalog(sample_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seams")
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)
    x = x[x["designation"].fillna("").str.strip() != ""]
    idx = y.loc[x.index].sample(frac=1.0, random_state=5).groupby("prdtypecode").head(5).index.sort_values()
    x.loc[idx].to_csv(out / "X.csv")
    y.loc[idx].to_csv(out / "Y.csv")
    return out


def test_train_and_the_training_service_record_who_and_why_in_live_history(small_catalog, tmp_path):
    from labeler import training
    ws_dir = tmp_path / "ws"
    run = CliRunner().invoke(main, ["import", "-w", str(ws_dir), "--texts", str(small_catalog / "X.csv"),
                                    "--labels", str(small_catalog / "Y.csv")])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(main, ["train", "-w", str(ws_dir), "--by", "ada", "--notes", "first model"])
    assert run.exit_code == 0, run.output
    ws = Workspace(ws_dir)
    (first,) = ws.live_history()
    assert (first["version"], first["who"], first["why"], first["reason"]) == (ws.live_version(), "ada",
                                                                               "first model", "train")
    # the training service's own default (make it live) goes through the same audited path
    second = training.train_version(ws, evaluate=False, notes="again")["id"]
    latest = ws.live_history()[0]
    assert ws.live_version() == second and (latest["version"], latest["previous"]) == (second, first["version"])
    ws.close()

