"""The review app's named endpoints on a live server, driven by gradio_client; asserts on SQLite rows.

The workspace is a copy of a real-sample workspace with a really trained model version.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from html.parser import HTMLParser

import pytest
from gradio_client import Client, handle_file

from app_server import XSS_TITLE, add_hostile_product, decisions, running_app
from labeler import card_pack, taxonomy
from app_workspace import app_workspace

CARD_FIELDS = ("current", "card")   # the card's HTML carries the status line, top-5, side panel and heatmaps


def card(out) -> dict:
    """A card endpoint's outputs by name (gradio_client leaves the gr.State out), the packed
    card's parts unpacked (labeler/card_pack.py)."""
    return {"current": out[0], **card_pack.unpack(out[1])}


@pytest.fixture
def app_ws(sample_dir, tmp_path):
    return app_workspace(sample_dir, tmp_path / "ws")


@pytest.fixture
def server(app_ws, tmp_path):
    with running_app(app_ws, tmp_path) as (demo, url):
        yield demo, url


def test_the_browser_keeps_no_run_history(server):
    """Gradio 6 would otherwise store every call (product cards, heatmaps) in the reviewer's browser."""
    _, url = server
    config = Client(url, verbose=False).config
    assert config["run_history"] is False


def test_the_queue_is_ranked_before_the_first_reviewer_arrives(server):
    """Ranking reads every prediction (seconds on a full catalog): done in the background at start."""
    from labeler import review
    demo, _ = server
    ui = demo.review_ui
    ui.warming.join(60)
    built = list(review._state(ui.ws).rankings.values())
    assert len(built) == 1 and built[0].ids
    assert review.ranking(ui.ws, "least_confidence", settings=ui.settings) is built[0]   # what a card uses


def test_the_next_cards_images_are_preloaded(sample_dir, tmp_path):
    """Each card asks the browser to fetch the images of the next cards in the queue, so the next
    product's image is on screen from the browser's cache."""
    root = app_workspace(sample_dir, tmp_path / "ws")
    photos = tmp_path / "photos"
    photos.mkdir()
    with sqlite3.connect(root / "workspace.db") as db:      # every product gets an image of its own
        (source,) = db.execute("SELECT image_path FROM products WHERE image_path IS NOT NULL LIMIT 1").fetchone()
        for (pid,) in db.execute("SELECT id FROM products WHERE image_path IS NULL").fetchall():
            copy = photos / f"photo_{pid}.jpg"
            copy.write_bytes(Path(source).read_bytes())
            db.execute("UPDATE products SET image_path = ? WHERE id = ?", (str(copy), pid))
    with running_app(root, tmp_path) as (_, url):
        client = Client(url, verbose=False)
        out = card(client.predict("paula", api_name="/set_reviewer"))
        for _ in range(4):
            preload = image_sources(out["card"], "preload")
            assert len(preload) == 2 and all(src.startswith("product-image/") for src in preload)
            out = card(client.predict(out["current"], "", api_name="/accept"))
            (shown,) = image_sources(out["card"], "product-img")
            assert shown == preload[0]


def test_every_event_has_a_name(server):
    demo, url = server
    named = Client(url, verbose=False).view_api(return_format="dict")["named_endpoints"]
    expected = {"/start", "/set_reviewer", "/set_queue", "/set_queue_category", "/accept", "/choose", "/skip",
                "/undo", "/heatmaps", "/heatmaps_pending", "/stats", "/stats_on_open", "/try_it",
                "/models", "/models_refresh", "/retrain", "/make_live", "/learned", "/learned_refresh"} | {f"/pick_{r}" for r in range(1, 6)}
    assert expected <= set(named)
    unnamed = [d for d in demo.fns.values() if not d.api_name]
    assert unnamed == []


