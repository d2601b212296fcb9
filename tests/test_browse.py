"""Browse: search, filters, sorting and paging over a real workspace, checked against plain Python."""
from __future__ import annotations

import unicodedata

import pytest

from review_workspace import copy_workspace

from labeler import bulk, review
from labeler.browse import BrowseError, BrowseQuery, browse, fts_expression, summary, table_rows
from store.workspace import Workspace, now_iso


@pytest.fixture
def rws(sample_dir, tmp_path):
    ws = Workspace(copy_workspace(sample_dir, tmp_path / "ws"))
    yield ws
    ws.close()


def every(ws: Workspace, **kw) -> list[dict]:
    """All rows of a query, page after page (pages of 37 so paging itself is exercised)."""
    out, page = [], 1
    while True:
        res = browse(ws, BrowseQuery(page=page, page_size=37, **kw))
        out += res.rows
        if res.page >= res.pages:
            assert len(out) == res.total
            return out
        page += 1


def fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    import re
    return re.findall(r"[^\W_]+", fold(text))


def test_search_finds_every_product_with_all_the_words_as_prefixes_accents_folded(rws):
    products = rws.products()
    long_words = [w for w in words(products[7]["title"]) if len(w) >= 4][:2]
    two = f"{long_words[0][:4].upper()} {long_words[-1]}"          # a prefix in capitals and a whole word
    for query in ("piscine", "Pièce", "jeu de", two):
        wanted = {p["id"] for p in products
                  if all(any(w.startswith(q) for w in words(p["title"] + " " + p["description"]))
                         for q in words(query))}
        got = {r["product_id"] for r in every(rws, text=query)}
        assert got == wanted and wanted, query


def test_a_product_id_finds_that_product(rws):
    pid = rws.products()[17]["id"]
    assert [r["product_id"] for r in browse(rws, BrowseQuery(text=pid)).rows] == [pid]
    assert browse(rws, BrowseQuery(text=f"  {pid} ")).rows[0]["product_id"] == pid


def test_products_imported_later_are_searchable(rws):
    rws.write(lambda c: c.execute("INSERT INTO products (id, title, description, imported_at) VALUES "
                                  "('new-1', 'Trottinette électrique pliable', 'autonomie 25 km', ?)", (now_iso(),)))
    assert [r["product_id"] for r in browse(rws, BrowseQuery(text="electrique trott")).rows] == ["new-1"]


def test_filters_match_the_store(rws):
    live = rws.live_version()
    preds = {p["id"]: rws.prediction(p["id"], live) for p in rws.products()}
    products = rws.products()
    cat = products[0]["source_label"]
    assert {r["product_id"] for r in every(rws, imported=cat)} == {p["id"] for p in products if p["source_label"] == cat}
    pcat = preds[products[5]["id"]]["top1"]
    wanted = {pid for pid, pr in preds.items() if pr["top1"] == pcat and 0.2 <= pr["top1_prob"] <= 0.9}
    got = every(rws, predicted=pcat, min_confidence=0.2, max_confidence=0.9)
    assert {r["product_id"] for r in got} == wanted

    # decisions: alice accepts 3, bob corrects 2, alice's last is undone, an admin auto-accepts
    done: dict[str, tuple[str, int]] = {}
    for i in range(5):
        who = "alice" if i < 3 else "bob"
        card = review.next_card(rws, who)
        if who == "alice":
            review.decide(rws, who, card.product_id, "accept")
            done[card.product_id] = (who, card.prediction.top1)
        else:
            review.decide(rws, who, card.product_id, "correct", category=cat)
            done[card.product_id] = (who, cat)
    undone = review.undo(rws, "alice")["undone"]["product_id"]
    del done[undone]
    review.release(rws, "alice")
    auto = bulk.auto_accept(rws, "root", threshold=0.97)
    for pid, c, _ in auto.accepted:
        done[pid] = ("root", c)
    decided_rows = every(rws, status="decided")
    assert {r["product_id"]: (r["decided_by"], r["decided"]) for r in decided_rows} == done
    assert {r["product_id"] for r in every(rws, status="undecided")} == {p["id"] for p in products} - set(done)
    assert {r["product_id"] for r in every(rws, decided=cat)} == {p for p, (_, c) in done.items() if c == cat}
    assert {r["product_id"] for r in every(rws, reviewer="bob")} == {p for p, (w, _) in done.items() if w == "bob"}
    assert undone not in {r["product_id"] for r in every(rws, reviewer="alice")}
    latest = browse(rws, BrowseQuery(sort="decided_at", page_size=len(done))).rows
    ats = [r["decided_at"] for r in latest]
    assert set(r["product_id"] for r in latest) == set(done) and ats == sorted(ats, reverse=True)
    assert {r["decided_action"] for r in latest} >= {"accept", "correct"}


