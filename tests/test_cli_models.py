"""The model-loop commands (retrain, versions, rollback, label-issues) on a small real workspace."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from labeler.cli import main
from store import Workspace


def run(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def ws_dir(sample_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-models")
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)
    x = x[x["designation"].fillna("").str.strip() != ""]
    idx = y.loc[x.index].sample(frac=1.0, random_state=3).groupby("prdtypecode").head(6).index.sort_values()
    x.loc[idx].to_csv(out / "X.csv")
    y.loc[idx].to_csv(out / "Y.csv")
    ws = out / "ws"
    run("import", "-w", ws, "--texts", out / "X.csv", "--labels", out / "Y.csv")
    run("train", "-w", ws, "--no-cv")
    return ws


def test_retrain_versions_and_rollback_from_the_command_line(ws_dir, tmp_path):
    out = run("retrain", "-w", ws_dir).output
    assert "Retrained:" in out and "(live)" in out and "model saved to" in out
    assert "compared on" in out and "out-of-fold" in out and "in-sample" not in out
    assert str((ws_dir / "workspace.db").resolve()) in out
    ws = Workspace(ws_dir, create=False)
    first, second = [v["id"] for v in ws.model_versions()]
    assert ws.live_version() == second

    table = run("versions", "-w", ws_dir).output
    live_rows = [line for line in table.splitlines() if line.startswith("*")]
    assert len(live_rows) == 1 and second in live_rows[0] and "in-sample" not in live_rows[0]
    assert f"{second}: 0 decisions since {first}" in table and "run 1 succeeded (cli" in table
    as_json = json.loads(run("versions", "-w", ws_dir, "--json").output)
    assert [v["id"] for v in as_json["versions"]] == [first, second]
    assert set(as_json["versions"][1]["validation"]) >= {"weighted_f1", "macro_f1", "accuracy"}

    out = run("rollback", "-w", ws_dir).output
    assert f"live         {first}" in out and f"was          {second}" in out
    assert ws.live_version() == first
    assert "already live" in run("rollback", "-w", ws_dir, first).output

    bad = run("rollback", "-w", ws_dir, "v999", ok=False)
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines()[-1].startswith("Error: unknown model version 'v999'; known:")
    nothing = run("rollback", "-w", ws_dir, ok=False)
    assert nothing.exit_code == 1 and "has no parent" in nothing.output
    missing = run("retrain", "-w", tmp_path / "nowhere", ok=False)
    assert missing.exit_code == 1 and "does not exist" in missing.output
    ws.close()


def test_label_issues_lists_stores_and_exports_flags(ws_dir, tmp_path):
    # `train` already stored the ranking (out-of-fold fused scores): listed without recomputing
    out = run("label-issues", "-w", ws_dir, "--limit", "4", "--out", tmp_path / "issues.csv").stdout
    head = out.splitlines()[0]
    assert "labels flagged" in head and "5-fold confident-learning/oof-fused" in head
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    ranks = [line.split()[0] for line in lines[start + 1:start + 5]]
    assert ranks == ["1", "2", "3", "4"]
    with (tmp_path / "issues.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    labelled = len(Workspace(ws_dir, create=False).current_labels())
    assert len(rows) == labelled                      # every labelled product is ranked, not only flagged ones
    own = [float(r["given_prob"]) for r in rows]
    assert own == sorted(own)                         # least probable own label first
    assert 0 < sum(r["flagged"] == "1" for r in rows) < labelled
    assert all(r["given_label"] != r["suggested"] for r in rows)
    assert "table label_issues" in out and str((tmp_path / "issues.csv").resolve()) in out
    # --refresh recomputes with the text model alone
    again = run("label-issues", "-w", ws_dir, "--limit", "1", "--refresh", "--folds", "2").stdout
    assert "2-fold" in again.splitlines()[0]