def test_review_through_the_api_writes_each_decision_before_the_next_card(server, app_ws):
    _, url = server
    client = Client(url, verbose=False)
    first = card(client.predict("alice", api_name="/set_reviewer"))
    cur = first["current"]
    assert cur["reviewer"] == "alice" and len(cur["top5"]) == 5
    assert f'data-product-id="{cur["product_id"]}"' in first["card"]
    assert first["top5"].count('class="t5-row') == 5
    assert taxonomy.name(cur["top5"][0][0]) in first["top5"]          # category names, not only codes
    assert "Text model" in first["side"]
    assert decisions(app_ws) == []

    second = card(client.predict(cur, "", api_name="/accept"))
    rows = decisions(app_ws)
    assert len(rows) == 1 and rows[0]["action"] == "accept" and rows[0]["reviewer"] == "alice"
    assert rows[0]["product_id"] == cur["product_id"] and rows[0]["category"] == cur["top5"][0][0]
    assert rows[0]["idempotency_key"] == cur["key"] and rows[0]["lead_time_ms"] >= 0
    assert json.loads(rows[0]["shown_top5"])[0][0] == cur["top5"][0][0]
    assert second["current"]["product_id"] != cur["product_id"]

    # the same key again (a double Enter): nothing new is written, the screen resyncs
    again = card(client.predict(cur, "", api_name="/accept"))
    assert len(decisions(app_ws)) == 1 and again["current"]["key"] == second["current"]["key"]

    cur = second["current"]
    third = card(client.predict(cur, "couleur différente", api_name="/pick_3"))
    row = decisions(app_ws)[-1]
    assert (row["action"], row["category"], row["comment"]) == ("correct", cur["top5"][2][0], "couleur différente")

    cur = third["current"]
    outside = next(c for c in taxonomy.codes() if c not in [c for c, _ in cur["top5"]])
    fourth = card(client.predict(outside, cur, "", api_name="/choose"))
    row = decisions(app_ws)[-1]
    assert (row["product_id"], row["action"], row["category"]) == (cur["product_id"], "correct", outside)

    skipped = fourth["current"]
    card(client.predict(skipped, "", api_name="/skip"))
    assert decisions(app_ws)[-1]["action"] == "skip"

    # undo twice: the skip, then the choice; each product comes back on screen
    back = card(client.predict(api_name="/undo"))
    assert back["current"]["product_id"] == skipped["product_id"] and "undid" in back["card"]
    back = card(client.predict(api_name="/undo"))
    assert back["current"]["product_id"] == cur["product_id"]
    rows = decisions(app_ws)
    assert [r["action"] for r in rows] == ["accept", "correct", "correct", "skip", "undo", "undo"]
    assert rows[4]["undoes"] == rows[3]["id"] and rows[5]["undoes"] == rows[2]["id"]

    # a new session (reload) resumes on the same product
    resumed = card(Client(url, verbose=False).predict("alice", {}, api_name="/start")[:len(CARD_FIELDS)])
    assert resumed["current"]["product_id"] == cur["product_id"] and "resumed" in resumed["card"]


