"""Products with a photo but no title, or only a description (issue 16, item 7): imported, trained
on, scored from what they have, served, shown, exported; only a product with neither text nor
image is refused, in one line. Real sample rows and images, a real trained model (one small
image voter), real SQLite files; the migration is checked on a database built at the schema
before it."""
from __future__ import annotations

import json
import sqlite3
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from labeler import cards, importer, interop, queue, retrain, review, taxonomy, training, tryit, views
from labeler.cli import main
from labeler.config import Settings
from labeler.engines import engine
from labeler.importer import import_challenge, import_plain_csv
from labeler.templates import copy_template
from models.image import VOTERS_SETTING
from models.predictor import top_k
from models.text import product_has_text
from store import Workspace, migrations
from store.features import WorkspaceFeatures
from store.seed import checkpoint_and_close
from test_import_limits import write_csv

X_NAME, Y_NAME = "X_train_update.csv", "Y_train_CVw08PX.csv"
VOTERS = json.dumps([{"backbone": "lite0", "head": "logistic", "input_size": 224, "name": "lite0+logistic"}])
CATEGORIES = (2583, 2522, 1300)     # each holds one of the sample's own photo-only products
HEADER = ["", "designation", "description", "productid", "imageid"]


# -- the catalog and its trained workspace ------------------------------------------------------
def build_catalog(sample_dir: Path, out: Path) -> dict:
    """Labelled: the three categories' imaged products (one each held back), their products with
    a photo only (the sample has one in each) and ten text-only ones each. New (no labels): the
    held-back products with their texts removed (photo only), one description-only product, one
    ordinary product, and two with nothing to predict from (empty texts, or only an empty HTML
    paragraph, and no image file): those two must be refused."""
    x = pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False)
    y = pd.read_csv(sample_dir / Y_NAME, index_col=0)
    y.index = y.index.astype(str)
    folder = sample_dir / "images" / "image_train"
    has = {i: (folder / f"image_{r.imageid}_product_{r.productid}.jpg").is_file() for i, r in x.iterrows()}
    titled = x["designation"].str.strip() != ""
    labelled, held, genuine = [], {}, {}
    for c in CATEGORIES:
        members = [i for i in y.index[y["prdtypecode"] == c] if i in x.index]
        imaged = [i for i in members if has[i] and titled[i]]
        held[c] = imaged[0]
        genuine.update({i: c for i in members if not titled[i]})
        labelled += imaged[1:] + [i for i in members if not titled[i]]
        labelled += [i for i in members if not has[i] and titled[i]][:10]
    rest = [i for i in x.index if i not in set(labelled) and not has[i] and titled[i]
            and int(y.loc[i, "prdtypecode"]) in CATEGORIES]
    described = next(i for i in rest if len(x.loc[i, "description"].strip()) > 80)
    rest = [i for i in rest if i != described]
    new = x.loc[list(held.values()) + [described] + rest[:3]].copy()
    new.loc[list(held.values()), ["designation", "description"]] = ""       # photo only
    new.loc[described, "designation"] = ""                                   # description only
    new.loc[rest[1], ["designation", "description"]] = ["", ""]               # nothing at all
    new.loc[rest[2], ["designation", "description"]] = ["   ", "<p>&nbsp;</p>"]   # nothing readable
    x.loc[labelled].to_csv(out / "X_lab.csv")
    y.loc[labelled].to_csv(out / "Y_lab.csv")
    new.to_csv(out / "X_new.csv")
    pid = x["productid"]
    return {"folder": folder, "x_lab": out / "X_lab.csv", "y_lab": out / "Y_lab.csv", "x_new": out / "X_new.csv",
            "photo": [pid[i] for i in held.values()], "photo_category": dict(zip((pid[i] for i in held.values()), CATEGORIES)),
            "genuine": {pid[i]: c for i, c in genuine.items()}, "described": pid[described],
            "description": x.loc[described, "description"], "ordinary": pid[rest[0]],
            "refused": {pid[rest[1]]: 2 + len(held) + 2, pid[rest[2]]: 2 + len(held) + 3}}   # id -> line