def test_sorting_and_paging_cover_each_product_once_in_order(rws):
    rows = every(rws, sort="confidence")
    assert len(rows) == rws.count_products() == len({r["product_id"] for r in rows})
    conf = [r["confidence"] for r in rows]
    assert conf == sorted(conf)
    surest = every(rws, sort="-confidence")
    assert [r["confidence"] for r in surest] == sorted(conf, reverse=True)
    ascii_lower = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    titles = [r["title"].translate(ascii_lower) for r in every(rws, sort="title")]     # SQLite's NOCASE
    assert titles == sorted(titles)
    imported = [r["product_id"] for r in every(rws)]
    assert imported == [p["id"] for p in rws.products()]
    last = browse(rws, BrowseQuery(page=10_000, page_size=50))
    assert last.page == last.pages and last.rows and "of" in summary(last)


def test_table_rows_name_the_categories(rws):
    page = browse(rws, BrowseQuery(page_size=3))
    rows = table_rows(page)
    assert len(rows) == 3 and rows[0][0] == page.rows[0]["product_id"]
    assert " · " in rows[0][2] and " · " in rows[0][3] and isinstance(rows[0][4], float)


@pytest.mark.parametrize("query, message", [
    (BrowseQuery(imported=1234), "imported category 1234 is not one of the 27"),
    (BrowseQuery(status="maybe"), "status 'maybe'"),
    (BrowseQuery(sort="price"), "sort 'price'"),
    (BrowseQuery(min_confidence=1.5), "min_confidence 1.5"),
    (BrowseQuery(page=0), "pages start at 1"),
])
def test_bad_queries_say_what_to_fix(rws, query, message):
    with pytest.raises(BrowseError, match=message):
        browse(rws, query)


def test_fts_expression_quotes_every_word():
    assert fts_expression('pisc "gonfl" OR -x') == '"pisc"* "gonfl"* "OR"* "x"*'
    assert fts_expression("  ") is None


def test_browse_tab_through_the_api(sample_dir, tmp_path):
    from gradio_client import Client

    from app_server import running_app
    root = copy_workspace(sample_dir, tmp_path / "app-ws")
    ws = Workspace(root)
    pid = ws.products()[3]["id"]
    cat = ws.products()[0]["source_label"]
    n_cat = ws.scalar("SELECT count(*) FROM products WHERE source_label = ?", (cat,))
    ws.close()
    with running_app(root, tmp_path) as (_, url):
        client = Client(url, verbose=False)
        table, info, page = client.predict(pid, None, None, None, "any", "", 0, 1, "imported", [], None, 1,
                                           api_name="/browse")
        assert [row[0] for row in table["data"]] == [pid] and "of 1 " in info and page == 1
        table, info, _ = client.predict("", cat, None, None, "undecided", "", 0, 1, "-confidence", [], None, 1,
                                        api_name="/browse")
        assert len(table["data"]) == min(50, n_cat) and f"of {n_cat} " in info
        assert all(row[2].startswith(f"{cat} · ") for row in table["data"])
        with pytest.raises(Exception, match="minimum value 1"):
            client.predict("", None, None, None, "any", "", 0, 1, "imported", [], None, 0, api_name="/browse")


def test_browse_opens_a_product_and_records_a_new_decision_on_it(sample_dir, tmp_path):
    from gradio_client import Client

    from app_server import decisions, running_app
    root = copy_workspace(sample_dir, tmp_path / "app-ws")
    ws = Workspace(root)
    pid = ws.products()[5]["id"]
    top1 = ws.prediction(pid)["top1"]
    other = next(c for c in (10, 40, 50) if c != top1)
    review.decide(ws, "alice", pid, "accept")
    ws.close()
    with running_app(root, tmp_path) as (_, url):
        client = Client(url, verbose=False)
        html = client.predict(pid, api_name="/browse_open")
        assert f'data-product="{pid}"' in html and "alice" in html and "accept" in html
        html = client.predict("bob", pid, other, api_name="/browse_set")
        assert "bob" in html and "correct" in html
        rows = decisions(root)
        assert [(r["reviewer"], r["action"], r["category"]) for r in rows] == [
            ("alice", "accept", top1), ("bob", "correct", other)]          # a new row; alice's stays
        with pytest.raises(Exception, match="unknown product 'nope'"):
            client.predict("nope", api_name="/browse_open")
    ws = Workspace(root)
    assert ws.current_labels()[pid] == other
    ws.close()