def test_name_is_required_before_deciding(server, app_ws):
    _, url = server
    client = Client(url, verbose=False)
    out = card(client.predict("", {}, api_name="/start")[:len(CARD_FIELDS)])
    assert out["current"] == {} and "Who is reviewing" in out["card"]
    with pytest.raises(Exception, match="Reviewer box"):
        client.predict({}, "", api_name="/accept")
    with pytest.raises(Exception, match="Type your name"):
        client.predict("   ", api_name="/set_reviewer")
    assert decisions(app_ws) == []


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def markup_of(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def _text_of(html: str) -> str:
    parts: list[str] = []
    parser = HTMLParser()
    parser.handle_data = parts.append
    parser.feed(html)
    return "".join(parts)


def image_sources(html: str, css_class: str) -> list[str]:
    return [attrs["src"] for tag, attrs in markup_of(html) if tag == "img" and attrs.get("class") == css_class]


def test_product_text_cannot_inject_markup(sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    pid = add_hostile_product(root, "mallory")
    with running_app(root, tmp_path) as (_, url):
        out = card(Client(url, verbose=False).predict("mallory", api_name="/set_reviewer"))
    assert out["current"]["product_id"] == pid
    tags = markup_of(out["card"])
    assert {t for t, _ in tags} <= {"div", "span", "h2", "b", "code", "em", "img"}
    assert not [a for _, attrs in tags for a in attrs if a.lower().startswith("on")]
    assert {attrs.get("class") for t, attrs in tags if t == "img"} <= {"product-img", "preload"}
    assert all(attrs["src"].startswith("product-image/") for t, attrs in tags if t == "img")
    shown = _text_of(out["card"])            # the text model's tints wrap words in spans
    assert "Piscine hors-sol" in shown and "Bâche" in shown   # the words stay, as text
    assert XSS_TITLE not in out["card"]


def test_queue_strategy_switch_releases_and_serves_the_category(server, app_ws):
    _, url = server
    client = Client(url, verbose=False)
    first = card(client.predict("bob", api_name="/set_reviewer"))["current"]
    code = 2583
    out = client.predict("category", code, api_name="/set_queue")
    cur = card(out)["current"]
    db = sqlite3.connect(app_ws / "workspace.db")
    top1, label = db.execute("SELECT pr.top1, p.source_label FROM products p JOIN predictions pr ON pr.product_id = p.id "
                             "WHERE p.id = ?", (cur["product_id"],)).fetchone()
    held = db.execute("SELECT product_id FROM reservations WHERE reviewer = 'bob'").fetchall()
    db.close()
    assert code in (top1, label) and cur["strategy"] == "category"
    assert held == [(cur["product_id"],)] and (first["product_id"] != cur["product_id"] or code in (top1, label))
    assert out[-1]["strategy"] == "category" and out[-1]["category"] == code      # remembered by the browser


def test_stats_and_try_it_leave_the_workspace_untouched(server, app_ws):
    _, url = server
    client = Client(url, verbose=False)
    cur = card(client.predict("carol", api_name="/set_reviewer"))["current"]
    client.predict(cur, "", api_name="/accept")

    cards, rates, per_cat, plot, metrics = client.predict(api_name="/stats")
    assert "reviewed" in cards and ">1<" in cards
    assert rates["data"][0][0] == "carol" and rates["data"][0][1] == 1
    assert per_cat["data"][0][0] == cur["top5"][0][0]
    assert plot is not None and "labelled products it learned from" in metrics and "{" not in metrics

    def snapshot():
        with sqlite3.connect(app_ws / "workspace.db") as db:
            return [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("products", "decisions", "predictions", "reservations", "image_features")]

    before = snapshot()
    top5, votes, heat, words = client.predict(None, "Piscine tubulaire ronde 3,66 m avec pompe de filtration",
                                              "Bâche renforcée, échelle incluse", api_name="/try_it")
    assert top5.count('class="t5-row') == 5 and "Piscine" in top5 and "Text model" in votes
    assert 'class="xw' in words and "title words" in words
    assert snapshot() == before

    # an uploaded image: the image voters vote too, and each shows its heatmap
    with sqlite3.connect(app_ws / "workspace.db") as db:
        title, image = db.execute("SELECT title, image_path FROM products WHERE image_path IS NOT NULL "
                                  "ORDER BY id LIMIT 1").fetchone()
    top5, votes, heat, _ = client.predict(handle_file(image), title, "", api_name="/try_it")
    assert top5.count('class="t5-row') == 5 and "Image ensemble" in votes and "lite2+logistic" in votes
    assert heat.count("<figure>") == 3 and "Grad-CAM" in heat
    assert snapshot() == before
    with pytest.raises(Exception, match="type a title"):
        client.predict(None, "  ", "", api_name="/try_it")


def live(db: sqlite3.Connection) -> str:
    return db.execute("SELECT value FROM settings WHERE key = 'live_model_version'").fetchone()[0]


def test_models_tab_retrains_from_decisions_and_switches_versions(server, app_ws):
    """Retrain button: a new version learns the decision just made, goes live and serves the next
    card; "Make this version live" rolls back; a rollback without a pick is refused."""
    _, url = server
    client = Client(url, verbose=False)
    panel, table, pick = client.predict(api_name="/models")
    first = table["data"][0][0]
    assert len(table["data"]) == 1 and "live" in table["data"][0][1] and "No retrain yet" in panel

    cur = card(client.predict("dora", api_name="/set_reviewer"))["current"]
    other = next(c for c in taxonomy.codes() if c != cur["top5"][0][0])
    nxt = card(client.predict(other, cur, "", api_name="/choose"))["current"]

    panel, table, pick = client.predict(api_name="/retrain")
    new = table["data"][0][0]
    assert new != first and [r[0] for r in table["data"]] == [new, first]
    assert "live" in table["data"][0][1] and not table["data"][1][1]
    assert "Retrain finished" in panel and "1 reviewed" in panel and new in panel
    with sqlite3.connect(app_ws / "workspace.db") as db:
        assert live(db) == new
        run = db.execute("SELECT status, trigger, version FROM retrain_runs").fetchall()
    assert run == [("succeeded", "app", new)]
    with sqlite3.connect(app_ws / "workspace.db") as db:      # who did it: no login, so the typed name
        assert db.execute("SELECT version, who FROM live_history").fetchall()[1:] == [(new, "dora (no login, local)")]  # [0]: the fixture's training
    # the decided product is now labelled: its stored prediction is honest, from the folds that did
    # not see its label (issue 16), not from a model that learned the answer
    with sqlite3.connect(app_ws / "workspace.db") as db:
        source = db.execute("SELECT source FROM predictions WHERE model_version = ? AND product_id = ?",
                            (new, cur["product_id"])).fetchone()[0]
    assert source == "out-of-fold"
    client.predict(nxt, "", api_name="/skip")
    assert card(client.predict(api_name="/undo"))["current"]["model_version"] == new

    panel, table, pick = client.predict(first, api_name="/make_live")
    assert "live" in table["data"][1][1] and table["data"][1][0] == first and not table["data"][0][1]
    with sqlite3.connect(app_ws / "workspace.db") as db:
        assert live(db) == first
    with pytest.raises(Exception, match="Pick a version"):
        client.predict(None, api_name="/make_live")


def test_auth_identifies_the_reviewer(sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    with running_app(root, tmp_path, auth=[("dana", "s3cret"), ("eve", "pw2")]) as (_, url):
        client = Client(url, auth=("dana", "s3cret"), verbose=False)
        out = client.predict("someone-else", {}, api_name="/start")
        cur = card(out[:len(CARD_FIELDS)])["current"]
        assert cur["reviewer"] == "dana" and out[len(CARD_FIELDS)]["value"] == "dana"
        client.predict(cur, "", api_name="/accept")
        with pytest.raises(Exception):
            Client(url, auth=("dana", "wrong"), verbose=False)
        # product images are served by URL (by product id), and only to a logged-in reviewer
        import requests

        from labeler import views
        with sqlite3.connect(root / "workspace.db") as db:
            db.row_factory = sqlite3.Row
            product = dict(db.execute("SELECT * FROM products WHERE image_path IS NOT NULL LIMIT 1").fetchone())
        image = product["image_path"]
        src = views.image_src(product)
        assert src.startswith("product-image/")
        assert requests.get(url.rstrip("/") + "/" + src, timeout=10).status_code in (401, 403)
        with requests.Session() as browser:
            browser.post(url.rstrip("/") + "/login", data={"username": "dana", "password": "s3cret"}, timeout=10)
            got = browser.get(url.rstrip("/") + "/" + src, timeout=10)
            assert got.status_code == 200 and got.content == Path(image).read_bytes()
    assert [(r["reviewer"], r["action"]) for r in decisions(root)] == [("dana", "accept")]
