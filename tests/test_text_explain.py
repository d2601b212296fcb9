"""The text model's exact explanation: contributions that add up to the decision value, mapped onto
the displayed words; faithful (deleting the words it names hurts more than random words); rendered
as escaped markup on the card and in try-it; the `explain` CLI; what the model learned per version.

A real `TextClassifier` is trained on the real sample (75 %); explanations are checked on the
held-out products.
"""
from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from labeler import text_highlights, views
from models.text import TextClassifier, softmax
from models.text_explain import ExplainError, attribute, deletion_check, explain_text


def _sample(sample_dir) -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"].loc[X.index].to_numpy()
    return pd.DataFrame({"title": X["designation"].fillna(""), "description": X["description"]}).reset_index(drop=True), y


@pytest.fixture(scope="module")
def split(sample_dir):
    X, y = _sample(sample_dir)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def model(split) -> TextClassifier:
    X_tr, _, y_tr, _ = split
    return TextClassifier().fit(X_tr, y_tr)


# -- exactness ------------------------------------------------------------------------------------
def test_contributions_plus_intercept_are_the_decision_value_for_every_category(model, split):
    _, X_te, _, _ = split
    rows = X_te.iloc[:60]
    scores = model.decision_function(rows)
    probs = softmax(scores, model.temperature_)
    worst = 0.0
    for i, (title, desc) in enumerate(zip(rows["title"], rows["description"])):
        shown_title, shown_desc = views.plain(title), views.plain(desc)
        att = attribute(model, title, desc, display_title=shown_title, display_description=shown_desc)
        for k, code in enumerate(model.classes_):
            exp = att.explain(code)
            worst = max(worst, abs(exp.total - scores[i, k]))
            assert exp.score == pytest.approx(scores[i, k], abs=1e-6)
            assert exp.probability == pytest.approx(probs[i, k], abs=1e-9)
        # every n-gram landed on a displayed word: nothing is reported as hidden text
        assert exp.hidden == 0.0
        for s in exp.spans:
            assert s.text == (shown_title if s.field == "title" else shown_desc)[s.start:s.end]
    assert worst < 1e-6


def test_spans_point_at_the_displayed_words_through_html_entities_and_accents(model):
    title = "Bâche d'hivernage PISCINE 4x8 m &amp;amp; Œillets\u200b inox"
    desc = "<p>Bâche <b>renforcée</b> pour piscine&nbsp;hors-sol &amp;#39;ronde&amp;#39;</p><ul><li>filtre à sable</li></ul>"
    shown_title, shown_desc = views.plain(title), views.plain(desc)
    exp = explain_text(model, title, desc, 2583, display_title=shown_title, display_description=shown_desc)
    words = {(s.field, s.text): s.contribution for s in exp.spans}
    assert ("title", "Œillets\u200b") in words or ("title", "Œillets") in words
    assert ("description", "ronde") in words           # quotes decoded twice, not part of the word
    assert words[("title", "PISCINE")] > 0 and words[("description", "piscine")] > 0
    assert exp.hidden == 0.0
    assert abs(exp.total - exp.score) < 1e-6
    # the model's own top-1 of this text is the pool category, and its words push toward it
    assert exp.probability == max(attribute(model, title, desc).explain(c).probability for c in model.classes_)
    assert exp.top_words(3)[0].contribution > 0


def test_any_category_not_only_the_top1_and_clear_errors(model, split):
    _, X_te, _, _ = split
    title, desc = X_te["title"].iloc[0], X_te["description"].iloc[0]
    att = attribute(model, title, desc)
    ranked = np.argsort(-att.scores)
    for k in ranked[[1, 4, -1]]:
        exp = att.explain(model.classes_[k])
        assert exp.category == int(model.classes_[k]) and abs(exp.total - exp.score) < 1e-6
    with pytest.raises(ExplainError, match="unknown category 9999"):
        att.explain(9999)
    with pytest.raises(ExplainError, match="unknown category 'piscine'"):
        att.explain("piscine")


def test_a_product_without_text_says_so(model):
    exp = explain_text(model, "<p></p>", None, 2583, display_title=views.plain("<p></p>"), display_description="")
    assert not exp.has_text and exp.words == ()
    assert "no title or description" in exp.summary()
    assert abs(exp.total - exp.score) < 1e-6       # bias and patterns still add up to the score


def test_deleting_the_top5_words_hurts_more_than_5_random_words(model, split):
    """The small version of bench/text_explain.py (200 products there, >= 90 % required)."""
    _, X_te, _, _ = split
    result = deletion_check(model, X_te["title"].iloc[:60].tolist(), X_te["description"].iloc[:60].tolist(),
                            k=5, seed=0)
    n = len(result.top_drop)
    print(f"\n{n} products: top-5 words lower the predicted category's probability more than 5 random words "
          f"on {100 * result.win_rate:.0f} %; mean drop {result.top_drop.mean():.3f} vs {result.random_drop.mean():.3f}")
    assert n >= 40
    assert result.win_rate >= 0.9
    assert result.top_drop.mean() > 3 * max(result.random_drop.mean(), 0.01)


# -- rendering --------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """Elements seen and the text content, from the standard library's HTML parser."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.in_xw = 0
        self.xw_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "span" and "xw" in (dict(attrs).get("class") or "").split():
            self.in_xw += 1
            self.xw_text.append("")

    def handle_endtag(self, tag):
        if tag == "span" and self.in_xw:
            self.in_xw -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self.in_xw:
            self.xw_text[-1] += data


XSS_TITLE = '<script>window.__xss = "title"</script><img src=x onerror="window.__xss=\'img\'">Piscine <b>hors-sol</b> &lt;i&gt;bâche&lt;/i&gt;'
XSS_DESCRIPTION = ('Bâche &lt;script&gt;window.__xss="desc"&lt;/script&gt; <svg onload="window.__xss=\'svg\'"></svg>'
                   '<a href="javascript:window.__xss=1">lien</a> & solide pour piscine')


def test_hostile_markup_renders_as_text_with_highlights_intact(model):
    product = {"id": "xss", "title": XSS_TITLE, "description": XSS_DESCRIPTION}
    top5 = [int(c) for c in model.classes_[np.argsort(-attribute(model, XSS_TITLE, XSS_DESCRIPTION).scores)[:5]]]
    hl = text_highlights.build_highlights(model, product, top5)
    for markup, shown in ((hl.title_html, views.plain(XSS_TITLE)), (hl.description_html, views.plain(XSS_DESCRIPTION))):
        page = _Page()
        page.feed(markup)
        assert {t for t, _ in page.tags} <= {"span"}                 # no script, img, svg, a, b, i
        assert all(set(a) == {"class"} for _, a in page.tags)         # no event handler, no style
        assert "".join(page.text) == shown                            # the very text the card showed before
        assert page.xw_text and all(w and w in shown for w in page.xw_text)
    assert any("piscine" in w.lower() for w in _tinted(hl.title_html))
    assert len(hl.summaries) == 5 and "title words" in hl.summaries[0]


def _tinted(markup: str) -> list[str]:
    page = _Page()
    page.feed(markup)
    return page.xw_text


def test_tint_levels_are_signed_and_relative_to_the_strongest_word():
    lv = text_highlights.levels(np.array([1.0, -0.5, 0.3, -0.05, 0.0]))
    assert lv.tolist() == [4, -2, 2, 0, 0]
    assert text_highlights.levels(np.zeros(3)).tolist() == [0, 0, 0]