@pytest.fixture(scope="module")
def built(sample_dir: Path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("photo_only")
    cat = build_catalog(sample_dir, out)
    ws = Workspace(out / "ws")
    ws.set_setting(VOTERS_SETTING, VOTERS)
    cat["labelled_report"] = import_challenge(ws, cat["x_lab"], cat["y_lab"], cat["folder"])
    cat["new_report"] = import_challenge(ws, cat["x_new"], None, cat["folder"])
    cat["version"] = training.train_version(ws, notes="photo-only test")["id"]
    checkpoint_and_close(ws)
    cat["ws"] = out / "ws"
    return cat


@pytest.fixture
def ws(built):
    w = Workspace(built["ws"])
    yield w
    w.close()


@pytest.fixture
def ws_copy(built, tmp_path):
    w = Workspace(copy_template(built["ws"], tmp_path / "ws"))
    yield w
    w.close()


# -- import ---------------------------------------------------------------------------------------
def test_challenge_import_keeps_photo_and_description_only_and_refuses_empty_rows(built, ws):
    report = built["new_report"]
    assert report.imported == ws.count_products() - built["labelled_report"].imported == 3 + 1 + 1
    refused = {p.line: p for p in report.problems}
    assert set(refused) == set(built["refused"].values()) and report.skipped == 2
    for pid, line in built["refused"].items():
        p = refused[line]
        assert (p.kind, p.field, p.file) == (importer.NOTHING_TO_PREDICT, "designation", str(built["x_new"]))
        assert str(p).startswith(f"X_new.csv line {line} [designation]: product {pid}: no designation, no "
                                 "description and no usable image (no image_<imageid>_product_<productid>.jpg "
                                 f"for it in {built['folder'].resolve()}); give it a designation, a description or an image "
                                 "file (skipped)")
        assert ws.product(pid) is None
    stored = ws.query("SELECT row, field, reason FROM import_problems WHERE batch_id = ?", (report.batch_id,))
    assert sorted(int(r["row"]) for r in stored) == sorted(built["refused"].values())
    for pid in built["photo"]:
        p = ws.product(pid)
        assert p["title"] == "" and p["description"] == "" and p["image_path"] and p["image_sha1"]
    d = ws.product(built["described"])
    assert d["title"] == "" and d["description"] == built["description"] and d["image_path"] is None
    labels = ws.current_labels()
    assert built["labelled_report"].skipped == 0
    assert all(ws.product(pid)["title"] == "" and labels[pid] == c for pid, c in built["genuine"].items())


def test_plain_csv_keeps_photo_and_description_only_and_names_each_refusal(workspace, tmp_path, sample_dir):
    image = next((sample_dir / "images" / "image_train").glob("*.jpg"))
    (tmp_path / "broken.jpg").write_text("not an image at all")
    path = write_csv(tmp_path / "catalog.csv", ["id", "title", "description", "image", "label"], [
        ["p1", "", "", str(image), "2583"],                     # line 2: photo only
        ["p2", "", "Sac à dos <b>rouge</b>, 20 L", "", ""],    # line 3: description only
        ["p3", "  ", "", "", "10"],                             # line 4: nothing
        ["p4", "", "", "broken.jpg", ""],                       # line 5: only a broken image
        ["p5", "", "<br>", "gone.jpg", ""],                     # line 6: only an image that is not there
        ["p6", "Lego City", "", "", "1280"],                    # line 7: an ordinary product
    ])
    report = import_plain_csv(workspace, path)
    assert report.imported == 3 and report.with_image == 1 and report.without_image == 2
    assert report.skipped_by_reason() == {importer.NOTHING_TO_PREDICT: 3}
    assert report.other_problems() == {}           # the image problems are folded into the refusals
    why = {p.line: str(p) for p in report.problems}
    tail = "; give it a title, a description or an image file (skipped)"
    assert why[4] == f"catalog.csv line 4 [title]: product p3: no title, no description and no usable image " \
                     f"(empty image cell){tail}"
    assert why[5].startswith("catalog.csv line 5 [title]: product p4: no title, no description and no usable image (")
    assert "broken.jpg" in why[5] and why[5].endswith(tail)
    assert why[6].endswith(f"(image file {(tmp_path / 'gone.jpg').resolve()} not found){tail}")
    assert sorted(p["id"] for p in workspace.products()) == ["p1", "p2", "p6"]
    assert workspace.product("p1")["title"] == "" and workspace.product("p1")["image_path"] == str(image.resolve())
    assert workspace.product("p2")["title"] == "" and workspace.current_labels()["p1"] == 2583
    stored = workspace.query("SELECT row, field FROM import_problems ORDER BY row")
    assert [(r["row"], r["field"]) for r in stored] == [("4", "title"), ("5", "title"), ("6", "title")]


# -- training and scoring -------------------------------------------------------------------------
def test_a_photo_only_product_is_predicted_by_the_image_model_alone(built, ws):
    bundle = training.live_bundle(ws)
    assert bundle.version == built["version"] and bundle.image is not None and bundle.fusion is not None
    assert bundle.text.describe()["n_without_text"] == len(built["genuine"])   # nothing for the text model
    frame = training.products_frame(ws, built["photo"])
    image = bundle.image.predict_products(frame, feature_store=WorkspaceFeatures(ws), codes=bundle.codes)
    assert image["has_image"].all()
    assert (image["image"].max(axis=1) > 1 / len(CATEGORIES)).all()     # a trained model, not a flat vote
    out = bundle.predict(frame, feature_store=WorkspaceFeatures(ws))
    assert not out["has_text"].any() and out["has_image"].all()
    np.testing.assert_allclose(out["fused"], image["image"], atol=1e-9)
    for i, pid in enumerate(built["photo"]):
        stored = ws.prediction(pid)
        assert stored["source"] == training.ALL_LABELS
        np.testing.assert_allclose(stored["probs"], image["image"][i], atol=1e-6)
        assert "text" not in stored["voters"] and stored["disagreement"] == 0
        assert stored["voters"]["image"] == top_k(image["image"][i], bundle.codes) == stored["top5"]
    # the labelled ones are scored out of fold, from their image vote alone too
    for pid in built["genuine"]:
        stored = ws.prediction(pid)
        assert stored["source"] == training.OUT_OF_FOLD
        assert "text" not in stored["voters"] and stored["top5"] == stored["voters"]["image"]


def test_a_description_only_product_is_read_from_its_description(built, ws):
    bundle = training.live_bundle(ws)
    frame = training.products_frame(ws, [built["described"]])
    assert product_has_text(frame).tolist() == [True]
    read = bundle.text.predict_proba(frame)
    blank = bundle.text.predict_proba(frame.assign(description=""))
    assert np.abs(read - blank).max() > 0.05                       # its words moved the text model
    stored = ws.prediction(built["described"])
    assert "text" in stored["voters"] and "image" not in stored["voters"]
    fused = bundle.predict(frame)["fused"][0]
    np.testing.assert_allclose(stored["probs"], fused, atol=1e-6)


def test_try_it_takes_a_photo_alone_or_a_description_alone(built, ws):
    bundle = training.live_bundle(ws)
    tax = taxonomy.of(ws)
    pred, product = tryit.predict_one(bundle, image_path=ws.product(built["photo"][0])["image_path"], tax=tax)
    assert product["title"] == "" and "text" not in pred.voters
    assert [v.code for v in pred.top5] == [v.code for v in pred.voters["image"]]
    stored = ws.prediction(built["photo"][0])
    assert [v.code for v in pred.top5] == [c for c, _ in stored["top5"]]
    pred, _ = tryit.predict_one(bundle, description=built["description"], tax=tax)
    assert "text" in pred.voters and "image" not in pred.voters


def test_predict_and_the_local_engine_score_them_from_what_they_have(built, tmp_path):
    out = tmp_path / "preds.csv"
    result = CliRunner().invoke(main, ["predict", "--workspace", str(built["ws"]), "--texts", str(built["x_new"]),
                                       "--images", str(built["folder"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"2 rows not predicted ({importer.NOTHING_TO_PREDICT}: 2)" in result.stderr
    frame = pd.read_csv(out, dtype={"productid": str})
    assert sorted(frame["productid"]) == sorted(built["photo"] + [built["described"], built["ordinary"]])
    photo = frame[frame["productid"].isin(built["photo"])]
    assert photo["text_pred"].isna().all() and (photo["pred_1"] == photo["image_pred"]).all()
    assert np.allclose(photo["prob_1"], photo["image_prob"], atol=1e-6) and (photo["disagreement"] == 0).all()
    described = frame[frame["productid"] == built["described"]].iloc[0]
    assert pd.notna(described["text_pred"]) and pd.isna(described["image_pred"])

    w = Workspace(built["ws"])
    try:
        before = {pid: w.prediction(pid)["probs"] for pid in built["photo"]}
        bundle = training.live_bundle(w)
        assert engine("local").score(w, bundle) >= len(built["photo"]) + 1
        for pid in built["photo"]:
            after = w.prediction(pid)
            assert after["probs"] == before[pid] and "text" not in after["voters"]
    finally:
        w.close()


# -- review: queue, card, decision, retrain --------------------------------------------------------
class _Balance(HTMLParser):
    """Open/close counts of the block elements a card is laid out with."""

    def __init__(self) -> None:
        super().__init__()
        self.depth: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        if tag in ("div", "h2", "span", "em"):
            self.depth[tag] = self.depth.get(tag, 0) + 1

    def handle_endtag(self, tag):
        if tag in ("div", "h2", "span", "em"):
            self.depth[tag] = self.depth.get(tag, 0) - 1


def test_the_card_of_a_photo_only_product(built, ws):
    pid = built["photo"][0]
    card = cards.Card(product=ws.product(pid), prediction=cards.card_prediction(ws, pid, Settings()),
                      strategy="least_confidence", score=0.5, reason="least confident", remaining=3,
                      total_remaining=3, reviewed_by_me=0, shown_at=time.time(), key="k1")
    page = views.card_html(card, views.image_data_uri(card.product["image_path"]), threshold=0.8,
                           tax=taxonomy.of(ws))
    assert '<h2 class="product-title" title=""><em>(no title)</em></h2>' in page
    assert '<img class="product-img" src="data:image/jpeg;base64,' in page and "no description" in page
    balance = _Balance()
    balance.feed(page)
    assert set(balance.depth.values()) == {0}
    votes = views.votes_html(card.prediction, has_image=True)
    assert "Text model" not in votes and "Image ensemble" in votes and "models agree with the fused top-1" in votes
    assert card.prediction.top5[0].code == card.prediction.voters["image"][0].code
    grid = views.grid_html(type("Page", (), {"category": card.prediction.top1, "remaining": 1})(),
                           [(1, type("Item", (), {"product_id": pid, "title": "", "prob": 0.5})(), None)])
    assert '<div class="grid-title"><em>(no title)</em></div>' in grid


def test_the_queue_serves_them_and_a_retrain_learns_a_photo_only_label(built, ws_copy):
    ids = queue.ranking(ws_copy, "least_confidence").ids
    assert set(built["photo"]) | {built["described"]} <= set(ids)
    pid = built["photo"][0]
    review.decide(ws_copy, "alice", pid, "correct", category=built["photo_category"][pid])
    assert "«(no title)»" in views.describe_decision({"action": "correct", "category": 2583}, "", taxonomy.of(ws_copy))
    result = retrain.retrain(ws_copy, who="alice", why="photo-only label")
    version = ws_copy.live_version()
    assert version != built["version"] and result.version == version
    assert training.live_bundle(ws_copy).text.describe()["n_without_text"] == len(built["genuine"]) + 1
    stored = ws_copy.prediction(pid)
    assert stored["model_version"] == version and stored["source"] == training.OUT_OF_FOLD
    assert "text" not in stored["voters"] and stored["top5"] == stored["voters"]["image"]


# -- export and interop ----------------------------------------------------------------------------
def test_export_and_interop_write_them(built, ws, tmp_path):
    tasks = {t["data"]["product_id"]: t for t in interop.labelstudio_tasks(ws)}
    for pid in built["photo"]:
        data = tasks[pid]["data"]
        assert data["title"] == "" and data["text"] == "" and data["image"] == ws.product(pid)["image_path"]
        assert len(tasks[pid]["predictions"]) == 5
    assert tasks[built["described"]]["data"]["text"] == built["description"]     # no blank title lines first
    interop.export_parquet(ws, tmp_path)
    table = pq.read_table(tmp_path / "catalog.parquet").to_pandas().set_index("product_id")
    assert (table.loc[built["photo"], "title"] == "").all()
    assert (table.loc[list(built["genuine"]), "label"] == pd.Series(built["genuine"])).all()
    result = CliRunner().invoke(main, ["export", "--workspace", str(built["ws"]), "--out", str(tmp_path / "csv")])
    assert result.exit_code == 0, result.output
    exported = pd.read_csv(tmp_path / "csv" / "products.csv", dtype={"productid": str}).set_index("productid")
    assert all(exported.loc[pid, "prdtypecode"] == c for pid, c in built["genuine"].items())


# -- the migration ----------------------------------------------------------------------------------
def test_the_migration_keeps_every_row_of_an_old_workspace(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "workspace.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    migrations.apply(conn, before="m080_products_without_title")
    conn.execute("INSERT INTO products (id, title, description, image_path, source_label, imported_at) VALUES "
                 "('p1', 'Piscine gonflable', 'ronde, 3 m', '/img/p1.jpg', 2583, 'now'), "
                 "('p2', 'Lego City', '', NULL, NULL, 'now')")
    conn.execute("INSERT INTO decisions (product_id, reviewer, action, category, idempotency_key, created_at) "
                 "VALUES ('p2', 'alice', 'correct', 1280, 'k1', 'now')")
    with pytest.raises(sqlite3.IntegrityError):          # the old schema refuses a photo-only product
        conn.execute("INSERT INTO products (id, title, image_path, imported_at) VALUES ('p3', '', '/img/p3.jpg', 'now')")
    before = (conn.execute("SELECT rowid, * FROM products ORDER BY rowid").fetchall(),
              conn.execute("SELECT * FROM decisions ORDER BY id").fetchall())
    conn.close()

    ws = Workspace(root)                                  # opening it applies m080 and what follows
    try:
        c = ws.conn
        assert sorted(r[0] for r in c.execute("SELECT name FROM _migrations")) == \
            sorted(n for n, _ in migrations.MIGRATIONS)
        after = (c.execute("SELECT rowid, * FROM products ORDER BY rowid").fetchall(),
                 c.execute("SELECT * FROM decisions ORDER BY id").fetchall())
        assert [tuple(r)[:len(before[0][0])] for r in after[0]] == [tuple(r) for r in before[0]]
        assert [tuple(r)[:len(before[1][0])] for r in after[1]] == [tuple(r) for r in before[1]]
        assert ws.current_labels() == {"p1": 2583, "p2": 1280}
        ws.write(lambda w: w.execute("INSERT INTO products (id, title, image_path, imported_at) "
                                     "VALUES ('p3', '', '/img/p3.jpg', 'now')"))
        ws.write(lambda w: w.execute("INSERT INTO products (id, title, description, imported_at) "
                                     "VALUES ('p4', '', 'une description', 'now')"))
        with pytest.raises(sqlite3.IntegrityError):       # neither text nor image: still refused
            ws.write(lambda w: w.execute("INSERT INTO products (id, title, description, imported_at) "
                                         "VALUES ('p5', '  ', '  ', 'now')"))
        assert [r[0] for r in c.execute("SELECT rowid FROM products_fts WHERE products_fts MATCH 'piscine'")] == [1]
        assert [r[0] for r in c.execute("SELECT rowid FROM products_fts WHERE products_fts MATCH 'description'")] == [4]
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        ws.close()