def test_disagreement_and_suspect_filters(rws):
    live = rws.live_version()
    split = {r["product_id"] for r in rws.query(
        "SELECT product_id FROM predictions WHERE model_version = ? AND disagreement = 1", (live,))}
    assert {r["product_id"] for r in every(rws, disagreement=True)} == split
    # every training flags suspects now (issue 16): the filter shows the latest run's flagged ones
    latest = rws.query("SELECT max(id) AS run FROM label_issue_runs")[0]["run"]
    trained = {r["product_id"] for r in rws.query(
        "SELECT product_id FROM label_issues WHERE run_id = ? AND flagged = 1", (latest,))}
    assert {r["product_id"] for r in every(rws, suspect=True)} == trained
    flagged = [p["id"] for p in rws.products()[:4]]

    def store(conn):
        run = conn.execute("INSERT INTO label_issue_runs (created_at, method, folds, n_products, n_flagged) "
                           "VALUES ('now', 'test', 2, 4, 4)").lastrowid
        conn.executemany("INSERT INTO label_issues (run_id, product_id, rank, given_label, suggested, given_prob, "
                         "suggested_prob, margin) VALUES (?, ?, ?, 10, 40, 0.1, 0.9, 0.8)",
                         [(run, pid, i + 1) for i, pid in enumerate(flagged)])
    rws.write(store)
    assert {r["product_id"] for r in every(rws, suspect=True)} == set(flagged)


def test_prediction_set_filter_is_the_live_versions_sets_and_reads_by_an_index(rws):
    """Products whose live prediction set (models.honest, the card's "in the set" marks) holds a
    category: checked product by product against the card's own set, combined with another filter."""
    from labeler import review, taxonomy
    from labeler.config import Settings
    from store import search
    live = rws.live_version()
    cards = {p["id"]: review.card_prediction(rws, p["id"], Settings()) for p in rws.products()}
    sets = {pid: set(pred.pred_set) if pred is not None else set() for pid, pred in cards.items()}
    assert any(len(s) > 1 for s in sets.values())             # real sets, not only the top-1
    tried = 0
    for key in taxonomy.of(rws).keys():
        wanted = {pid for pid, s in sets.items() if key in s}
        got = {r["product_id"] for r in every(rws, in_set=key)}
        assert got == wanted, key
        tried += bool(wanted)
    assert tried >= 10
    key = max(taxonomy.of(rws).keys(), key=lambda k: sum(k in s for s in sets.values()))
    not_top1 = {r["product_id"] for r in every(rws, in_set=key, status="undecided")
                if r["predicted"] != key}
    assert not_top1 == {pid for pid, s in sets.items() if key in s and rws.prediction(pid)["top1"] != key}
    assert browse(rws, BrowseQuery(in_set=str(key))).total == len({p for p, s in sets.items() if key in s})
    with pytest.raises(BrowseError, match="prediction set category 'nope' is not one of"):
        browse(rws, BrowseQuery(in_set="nope"))
    plan = " | ".join(search.query_plan(rws, search.VERSION_PROBS_SQL, (live,)))
    assert "USING INDEX" in plan and "SCAN" not in plan.replace("SCAN pr USING", ""), plan


def test_prediction_set_filter_refuses_a_version_without_sets_in_one_line(rws):
    from models import honest
    live = rws.live_version()
    honest._VERSION_CACHE[(str(rws.db_path), live)] = None      # as a version trained before calibration
    try:
        with pytest.raises(BrowseError, match=f"live version {live} has no prediction sets"):
            browse(rws, BrowseQuery(in_set=10))
        assert browse(rws, BrowseQuery(predicted=10)).total >= 0  # other filters still work
    finally:
        honest._VERSION_CACHE.pop((str(rws.db_path), live), None)
