"""Review statistics on a real workspace after real decisions through the workflow."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from labeler import review, stats, taxonomy, views
from labeler.config import Settings
from review_workspace import copy_workspace
from store.workspace import Workspace

BOTH = replace(Settings(), overlap_share=1.0)


@pytest.fixture
def rws(sample_dir, tmp_path):
    ws = Workspace(copy_workspace(sample_dir, tmp_path / "ws"))
    yield ws
    ws.close()


def _other(code: int) -> int:
    return next(c for c in taxonomy.codes() if c != code)


def test_acceptance_confusion_kappa_and_progress(rws):
    cards = []
    for _ in range(4):                                   # ana accepts 4 products
        c = review.next_card(rws, "ana", settings=BOTH)
        review.decide(rws, "ana", c.product_id, "accept")
        cards.append(c)
    extra = review.next_card(rws, "ana", settings=BOTH)  # ...and corrects a 5th, then undoes a 6th
    wrong = _other(extra.prediction.top1)
    review.decide(rws, "ana", extra.product_id, "correct", category=wrong)
    undone = review.next_card(rws, "ana", settings=BOTH)
    review.decide(rws, "ana", undone.product_id, "accept")
    review.undo(rws, "ana")
    review.release(rws, "ana")
    for i in range(4):                                   # ben sees ana's first 4: agrees on 3
        c = review.next_card(rws, "ben", settings=BOTH)
        assert c.second_review and c.product_id == cards[i].product_id
        if i < 3:
            review.decide(rws, "ben", c.product_id, "accept")
        else:
            review.decide(rws, "ben", c.product_id, "correct", category=_other(c.prediction.top1))

    acc = stats.acceptance(rws)
    assert (acc["n"], acc["accepted"], acc["rate"]) == (9, 7, round(7 / 9, 4))
    per = acc["per_category"].set_index("code")
    assert per["shown"].sum() == 9 and per["accepted"].sum() == 7
    assert per.loc[extra.prediction.top1, "name"] == taxonomy.name(extra.prediction.top1)

    m = stats.confusion(rws)
    assert m.shape == (27, 27) and list(m.index) == taxonomy.codes()
    assert int(m.to_numpy().sum()) == 9 and int(m.to_numpy().trace()) == 7
    assert m.loc[extra.prediction.top1, wrong] >= 1

    ag = stats.agreement(rws)
    assert ag["n_products"] == 4 and ag["observed_agreement"] == 0.75
    t = ag["pairs"]
    assert set(t["reviewer_a"]) == {"ana"} and set(t["reviewer_b"]) == {"ben"}
    labels = sorted(set(t["category_a"]) | set(t["category_b"]))   # kappa by hand: (po - pe) / (1 - pe)
    pe = sum((t["category_a"] == c).mean() * (t["category_b"] == c).mean() for c in labels)
    assert ag["kappa"] == pytest.approx((0.75 - pe) / (1 - pe), abs=1e-4)

    prog = stats.progress(rws, BOTH)
    assert prog["products"] == rws.count_products()
    assert prog["reviewed"] == 5 and prog["done"] == 4 and prog["remaining"] == rws.count_products() - 4
    assert prog["decisions"] == 9 and prog["labels"] == 9 and prog["undos"] == 1 and prog["reviewers"] == 2

    model = stats.model_summary(rws)
    assert model["live"] == rws.live_version() and model["n_train"] == rws.count_products()
    assert set(stats.summary(rws, BOTH)) == {"progress", "rates", "acceptance", "confusion", "agreement", "model"}


def test_stats_counts_are_defined_once_and_every_card_and_table_agrees(rws):
    """One session of accepts, a correction, skips, an undo and a reviewer whose only decision was
    undone: the cards, the per-reviewer table and the acceptance rate count the same things."""
    for _ in range(5):
        c = review.next_card(rws, "ana", settings=BOTH)
        review.decide(rws, "ana", c.product_id, "accept")
    c = review.next_card(rws, "ana", settings=BOTH)
    review.decide(rws, "ana", c.product_id, "correct", category=_other(c.prediction.top1))
    for _ in range(2):
        c = review.next_card(rws, "ana", settings=BOTH)
        review.decide(rws, "ana", c.product_id, "skip")
    review.undo(rws, "ana")                               # takes back the last skip
    c = review.next_card(rws, "ana", settings=BOTH)
    review.decide(rws, "ana", c.product_id, "accept")
    c = review.next_card(rws, "cid", settings=BOTH)         # cid's only decision is undone
    review.decide(rws, "cid", c.product_id, "accept")
    review.undo(rws, "cid")
    review.release(rws, "cid")
    c = review.next_card(rws, "ben", settings=BOTH)         # ben reviews one of ana's a second time
    review.decide(rws, "ben", c.product_id, "accept")

    prog = stats.progress(rws, BOTH)
    assert set(stats.COUNTS) <= set(prog)
    rates = stats.reviewer_rates(rws)
    acc = stats.acceptance(rws)
    assert prog["labels"] + prog["skips"] == prog["decisions"] == int(rates["decisions"].sum()) == 9
    assert (prog["labels"], prog["skips"], prog["undos"]) == (8, 1, 2)
    assert acc["n"] + acc["without_prediction"] == prog["labels"] and acc["n"] == int(acc["per_category"]["shown"].sum())
    assert prog["reviewers"] == len(rates) == 2             # cid has no decision standing
    assert prog["reviewed"] == 7 and prog["done"] == 1      # overlap: only ben's product has its two reviews

    # a bulk auto-accept batch: its decisions are labels too, in the cards and in the table alike
    from labeler import bulk
    batch = bulk.auto_accept(rws, "admin", threshold=0.01, settings=BOTH)
    n_auto = rws.scalar("SELECT count(*) FROM effective_decisions WHERE action = 'auto_accept'")
    assert n_auto > 0 and batch is not None
    after = stats.progress(rws, BOTH)
    assert after["auto_accepts"] == n_auto and after["labels"] == 8 + n_auto
    assert after["decisions"] == int(stats.reviewer_rates(rws)["decisions"].sum()) == 9 + n_auto
    rws.write(lambda c: c.execute("DELETE FROM reservations"))

    html = views.stats_cards_html(prog, acc, stats.agreement(rws), stats.model_summary(rws))
    for label, value in (("products reviewed", "7"), ("decisions standing", "9"), ("reviewers", "2")):
        assert re.search(rf'stat-label">{label}</div><div class="stat-value[^"]*">{value}</div>', html), label
    assert "8 labels · 1 skips · 2 undone" in html and f"of {acc['n']} labels given with a model top-1 shown" in html
    assert html.count('title="') == 7                       # every card says what it counts


def test_decisions_per_hour_counts_active_time_only(rws):
    pid = rws.query("SELECT id FROM products LIMIT 1")[0]["id"]
    # a past sitting: decisions at 0, 30, 60 s, a one-hour break, then 3660, 3690 s; 10 s lead each
    times = ["2024-05-01T09:00:00.000+00:00", "2024-05-01T09:00:30.000+00:00", "2024-05-01T09:01:00.000+00:00",
             "2024-05-01T10:01:00.000+00:00", "2024-05-01T10:01:30.000+00:00"]
    rows = [(pid, "zoe", "skip", 10_000, f"k{i}", t) for i, t in enumerate(times)]
    rws.write(lambda c: c.executemany("INSERT INTO decisions (product_id, reviewer, action, lead_time_ms, "
                                      "idempotency_key, created_at) VALUES (?, ?, ?, ?, ?, ?)", rows))
    rates = stats.reviewer_rates(rws).set_index("reviewer")
    active_s = 30 + 30 + 30 + 10 + 10          # gaps within sittings + first lead time of each sitting
    assert rates.loc["zoe", "decisions"] == 5
    assert rates.loc["zoe", "active_min"] == round(active_s / 60, 2)
    assert rates.loc["zoe", "per_hour"] == round(5 / (active_s / 3600), 1)
    assert rates.loc["zoe", "median_lead_s"] == 10.0


def test_empty_workspace_stats_are_empty_not_errors(tmp_path):
    ws = Workspace(tmp_path / "empty")
    try:
        assert stats.acceptance(ws)["rate"] is None
        assert stats.agreement(ws)["kappa"] is None
        assert stats.reviewer_rates(ws).empty
        assert int(stats.confusion(ws).to_numpy().sum()) == 0
        assert stats.model_summary(ws) == {"live": None, "versions": 0}
        assert stats.progress(ws)["remaining"] == 0
    finally:
        ws.close()


def test_shown_top5_is_what_acceptance_is_measured_on(rws):
    c = review.next_card(rws, "ana")
    row = review.decide(rws, "ana", c.product_id, "accept")
    assert json.loads(row["shown_top5"])[0][0] == c.prediction.top1
    assert stats.acceptance(rws)["rate"] == 1.0
