"""Label Studio and Parquet interop on real workspaces (the sample's products, a really trained model).

Round trip: `export --format labelstudio` from one workspace, `import --labelstudio` into a fresh
workspace holding the same products, same labels by the same reviewers.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from click.testing import CliRunner

from review_workspace import copy_workspace

from labeler import review, taxonomy
from labeler.cli import main
from store.workspace import Workspace


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def rws(sample_dir, tmp_path):
    ws = Workspace(copy_workspace(sample_dir, tmp_path / "ws"))
    yield ws
    ws.close()


@pytest.fixture
def fresh(sample_dir, tmp_path):
    """The same products, no model, no decision."""
    ws = Workspace(copy_workspace(sample_dir, tmp_path / "fresh", train=False))
    yield ws
    ws.close()


def _decide_some(ws: Workspace) -> dict[str, tuple[str, int]]:
    """Three reviewers decide real cards: accepts, corrections, one skip; returns product -> (who, label)."""
    done: dict[str, tuple[str, int]] = {}
    codes = taxonomy.codes()
    for i in range(9):
        who = ["alice", "bob", "chloé"][i % 3]
        card = review.next_card(ws, who)
        if i == 4:
            review.decide(ws, who, card.product_id, "skip")
            continue
        if i % 2:
            cat = next(c for c in codes if c != card.prediction.top1)
            review.decide(ws, who, card.product_id, "correct", category=cat)
        else:
            cat = card.prediction.top1
            review.decide(ws, who, card.product_id, "accept")
        done[card.product_id] = (who, cat)
    return done


def test_labelstudio_export_holds_data_top5_predictions_and_reviewers_annotations(rws, tmp_path):
    decided = _decide_some(rws)
    res = cli("export", "--workspace", rws.root, "--out", tmp_path / "out", "--format", "labelstudio")
    assert res.exit_code == 0, res.output
    tasks = json.loads((tmp_path / "out" / "labelstudio_tasks.json").read_text(encoding="utf-8"))
    assert len(tasks) == rws.count_products()
    live = rws.live_version()
    by_pid = {t["data"]["product_id"]: t for t in tasks}
    some = next(t for t in tasks if "image" in t["data"])
    product = rws.product(some["data"]["product_id"])
    assert some["data"]["title"] == product["title"] and some["data"]["image"] == product["image_path"]
    assert some["data"]["text"].startswith(product["title"])
    preds = some["predictions"]
    stored = rws.prediction(product["id"])
    assert len(preds) == 5 and all(p["model_version"] == live for p in preds)
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
    first = preds[0]["result"][0]
    assert first["type"] == "choices" and first["from_name"] == "category" and first["to_name"] == "text"
    assert first["value"]["choices"] == [taxonomy.by_code()[stored["top1"]].label]
    for pid, (who, cat) in decided.items():
        (ann,) = by_pid[pid]["annotations"]
        assert ann["completed_by"] == who
        assert ann["result"][0]["value"]["choices"] == [taxonomy.by_code()[cat].label]
    assert sum(len(t["annotations"]) for t in tasks) == len(decided)
    config = ET.fromstring((tmp_path / "out" / "labelstudio_config.xml").read_text(encoding="utf-8"))
    values = [c.get("value") for c in config.iter("Choice")]
    assert len(values) == 27 and values[0] == taxonomy.categories()[0].label
    assert config.find("Choices").get("name") == "category" and config.find("Choices").get("toName") == "text"


def test_labelstudio_round_trip_gives_the_same_labels_by_the_same_reviewers(rws, fresh, tmp_path):
    decided = _decide_some(rws)
    assert cli("export", "-w", rws.root, "--out", tmp_path / "out", "--format", "labelstudio").exit_code == 0
    path = tmp_path / "out" / "labelstudio_tasks.json"
    res = cli("import", "-w", fresh.root, "--labelstudio", path)
    assert res.exit_code == 0, res.output
    assert "decisions imported" in res.output
    assert fresh.current_labels(reviewed_only=True) == rws.current_labels(reviewed_only=True)
    assert fresh.current_labels() == rws.current_labels()
    rows = fresh.query("SELECT product_id, reviewer, action, category, via, batch_id FROM decisions ORDER BY id")
    assert {r["product_id"]: (r["reviewer"], r["category"]) for r in rows} == decided
    assert {r["via"] for r in rows} == {"labelstudio"} and len({r["batch_id"] for r in rows}) == 1
    assert {r["action"] for r in rows} == {"correct"}      # no model in the fresh workspace: nothing to accept
    # importing the same file again adds nothing
    again = cli("import", "-w", fresh.root, "--labelstudio", path)
    assert again.exit_code == 0 and fresh.scalar("SELECT count(*) FROM decisions") == len(decided)
    # the import is one batch: undo-batch takes all of it back
    undo = cli("undo-batch", "-w", fresh.root, rows[0]["batch_id"])
    assert undo.exit_code == 0, undo.output
    assert fresh.current_labels(reviewed_only=True) == {}


def test_labelstudio_import_into_the_same_workspace_is_already_present(rws, tmp_path):
    _decide_some(rws)
    n = rws.scalar("SELECT count(*) FROM decisions")
    assert cli("export", "-w", rws.root, "--out", tmp_path / "out", "--format", "labelstudio").exit_code == 0
    res = cli("import", "-w", rws.root, "--labelstudio", tmp_path / "out" / "labelstudio_tasks.json")
    assert res.exit_code == 0 and rws.scalar("SELECT count(*) FROM decisions") == n


def test_labelstudio_file_that_is_not_json_is_one_line(rws, tmp_path):
    bad = tmp_path / "export.json"
    bad.write_text("id,annotation\n1,Piscine\n", encoding="utf-8")
    res = cli("import", "-w", rws.root, "--labelstudio", bad)
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "export.json: not JSON" in lines[0] and "Traceback" not in res.output
    assert rws.scalar("SELECT count(*) FROM decisions") == 0


def test_bad_labelstudio_tasks_are_named_one_line_each_and_the_good_ones_imported(rws, tmp_path):
    products = [p["id"] for p in rws.query("SELECT id FROM products ORDER BY rowid LIMIT 4")]
    good_code = taxonomy.codes()[3]

    def task(tid, pid, result, who="dana"):
        return {"id": tid, "data": {"product_id": pid, "text": "t"},
                "annotations": [{"id": tid * 10, "completed_by": who, "result": result}]}

    def choice(value):
        return [{"from_name": "category", "to_name": "text", "type": "choices", "value": {"choices": [value]}}]

    tasks = [
        task(1, products[0], choice(taxonomy.by_code()[good_code].label)),
        task(2, products[1], [{"from_name": "box", "to_name": "image", "type": "rectanglelabels",
                               "value": {"rectanglelabels": ["x"]}}]),
        task(3, products[2], choice("Chaussures de ski")),
        task(4, "no-such-product", choice(str(good_code))),
        task(5, products[3], choice(str(good_code)), who={"id": 7, "email": "erin@example.com"}),
        {"id": 6, "data": {"product_id": products[3]}, "annotations": []},
    ]
    path = tmp_path / "project.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    res = cli("import", "-w", rws.root, "--labelstudio", path)
    assert res.exit_code == 0, res.output
    problems = [line for line in res.output.splitlines() if line.startswith("project.json: task")]
    assert len(problems) == 3, res.output
    assert "task 2" in problems[0] and "no 'choices'" in problems[0] and "rectanglelabels" in problems[0]
    assert "task 3" in problems[1] and "unknown category 'Chaussures de ski'" in problems[1]
    assert "task 4" in problems[2] and "'no-such-product' is not in workspace" in problems[2]
    rows = rws.query("SELECT product_id, reviewer, category FROM decisions ORDER BY id")
    assert [(r["product_id"], r["reviewer"], r["category"]) for r in rows] == [
        (products[0], "dana", good_code), (products[3], "erin@example.com", good_code)]


def test_parquet_export_one_row_per_product_readable_by_pandas(rws, tmp_path):
    decided = _decide_some(rws)
    undone = review.undo(rws, "alice")["undone"]
    decided.pop(undone["product_id"])
    res = cli("export", "-w", rws.root, "--out", tmp_path / "out", "--format", "parquet")
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(tmp_path / "out" / "catalog.parquet")
    assert len(df) == rws.count_products() and df["product_id"].is_unique
    labels = rws.current_labels()
    assert dict(zip(df["product_id"], df["label"].astype(int))) == labels
    row = df.set_index("product_id").loc[next(iter(decided))]
    assert bool(row["reviewed"]) and row["label"] == decided[next(iter(decided))][1]
    assert [d["reviewer"] for d in row["decisions"]] == [decided[next(iter(decided))][0]]
    top5 = list(row["top5"])
    assert len(top5) == 5 and top5[0]["prob"] >= top5[-1]["prob"] and row["model_version"] == rws.live_version()
    gone = df.set_index("product_id").loc[undone["product_id"]]
    assert [bool(d["undone"]) for d in gone["decisions"]] == [True] and not gone["reviewed"]
    assert df["image_path"].notna().sum() == rws.scalar("SELECT count(*) FROM products WHERE image_path IS NOT NULL")
