"""The CLI end to end on a small subset of the real sample, and its user-error paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from labeler import taxonomy
from labeler.cli import main
from labeler.cli.catalog import export_index
from labeler.cli.predict import prediction_frame
from labeler.training import live_bundle
from store import Workspace

ROOT = Path(__file__).resolve().parent.parent
X_NAME, Y_NAME = "X_train_update.csv", "Y_train_CVw08PX.csv"


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result


class _ws:
    """An existing workspace, closed after use."""

    def __init__(self, path: Path):
        self.ws = Workspace(path, create=False)

    def __enter__(self) -> Workspace:
        return self.ws

    def __exit__(self, *exc) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def subset(sample_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """A train split (up to 10 products per category) and a held-out split (60 products), written
    in the challenge layout with their original index; images stay in the shared folder."""
    out = tmp_path_factory.mktemp("subset")
    x = pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False)
    y = pd.read_csv(sample_dir / Y_NAME, index_col=0)
    rng = np.random.default_rng(0)
    titled = y[(x["designation"].str.strip() != "").to_numpy()]
    train_idx = np.concatenate([rng.permutation(g.index.to_numpy())[:10] for _, g in titled.groupby("prdtypecode")])
    rest = y.index.difference(train_idx)
    test_idx = rng.choice(rest.to_numpy(), 60, replace=False)
    test_idx = np.concatenate([test_idx, x.index[x["designation"].str.strip() == ""].astype(int)[:1]])
    paths = {}
    for name, idx in (("train", np.sort(train_idx)), ("test", np.sort(np.unique(test_idx)))):
        x.loc[idx.astype(str)].to_csv(paths.setdefault(f"x_{name}", out / f"X_{name}.csv"))
        y.loc[idx].to_csv(paths.setdefault(f"y_{name}", out / f"Y_{name}.csv"))
    paths["images"] = sample_dir / "images" / "image_train"
    paths["root"] = out
    return paths


@pytest.fixture(scope="module")
def trained(subset) -> Path:
    ws = subset["root"] / "ws"
    out = run("import", "--workspace", ws, "--texts", subset["x_train"], "--labels", subset["y_train"],
              "--images", subset["images"]).stdout
    assert "imported" in out and str(ws.resolve()) in out
    out = run("train", "--workspace", ws, "--no-cv").stdout
    assert "(live)" in out and "model saved to" in out
    return ws


def test_every_command_has_help():
    assert "Usage" in run("--help").stdout
    for name, command in main.commands.items():
        out = run(name, "--help").stdout
        assert command.help and len(command.help.split()) > 5, name
        if name == "users":         # the auth file's reviewers: no workspace, an --auth FILE instead
            for sub, subcommand in command.commands.items():
                assert "--auth" in run(name, sub, "--help").stdout and len(subcommand.help.split()) > 5, sub
            continue
        if hasattr(command, "commands"):  # a group (adjudicate list / rule): each subcommand takes the workspace
            for sub, subcommand in command.commands.items():
                assert "--workspace" in run(name, sub, "--help").stdout and len(subcommand.help.split()) > 5, sub
            continue
        assert "Usage" in out and "--workspace" in out, name


def test_import_summary_and_idempotence(trained, subset):
    with _ws(trained) as ws:
        assert ws.count_products() == 270
    out = run("import", "--workspace", trained, "--texts", subset["x_train"], "--labels", subset["y_train"],
              "--images", subset["images"]).stdout
    assert "already present  270" in out and "imported         0" in out
    assert "nothing new" in out


def test_predict_evaluate_export(trained, subset, tmp_path):
    preds = tmp_path / "out" / "preds.csv"
    result = run("predict", "--workspace", trained, "--texts", subset["x_test"], "--images", subset["images"],
                 "--out", preds)
    assert str(preds.resolve()) in result.output
    assert "not predicted" not in result.stderr     # the row without a title has a photo: predicted from it
    frame = pd.read_csv(preds, dtype={"productid": str, "row": str})
    with _ws(trained) as ws:
        has_image_model = live_bundle(ws).image is not None
    text_columns = (["productid"] + [f"pred_{i}" for i in range(1, 6)] + [f"prob_{i}" for i in range(1, 6)]
                    + ["text_pred", "text_prob"])
    assert list(frame.columns[:13]) == text_columns and frame.columns[-1] == "row"
    honest = ["auto_accept", "auto_accept_threshold", "pred_set", "pred_set_size"]   # from the version's guarantees
    assert list(frame.columns[-5:-1]) == honest
    image_columns = list(frame.columns[13:-5])
    if has_image_model:   # the subset has enough labelled images: the ensemble's columns follow
        assert image_columns[:2] == ["image_pred", "image_prob"] and image_columns[-1] == "disagreement"
        assert len(image_columns) == 2 + 2 * 3 + 1          # image vote, three voters, disagreement
    else:
        assert image_columns == []
    x_test = pd.read_csv(subset["x_test"], index_col=0, dtype=str, keep_default_na=False)
    assert len(frame) == len(x_test) == 61
    assert list(frame["row"]) == list(x_test.index)
    probs = frame[[f"prob_{i}" for i in range(1, 6)]].to_numpy()
    assert (np.diff(probs, axis=1) <= 0).all() and (probs[:, 0] > 0).all()
    assert set(frame["pred_1"]) <= set(taxonomy.codes())
    if not has_image_model:
        assert (frame["pred_1"] == frame["text_pred"]).all()    # no image model: fused = text

    # evaluate from the predictions file, figures checked against an independent computation
    reports = tmp_path / "reports"
    out = run("evaluate", "--workspace", trained, "--predictions", preds, "--labels", subset["y_test"],
              "--out-dir", reports, "--threshold", "0.5").stdout
    y = pd.read_csv(subset["y_test"], index_col=0)
    truth = y.loc[frame["row"].astype(int), "prdtypecode"].to_numpy()
    accuracy = float((truth == frame["pred_1"]).mean())
    auto = frame["prob_1"].to_numpy() >= 0.5
    summary = json.loads((reports / "evaluation.json").read_text())
    assert summary["n"] == 61 and summary["accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert summary["automation"]["coverage"] == pytest.approx(auto.mean(), abs=1e-4)
    assert summary["automation"]["precision"] == pytest.approx(float((truth[auto] == frame["pred_1"][auto]).mean()),
                                                               abs=1e-4)
    assert accuracy > 0.4                                      # 270 training products, 27 categories
    assert f"accuracy             {accuracy:.4f}" in out and "weighted F1" in out and "macro F1" in out
    assert taxonomy.name(int(truth[0])) in out
    with Image.open(reports / "confusion_matrix.png") as png:
        assert png.format == "PNG" and png.size[0] > 500
    per_class = pd.read_csv(reports / "per_class.csv")
    assert per_class["support"].sum() == 61

    # evaluate straight from X/Y gives the same figures
    out2 = run("evaluate", "--workspace", trained, "--texts", subset["x_test"], "--images", subset["images"],
               "--labels", subset["y_test"], "--out-dir", tmp_path / "reports2", "--threshold", "0.5").stdout
    assert json.loads((tmp_path / "reports2" / "evaluation.json").read_text()) == summary
    assert out2.splitlines()[:6] == out.splitlines()[:6]

    # export: Y layout keyed by the original index, a reviewer's correction wins, decisions logged
    with _ws(trained) as ws:
        pid = ws.products()[0]["id"]
        ws.record_decision(pid, "ana", "correct", category=1940)
        rows = {p["id"]: p["source_row"] for p in ws.products()}
    export_dir = tmp_path / "export"
    out = run("export", "--workspace", trained, "--out", export_dir).stdout
    assert str((export_dir / "Y_labels.csv").resolve()) in out
    exported = pd.read_csv(export_dir / "Y_labels.csv", index_col=0)
    y_train = pd.read_csv(subset["y_train"], index_col=0)
    assert list(exported.columns) == ["prdtypecode"] and len(exported) == 270
    expected = y_train["prdtypecode"].copy()
    expected.loc[int(rows[pid])] = 1940
    assert exported["prdtypecode"].sort_index().equals(expected.sort_index())
    ids = pd.read_csv(export_dir / "products.csv", dtype={"productid": str})
    assert dict(zip(ids["productid"], ids["index"].astype(str))) == rows
    decisions = [json.loads(line) for line in (export_dir / "decisions.jsonl").read_text().splitlines()]
    assert [(d["product_id"], d["action"], d["category"]) for d in decisions] == [(pid, "correct", 1940)]
    reviewed = run("export", "--workspace", trained, "--out", tmp_path / "export2", "--reviewed-only").stdout
    assert "(1 products, 1 reviewed)" in reviewed


# -- user errors: one line on stderr, non-zero exit, no traceback -----------------------------
def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_user_errors(trained, subset, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "X_wrong.csv"
    wrong.write_text(",title,productid\n0,Chaise,1\n", encoding="utf-8")
    cases = [
        (["import", "-w", tmp_path / "ws1", "--texts", tmp_path / "missing.csv"], ["missing.csv not found"]),
        (["import", "-w", tmp_path / "ws1", "--texts", wrong], ["X_wrong.csv", "found columns [<unnamed index>, "
                                                                "title, productid]", "expected ["]),
        (["train", "-w", tmp_path / "nowhere"], ["does not exist", "import"]),
        (["train", "-w", empty], ["has no products"]),
        (["export", "-w", empty, "--out", tmp_path / "e"], ["has no products"]),
        (["predict", "-w", empty, "--texts", subset["x_test"], "--out", tmp_path / "p.csv"], ["no trained model"]),
        (["predict", "-w", trained, "--texts", subset["x_test"], "--out", tmp_path / "p.csv",
          "--model-version", "v999"], ["unknown model version 'v999'", "known: v001"]),
        (["evaluate", "-w", trained, "--predictions", wrong, "--labels", subset["y_test"]],
         ["does not look like predictions", "missing pred_1, prob_1, row"]),
        (["evaluate", "-w", trained, "--predictions", tmp_path / "none.csv", "--labels", subset["y_test"]],
         ["none.csv not found"]),
    ]
    for args, fragments in cases:
        assert_user_error(run(*args, ok=False), *fragments)
    assert not (tmp_path / "ws1" / "workspace.db").exists() or Workspace(tmp_path / "ws1").count_products() == 0


def test_real_subprocess_user_error_and_help(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "labeler", "train", "--workspace", str(tmp_path / "nope")],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"Error: workspace {tmp_path / 'nope'} does not exist; "
                                                "run `python -m labeler import` first"]
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "labeler", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "import" in proc.stdout and "evaluate" in proc.stdout


# -- pure helpers -----------------------------------------------------------------------------
def test_prediction_frame_with_image_outputs():
    codes = taxonomy.codes()
    n = 3
    text = np.full((n, 27), 0.01); text[:, 0] = 0.74          # text says category codes[0] everywhere
    image = np.full((n, 27), 0.02); image[:, 1] = 0.48        # image says codes[1]
    voter = np.full((n, 27), 0.0); voter[:, 2] = 1.0
    fused = (text + image) / 2
    out = {"text": text, "image": image, "voters": {"effnet_b0": voter}, "has_image": np.array([True, False, True]),
           "fused": fused}
    products = pd.DataFrame({"id": ["a", "b", "c"], "row": ["7", "8", "9"]})
    frame = prediction_frame(products, out)
    assert list(frame.columns) == (["productid"] + [f"pred_{i}" for i in range(1, 6)] + [f"prob_{i}" for i in range(1, 6)]
                                   + ["text_pred", "text_prob", "image_pred", "image_prob", "effnet_b0_pred",
                                      "effnet_b0_prob", "disagreement", "auto_accept", "auto_accept_threshold",
                                      "row"])
    assert list(frame["pred_1"]) == [codes[0]] * 3 and list(frame["pred_2"]) == [codes[1]] * 3
    assert frame["prob_1"].iloc[0] == pytest.approx(0.38)
    assert frame["image_pred"].isna().tolist() == [False, True, False]
    assert frame["effnet_b0_pred"].iloc[2] == codes[2] and pd.isna(frame["effnet_b0_prob"].iloc[1])
    assert list(frame["disagreement"]) == [1, 0, 1]
    # no calibration in the output (a version trained before guarantees): the fixed 0.80, nothing reaches it
    assert list(frame["auto_accept"]) == [0, 0, 0] and list(frame["auto_accept_threshold"]) == [0.8] * 3


def test_export_index_keeps_unique_numeric_rows():
    products = [{"source_row": "5"}, {"source_row": None}, {"source_row": "2"}, {"source_row": "5"},
                {"source_row": "x"}]
    assert export_index(products) == [5, 6, 2, 7, 8]


def test_export_neutralises_formula_cells_in_csv_and_keeps_jsonl_as_stored(tmp_path):
    from labeler.importer import import_plain_csv
    ids = ["=HYPERLINK(\"http://evil.example\",\"x\")", "@SUM(1+1)", "+33612345678", "-5", "1001"]
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame({"id": ids, "title": [f"Produit {i}" for i in range(len(ids))], "label": 2583}).to_csv(
        catalog, index=False)
    ws = Workspace(tmp_path / "ws")
    assert import_plain_csv(ws, catalog).imported == len(ids)
    ws.record_decision(ids[0], "=cmd|' /C calc'!A0", "correct", category=10, comment="-2+3+cmd")
    ws.close()
    run("export", "--workspace", tmp_path / "ws", "--out", tmp_path / "out")
    products = pd.read_csv(tmp_path / "out" / "products.csv", dtype=str, keep_default_na=False)
    assert list(products["productid"]) == ["'" + i for i in ids[:-1]] + ["1001"]
    assert list(products["prdtypecode"]) == ["10"] + ["2583"] * 4        # numbers stay numbers
    raw = (tmp_path / "out" / "products.csv").read_text(encoding="utf-8")
    assert not any(line.split(",")[1].startswith(("=", "+", "-", "@")) for line in raw.splitlines()[1:])
    decision = json.loads((tmp_path / "out" / "decisions.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert decision["product_id"] == ids[0] and decision["reviewer"] == "=cmd|' /C calc'!A0"
    assert decision["comment"] == "-2+3+cmd"


def test_predictions_read_back_undo_the_formula_quote(tmp_path):
    from labeler.cli.predict import read_predictions
    from labeler.csvsafe import neutralise, neutralise_frame
    assert [neutralise(v) for v in ("\tcmd", "\rcmd", "a=b", "", 5, -5)] == ["'\tcmd", "'\rcmd", "a=b", "", 5, -5]
    frame = pd.DataFrame({"productid": ["-7", "=1", "42"], "pred_1": [10, 10, 10], "prob_1": [0.5, 0.5, 0.5],
                          "row": ["-1", "3", "4"]})
    neutralise_frame(frame).to_csv(tmp_path / "p.csv", index=False)
    assert (tmp_path / "p.csv").read_text().splitlines()[1].startswith("'-7,")
    back = read_predictions(tmp_path / "p.csv")
    assert list(back["productid"]) == ["-7", "=1", "42"] and list(back["row"]) == ["-1", "3", "4"]


def test_predict_and_versions_work_on_a_read_only_workspace(trained, subset, tmp_path):
    import hashlib
    import shutil
    from readonly_workspace import read_only
    copy = tmp_path / "ws"
    shutil.copytree(trained, copy)
    db = copy / "workspace.db"
    with read_only(copy, "file"):
        before = hashlib.sha256(db.read_bytes()).hexdigest()
        preds = tmp_path / "preds.csv"
        result = run("predict", "--workspace", copy, "--texts", subset["x_test"], "--images", subset["images"],
                     "--out", preds)
        assert str(preds.resolve()) in result.output and len(pd.read_csv(preds)) == 61
        with _ws(trained) as ws:
            live = ws.live_version()
        assert live in run("versions", "--workspace", copy).stdout
        refused = run("retrain", "--workspace", copy, ok=False)
        assert refused.exit_code == 1 and "read-only" in refused.stderr and str(db) in refused.stderr
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_pyproject_console_script_points_at_the_cli():
    """`labeler import ...` after `pip install -e .` runs the same click group as `python -m labeler`."""
    import importlib
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    module, _, attr = meta["project"]["scripts"]["labeler"].partition(":")
    group = getattr(importlib.import_module(module), attr)
    from labeler.cli import main
    assert group is main
    assert {"import", "train", "predict", "export", "backup", "users"} <= set(main.commands)
