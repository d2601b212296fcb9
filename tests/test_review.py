"""The review workflow on real SQLite workspaces: real sample products scored by a trained model."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace

import pytest

from labeler import review, taxonomy
from labeler.config import Settings
from labeler.review import HeldByAnother, InvalidCategory, ReviewError, UnknownProduct
from review_workspace import copy_workspace
from store.workspace import Workspace

SETTINGS = Settings()


@pytest.fixture
def rws(sample_dir, tmp_path):
    ws = Workspace(copy_workspace(sample_dir, tmp_path / "ws"))
    yield ws
    ws.close()


def _least_confident(ws: Workspace, n: int = 1) -> list[str]:
    rows = ws.query("SELECT product_id, top1_prob FROM predictions WHERE model_version = ? ORDER BY top1_prob",
                    (ws.live_version(),))
    return [r["product_id"] for r in rows[:n]]


def _effective(ws: Workspace) -> list[dict]:
    return ws.query("SELECT * FROM effective_decisions ORDER BY id")


def test_first_card_is_the_least_confident_product_with_its_prediction(rws):
    card = review.next_card(rws, "ana")
    pred = rws.prediction(card.product_id)
    assert card.product_id == _least_confident(rws)[0]
    assert card.strategy == "least_confidence"
    assert card.score == pytest.approx(1 - pred["top1_prob"], abs=1e-6)
    assert card.reason == f"model top-1 probability {pred['top1_prob']:.0%}"
    assert card.product["title"] and card.product["source_label"] in taxonomy.codes()
    p = card.prediction
    assert p.model_version == rws.live_version()
    assert [v.code for v in p.top5] == [c for c, _ in pred["top5"]]
    assert p.top5[0].name == taxonomy.name(p.top1) and p.top5[0].prob == pytest.approx(p.top1_prob, abs=1e-6)
    assert list(p.voters) == ["text"] and p.agreement() == {"text": True}
    assert p.auto_accept is (p.auto_accept_threshold is not None and p.top1_prob >= p.auto_accept_threshold)
    assert p.source == "out-of-fold"                  # a labelled product: scored by models that never saw its label
    assert card.remaining == card.total_remaining == rws.count_products()
    assert review.holdings(rws) == {card.product_id: "ana"}


def test_auto_accept_flag_follows_the_versions_guaranteed_threshold(rws):
    cal = review.honest.version_calibration(rws, rws.live_version())
    assert cal is not None
    card = review.next_card(rws, "ana", strategy="random")
    t = cal.auto_accept.threshold
    assert card.prediction.auto_accept_threshold == t
    assert card.prediction.auto_accept is (t is not None and card.prediction.top1_prob >= t)
    review.release(rws, "ana")
    # a version trained before guarantees existed keeps the settings' fixed threshold
    row = rws.prediction(card.product_id)
    tax = taxonomy.of(rws)
    classes = taxonomy.classes_of(rws, row["model_version"])
    for threshold, expected in ((0.0, True), (1.01, False)):
        view = review.prediction_view(row, None, replace(SETTINGS, auto_accept_threshold=threshold),
                                      tax=tax, classes=classes)
        assert view.auto_accept is expected


def test_two_reviewers_get_different_products_and_each_resumes_their_own(rws):
    a = review.next_card(rws, "ana")
    b = review.next_card(rws, "ben")
    assert a.product_id != b.product_id
    assert b.product_id == _least_confident(rws, 2)[1]
    again = review.next_card(rws, "ana")
    assert again.product_id == a.product_id and again.resumed and again.reason.startswith("resumed")
    assert review.holdings(rws) == {a.product_id: "ana", b.product_id: "ben"}


def test_one_reviewer_in_two_tabs_gets_two_products_and_each_tab_resumes_its_own(rws):
    first = review.next_card(rws, "ana", tab="tab-1")
    second = review.next_card(rws, "ana", tab="tab-2")
    assert first.product_id != second.product_id          # today both tabs got the same product
    assert review.next_card(rws, "ana", tab="tab-1").product_id == first.product_id    # a reload resumes
    assert review.next_card(rws, "ana", tab="tab-2").product_id == second.product_id
    held = rws.query("SELECT product_id, reviewer, tab FROM reservations ORDER BY tab")
    assert [(r["product_id"], r["tab"]) for r in held] == [(first.product_id, "tab-1"), (second.product_id, "tab-2")]

    # each tab decides its own product: two decisions on two products, nothing decided twice
    review.decide(rws, "ana", first.product_id, "accept", idempotency_key=first.key)
    review.decide(rws, "ana", second.product_id, "skip", idempotency_key=second.key)
    rows = _effective(rws)
    assert sorted(r["product_id"] for r in rows) == sorted([first.product_id, second.product_id])
    third = review.next_card(rws, "ana", tab="tab-1")
    fourth = review.next_card(rws, "ana", tab="tab-2")
    assert len({first.product_id, second.product_id, third.product_id, fourth.product_id}) == 4

    # switching queue in one tab gives back that tab's product only; undo lands in the tab that asks
    assert review.release(rws, "ana", tab="tab-1") == 1
    assert rws.scalar("SELECT product_id FROM reservations WHERE reviewer = 'ana'") == fourth.product_id
    review.undo(rws, "ana", tab="tab-1")
    assert review.next_card(rws, "ana", tab="tab-1").product_id == second.product_id   # the latest decision
    assert review.next_card(rws, "ana", tab="tab-2").product_id == fourth.product_id


def test_a_tab_picks_up_a_product_held_without_a_tab(rws):
    """A reservation made by the CLI, the API or before tabs were told apart is resumed by a tab."""
    held = review.next_card(rws, "ana")
    assert review.next_card(rws, "ana", tab="tab-1").product_id == held.product_id
    assert review.next_card(rws, "ana", tab="tab-2").product_id != held.product_id


def test_accept_stores_top1_version_and_shown_top5_and_product_leaves_the_queue(rws):
    card = review.next_card(rws, "ana")
    row = review.decide(rws, "ana", card.product_id, "accept", lead_time_ms=card.lead_time_ms(),
                        idempotency_key=card.key, comment="looks right")
    assert row["category"] == card.prediction.top1
    assert row["model_version"] == rws.live_version()
    assert json.loads(row["shown_top5"]) == [[v.code, v.prob] for v in card.prediction.top5]
    assert row["lead_time_ms"] >= 0 and row["comment"] == "looks right" and not row["replayed"]
    assert review.holdings(rws) == {}
    assert rws.current_labels(reviewed_only=True) == {card.product_id: card.prediction.top1}
    seen = set()
    for reviewer in ("ana", "ben", "ana", "cleo"):
        nxt = review.next_card(rws, reviewer)
        seen.add(nxt.product_id)
        assert nxt.remaining == rws.count_products() - 1
    assert card.product_id not in seen


def test_correct_requires_one_of_the_27_codes(rws):
    card = review.next_card(rws, "ana")
    for bad in (None, 9999, "abc", "", -10):
        with pytest.raises(InvalidCategory, match="categor"):
            review.decide(rws, "ana", card.product_id, "correct", category=bad)
    with pytest.raises(InvalidCategory, match="9999 is not one of the 27 category codes"):
        review.decide(rws, "ana", card.product_id, "accept", category=9999)
    with pytest.raises(ReviewError, match="unknown action 'delete'"):
        review.decide(rws, "ana", card.product_id, "delete")
    with pytest.raises(UnknownProduct, match="unknown product 'nope'"):
        review.decide(rws, "ana", "nope", "skip")
    with pytest.raises(ReviewError, match="reviewer name is empty"):
        review.decide(rws, "  ", card.product_id, "skip")
    assert rws.decisions() == []
    assert review.holdings(rws) == {card.product_id: "ana"}   # nothing lost: still held
    row = review.decide(rws, "ana", card.product_id, "correct", category="1280")
    assert row["category"] == 1280 and row["action"] == "correct"


def test_deciding_a_product_held_by_another_reviewer_is_refused(rws):
    card = review.next_card(rws, "ana")
    with pytest.raises(HeldByAnother, match="being reviewed by 'ana'"):
        review.decide(rws, "ben", card.product_id, "accept")
    assert rws.decisions() == []
    free = _least_confident(rws, 5)[4]   # nobody holds it: a free product may be decided directly
    assert review.decide(rws, "ben", free, "correct", category=10)["product_id"] == free


def test_upcoming_products_are_the_cards_the_reviewer_gets_next(rws):
    """What the app warms and preloads: the next cards, past products others decided, hold or
    the reviewer skipped (not a window of the ranking, which they would fill)."""
    ranked = _least_confident(rws, 8)
    first = review.next_card(rws, "ana")
    assert first.product_id == ranked[0]
    review.decide(rws, "bob", ranked[1], "accept")          # decided by someone else
    held = review.next_card(rws, "cy")                      # held by someone else
    assert held.product_id == ranked[2]
    review.decide(rws, "ana", ranked[0], "skip")            # the reviewer's own skip goes last
    card = review.next_card(rws, "ana")
    ahead = review.upcoming(rws, "ana", 3)
    assert ahead == ranked[4:7] and card.product_id == ranked[3]
    shown = []
    for _ in range(3):
        review.decide(rws, "ana", review.next_card(rws, "ana").product_id, "accept")
        shown.append(review.next_card(rws, "ana").product_id)
    assert shown == ahead


def test_skipped_product_goes_behind_the_others_for_that_reviewer_only(rws):
    settings = SETTINGS
    order = _least_confident(rws, 3)
    first = review.next_card(rws, "ana")
    assert first.product_id == order[0]
    review.decide(rws, "ana", first.product_id, "skip")
    assert review.next_card(rws, "ana").product_id == order[1]
    # ben still gets the skipped product at its rank
    assert review.next_card(rws, "ben", settings=settings).product_id == order[0]


def test_skipped_products_come_back_oldest_first_when_nothing_else_is_left(rws):
    code = 1280
    queue = review.ranking(rws, "category", category=code).ids
    assert 3 <= len(queue) < 40
    decided, skipped = [], []
    for i, _ in enumerate(queue):
        card = review.next_card(rws, "ana", strategy="category", category=code)
        assert card.product["source_label"] == code or card.prediction.top1 == code
        if i < 2:
            review.decide(rws, "ana", card.product_id, "skip")
            skipped.append(card.product_id)
        else:
            review.decide(rws, "ana", card.product_id, "accept", category=code)
            decided.append(card.product_id)
    assert sorted(decided + skipped) == sorted(queue)
    again = review.next_card(rws, "ana", strategy="category", category=code)
    assert again.product_id == skipped[0] and again.remaining == 2
    review.decide(rws, "ana", again.product_id, "correct", category=code)
    assert review.next_card(rws, "ana", strategy="category", category=code).product_id == skipped[1]
    review.decide(rws, "ana", skipped[1], "accept", category=code)
    assert review.next_card(rws, "ana", strategy="category", category=code) is None


def test_undo_several_steps_back_reshows_each_product(rws):
    picked = []
    for action, cat in (("accept", None), ("correct", 2583), ("skip", None)):
        card = review.next_card(rws, "ana")
        review.decide(rws, "ana", card.product_id, action, category=cat)
        picked.append(card.product_id)
    shown = review.next_card(rws, "ana")          # the 4th product is on screen when U is pressed
    u1 = review.undo(rws, "ana")
    assert u1["undone"]["product_id"] == picked[2] and u1["undone"]["action"] == "skip"
    back = review.next_card(rws, "ana")
    assert back.product_id == picked[2] and back.resumed
    assert review.holdings(rws) == {picked[2]: "ana"}    # the 4th product was given back
    assert review.next_card(rws, "ben").product_id == shown.product_id
    u2 = review.undo(rws, "ana")
    assert u2["undone"]["product_id"] == picked[1] and u2["undone"]["category"] == 2583
    assert review.next_card(rws, "ana").product_id == picked[1]
    u3 = review.undo(rws, "ana")
    assert u3["undone"]["product_id"] == picked[0]
    assert review.undo(rws, "ana") is None                # nothing left to undo
    assert review.next_card(rws, "ana").product_id == picked[0]
    assert rws.current_labels(reviewed_only=True) == {}
    actions = [d["action"] for d in rws.decisions()]
    assert actions == ["accept", "correct", "skip", "undo", "undo", "undo"]
    assert _effective(rws) == []
    # decide again after undo: the new decision counts
    review.decide(rws, "ana", picked[0], "correct", category=40)
    assert rws.current_labels(reviewed_only=True) == {picked[0]: 40}


def test_a_product_reopened_by_undo_comes_back_at_its_rank_for_everyone(rws):
    """The queue remembers where its closed top ends; an undo must move that mark back."""
    ranked = _least_confident(rws, 4)
    n = rws.count_products()
    for pid in ranked[:2]:
        assert review.next_card(rws, "ana").product_id == pid
        review.decide(rws, "ana", pid, "accept")
    card = review.next_card(rws, "ben")
    assert card.product_id == ranked[2] and card.remaining == n - 2
    review.release(rws, "ben")
    assert review.undo(rws, "ana")["undone"]["product_id"] == ranked[1]
    review.release(rws, "ana")                              # e.g. ana switched queues
    card = review.next_card(rws, "ben")
    assert card.product_id == ranked[1] and card.remaining == n - 1
    assert review.upcoming(rws, "cy", 2) == ranked[2:4]


def test_undo_is_idempotent_on_its_key(rws):
    for _ in range(2):
        card = review.next_card(rws, "ana")
        review.decide(rws, "ana", card.product_id, "accept")
    first = review.undo(rws, "ana", idempotency_key="u-1")
    retry = review.undo(rws, "ana", idempotency_key="u-1")
    assert retry["replayed"] and retry["id"] == first["id"] and retry["undone"]["id"] == first["undone"]["id"]
    assert [d["action"] for d in rws.decisions()].count("undo") == 1


def test_resume_after_restart_and_undo_survives_it(rws):
    root = rws.root
    card = review.next_card(rws, "ana")
    review.decide(rws, "ana", card.product_id, "accept")
    held = review.next_card(rws, "ana")
    rws.close()
    reopened = Workspace(root)                 # a restarted server: new object, new connections
    try:
        again = review.next_card(reopened, "ana")
        assert again.product_id == held.product_id and again.resumed
        assert review.next_card(reopened, "ben").product_id not in (card.product_id, held.product_id)
        assert review.undo(reopened, "ana")["undone"]["product_id"] == card.product_id
        assert review.next_card(reopened, "ana").product_id == card.product_id
    finally:
        reopened.close()


def test_abandoned_reservation_expires_and_frees_the_product(rws):
    short = replace(SETTINGS, reservation_ttl_s=1)
    a = review.next_card(rws, "ana", settings=short)
    b = review.next_card(rws, "ben", settings=short)
    assert b.product_id != a.product_id
    review.release(rws, "ben")
    time.sleep(1.1)
    taken = review.next_card(rws, "ben", settings=short)
    assert taken.product_id == a.product_id and not taken.resumed   # ana's lease ran out
    with pytest.raises(HeldByAnother):
        review.decide(rws, "ana", a.product_id, "accept")
    assert review.next_card(rws, "ana", settings=short).product_id != a.product_id


def test_retried_submit_is_stored_once(rws):
    card = review.next_card(rws, "ana")
    first = review.decide(rws, "ana", card.product_id, "accept", idempotency_key=card.key)
    nxt = review.next_card(rws, "ben")   # the product may even be given to someone else meanwhile
    retry = review.decide(rws, "ana", card.product_id, "accept", idempotency_key=card.key)
    assert retry["replayed"] and retry["id"] == first["id"]
    assert len(rws.decisions()) == 1 and nxt.product_id != card.product_id
    with pytest.raises(ReviewError, match="already used for decision"):
        review.decide(rws, "ana", nxt.product_id, "skip", idempotency_key=card.key)


def test_decisions_are_append_only(rws):
    card = review.next_card(rws, "ana")
    review.decide(rws, "ana", card.product_id, "accept")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        rws.write(lambda c: c.execute("UPDATE decisions SET category = 10"))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        rws.write(lambda c: c.execute("DELETE FROM decisions"))
    review.undo(rws, "ana")
    assert [d["action"] for d in rws.decisions()] == ["accept", "undo"]


def test_overlap_product_needs_two_different_reviewers(rws):
    both = replace(SETTINGS, overlap_share=1.0)
    a = review.next_card(rws, "ana", settings=both)
    review.decide(rws, "ana", a.product_id, "accept")
    assert review.next_card(rws, "ana", settings=both).product_id != a.product_id
    b = review.next_card(rws, "ben", settings=both)
    assert b.product_id == a.product_id and b.second_review
    other = 1160 if a.prediction.top1 != 1160 else 1140       # ben disagrees with ana's accept
    review.decide(rws, "ben", b.product_id, "correct", category=other)
    c = review.next_card(rws, "cleo", settings=both)
    assert c.product_id != a.product_id
    # disagreement of two reviewers: the latest wins (one rule for the store and the queue)
    assert rws.current_labels(reviewed_only=True)[a.product_id] == other
    assert review.resolved_labels(rws)[a.product_id] == other
    assert review.disagreements(rws)[0]["product_id"] == a.product_id
    review.release(rws, "cleo")
    review.decide(rws, "cleo", a.product_id, "accept", category=a.prediction.top1)   # a third opinion
    assert review.resolved_labels(rws)[a.product_id] == a.prediction.top1
    # with no overlap share, one decision is enough
    assert review.in_overlap(a.product_id, 0.0) is False


def test_overlap_share_is_a_stable_fraction():
    ids = [str(i) for i in range(4000)]
    share = sum(review.in_overlap(i, 0.25, 0) for i in ids) / len(ids)
    assert 0.22 < share < 0.28
    assert [review.in_overlap(i, 0.25, 0) for i in ids[:50]] == [review.in_overlap(i, 0.25, 0) for i in ids[:50]]


def test_filtering_strategies_and_unknown_names(rws):
    threshold = review.honest.version_calibration(rws, rws.live_version()).auto_accept.threshold
    below = review.next_card(rws, "ana", strategy="below_threshold")
    assert below is not None and (threshold is None or below.prediction.top1_prob < threshold)
    review.release(rws, "ana")
    with pytest.raises(review.strategies.StrategyError, match="unknown strategy 'entropie'"):
        review.next_card(rws, "ana", strategy="entropie")
    with pytest.raises(InvalidCategory, match="category strategy"):
        review.next_card(rws, "ana", strategy="category", category=7)


def test_queue_order_follows_new_predictions_and_new_products(rws):
    first, second = _least_confident(rws, 2)
    assert review.next_card(rws, "ana").product_id == first
    review.release(rws, "ana")
    live = rws.live_version()
    # re-score: the two products swap predictions (as a retrained model would change them)
    p1, p2 = rws.prediction(first), rws.prediction(second)
    rows = [{**p2, "product_id": first}, {**p1, "product_id": second}]
    rws.save_predictions(live, rows)
    assert review.next_card(rws, "ana").product_id == second
    review.release(rws, "ana")
    rws.write(lambda c: c.execute("INSERT INTO products (id, title, imported_at) VALUES ('new-1', 'Lot de 3 mangas', "
                                  "'2024-01-01')"))
    assert review.ranking(rws, "least_confidence").ids[-1] == "new-1"   # unscored: after scored ones
    assert "new-1" not in review.ranking(rws, "below_threshold").ids


def test_unscored_workspace_is_reviewable_in_import_order(sample_dir, tmp_path):
    ws = Workspace(copy_workspace(sample_dir, tmp_path / "bare", train=False))
    try:
        ids = [r["id"] for r in ws.query("SELECT id FROM products ORDER BY rowid LIMIT 2")]
        card = review.next_card(ws, "ana")
        assert card.product_id == ids[0] and card.prediction is None and "no model prediction" in card.reason
        with pytest.raises(ReviewError, match="no model prediction to accept"):
            review.decide(ws, "ana", card.product_id, "accept")
        row = review.decide(ws, "ana", card.product_id, "correct", category=2705)
        assert row["model_version"] is None and row["shown_top5"] is None
        assert review.next_card(ws, "ana").product_id == ids[1]
    finally:
        ws.close()


def test_recent_decisions_lists_what_undo_would_take_back(rws):
    for _ in range(3):
        c = review.next_card(rws, "ana")
        review.decide(rws, "ana", c.product_id, "accept")
    review.undo(rws, "ana")
    recent = review.recent_decisions(rws, "ana")
    assert len(recent) == 2 and recent[0]["id"] > recent[1]["id"] and recent[0]["title"]


def test_suspect_queue_is_full_after_training_and_reads_the_latest_label_issue_run(rws):
    # training ranked every labelled product; the flagged ones are the stored suspects
    flagged = {r["product_id"] for r in rws.query("SELECT product_id FROM label_issues WHERE flagged = 1")}
    assert flagged and review.stored_suspects(rws) == flagged
    probs = {r["product_id"]: (json.loads(r["probs"]), r["source_label"]) for r in rws.query(
        "SELECT pr.product_id, pr.probs, p.source_label FROM predictions pr JOIN products p ON p.id = pr.product_id "
        "WHERE pr.model_version = ?", (rws.live_version(),))}
    own = {pid: p[taxonomy.codes().index(label)] for pid, (p, label) in probs.items()}
    card = review.next_card(rws, "ana", strategy="suspect_labels")
    assert own[card.product_id] == min(own.values()) and "out-of-fold probability" in card.reason
    assert len(review.ranking(rws, "suspect_labels").ids) == rws.count_products()   # every labelled product


def test_accept_stores_what_the_card_showed_even_after_a_model_switch(rws):
    card = review.next_card(rws, "ana")
    v1 = rws.live_version()
    pid = card.product_id
    # a newer version goes live while the card is on screen; it predicts another category for pid
    donor = next(r for r in rws.query("SELECT product_id, top1 FROM predictions") if r["top1"] != card.prediction.top1)
    v2 = "v-next"
    rws.register_model_version(v2, rws.model_version(v1)["path"], parent=v1, make_live=False)
    rws.save_predictions(v2, [{**rws.prediction(donor["product_id"]), "product_id": pid}])
    rws.set_live_version(v2)
    row = review.decide(rws, "ana", pid, "accept", shown_version=card.prediction.model_version)
    assert (row["category"], row["model_version"]) == (card.prediction.top1, v1)
    assert json.loads(row["shown_top5"])[0][0] == card.prediction.top1
    review.undo(rws, "ana")
    row = review.decide(rws, "ana", pid, "accept")   # no shown_version: the live one
    assert (row["category"], row["model_version"]) == (donor["top1"], v2)
