"""Category guides on a real workspace (the sample's products, a really trained model): the
description from the taxonomy and the reviewed products the model is surest of, in order;
a product ruled elsewhere or never reviewed by a human is no example."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from labeler.templates import CACHE, app_workspace, copy_template, fingerprint

from labeler import adjudication, guides, taxonomy  # noqa: E402
from labeler.app_guides import guide_html  # noqa: E402
from store.workspace import Workspace  # noqa: E402


def ready_app_workspace(sample_dir: Path, dest: Path) -> Path:
    """`app_workspace`, but a template already built is copied without queueing on the builders'
    lock (held for many minutes while another code version's template trains)."""
    built = CACHE / f"app-ws-{fingerprint(sample_dir)}"
    return copy_template(built, dest) if (built / "READY").exists() else app_workspace(sample_dir, dest)


@pytest.fixture
def rws(sample_dir, tmp_path):
    ws = Workspace(ready_app_workspace(sample_dir, tmp_path / "ws"))
    yield ws
    ws.close()


def test_guide_examples_are_the_surest_reviewed_products_still_labelled_there(rws):
    live = rws.live_version()
    cat, _ = Counter(r["top1"] for r in rws.query("SELECT top1 FROM predictions WHERE model_version = ?",
                                                  (live,))).most_common(1)[0]
    ranked = rws.query("SELECT product_id, top1_prob FROM predictions WHERE model_version = ? AND top1 = ? "
                       "ORDER BY top1_prob DESC", (live, cat))
    assert len(ranked) >= 5
    ids = [r["product_id"] for r in ranked]
    surest, second, third, fourth, fifth = ids[:5]
    for pid in (second, third, fifth):
        rws.record_decision(pid, "ann", "accept", category=cat)
    rws.record_decision(surest, "admin", "auto_accept", category=cat)        # not a human's word
    rws.record_decision(fourth, "ann", "accept", category=cat)
    other = next(c for c in taxonomy.codes() if c != cat)
    adjudication.rule(rws, "root", fourth, other)                             # ruled elsewhere: no example

    g = guides.guide(rws, str(cat))
    assert (g.code, g.name, g.description) == (cat, taxonomy.name(cat), taxonomy.by_code()[cat].description)
    assert [e.product_id for e in g.examples] == [second, third, fifth]
    probs = [e.prob for e in g.examples]
    assert probs == sorted(probs, reverse=True) and all(p is not None for p in probs)

    page = guide_html(g)
    assert taxonomy.name(cat) in page and all(f'data-product="{p}"' in page for p in (second, third, fifth))
    # the model never ranks `other` first for the ruled product: it still shows, without a probability
    assert [(e.product_id, e.prob) for e in guides.guide(rws, other).examples] == [(fourth, None)]
    empty = next(c for c in taxonomy.codes() if c not in (cat, other))
    assert guides.guide(rws, empty).examples == ()          # nothing reviewed there: an empty guide, said so
    assert "No reviewed example yet" in guide_html(guides.guide(rws, empty))


def test_unknown_category_is_one_clear_error(rws):
    with pytest.raises(guides.GuideError, match="unknown category '9999'"):
        guides.guide(rws, "9999")
    assert len(guides.all_guides(rws, n=1)) == 27
