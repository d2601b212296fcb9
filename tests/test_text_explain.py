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
from labeler.taxonomy import TAXONOMY_PATH
from models.text import TextClassifier, softmax
from models.text_prior import read_category_texts
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
    return TextClassifier(categories=read_category_texts(TAXONOMY_PATH)).fit(X_tr, y_tr)


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
    """The small version of experiments/text_explain.py (200 products there, >= 90 % required)."""
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
    assert all(d.startswith("patterns: ") and "category bias" in d for d in hl.details)   # by name, in a tooltip


def _tinted(markup: str) -> list[str]:
    page = _Page()
    page.feed(markup)
    return page.xw_text


def test_tint_levels_are_signed_and_relative_to_the_strongest_word():
    lv = text_highlights.levels(np.array([1.0, -0.5, 0.3, -0.05, 0.0]))
    assert lv.tolist() == [4, -2, 2, 0, 0]
    assert text_highlights.levels(np.zeros(3)).tolist() == [0, 0, 0]


# -- a real workspace with a text-only model version (no image: the heatmaps say so) ----------------
NO_TEXT_ID = "no-text-1"


@pytest.fixture(scope="module")
def text_ws(sample_dir, tmp_path_factory):
    from labeler.training import train_version
    from review_workspace import insert_products, sample_products
    from store.workspace import Workspace, now_iso
    root = tmp_path_factory.mktemp("textexp") / "ws"
    products = sample_products(sample_dir, 12)
    products["image_path"] = None
    ws = Workspace(root)
    insert_products(ws, products)
    ws.write(lambda c: c.execute(            # a title that is only markup: nothing to read
        "INSERT INTO products (id, title, description, image_path, source_label, imported_at) "
        "VALUES (?, '<br/>', '', NULL, NULL, ?)", (NO_TEXT_ID, now_iso())))
    train_version(ws, evaluate=False, notes="text explanation tests")
    ws.close()
    return root


def _cli(*args):
    from click.testing import CliRunner
    from labeler.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_explain_writes_the_text_contributions_and_heatmap_is_an_alias(text_ws, tmp_path):
    import csv
    from labeler.training import live_bundle
    from store.workspace import Workspace
    ws = Workspace(text_ws)
    product = ws.conn.execute("SELECT * FROM products WHERE id != ? AND length(description) > 40 LIMIT 1",
                              (NO_TEXT_ID,)).fetchone()
    pid = product["id"] if hasattr(product, "keys") else product[0]
    product = ws.product(pid)
    bundle = live_bundle(ws)
    top1 = int(ws.prediction(pid)["top1"])
    ws.close()
    out = tmp_path / "out"
    result = _cli("explain", "--workspace", text_ws, "--product", pid, "--out", out)
    assert result.exit_code == 0, result.output
    path = out / f"product_{pid}_{top1}_text.csv"
    assert str(path.resolve()) in result.output
    assert "title words" in result.output and "no heatmaps" in result.output   # text-only version: said, not failed
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["field", "span", "start", "end", "contribution"]
    shown = {"title": views.plain(product["title"]), "description": views.plain(product["description"])}
    for r in rows:
        if r["field"] in shown:
            assert shown[r["field"]][int(r["start"]):int(r["end"])] == r["span"]
    k = list(bundle.text.classes_).index(top1)
    score = bundle.text.decision_function(pd.DataFrame([product]))[0, k]
    assert sum(float(r["contribution"]) for r in rows) == pytest.approx(score, abs=1e-6)
    from models.text_prior import PATTERN_NAMES
    assert [r["span"] for r in rows if r["field"] == "pattern"] == list(PATTERN_NAMES)   # non-text, by name
    assert [r["field"] for r in rows][-1] == "intercept"

    # another category, by the old name
    other = _cli("heatmap", "--workspace", text_ws, "--product", pid, "--category", "2583", "--out", out)
    assert other.exit_code == 0, other.output
    assert (out / f"product_{pid}_2583_text.csv").exists()


@pytest.mark.parametrize("args, named", [
    (["--product", "nope-42"], "no product 'nope-42'"),
    (["--product", NO_TEXT_ID, "--category", "9999"], "unknown category '9999'"),
    (["--product", NO_TEXT_ID, "--category", "piscine"], "unknown category 'piscine'"),
])
def test_cli_explain_bad_input_is_one_line_naming_it(text_ws, tmp_path, args, named):
    result = _cli("explain", "--workspace", text_ws, *args, "--out", tmp_path / "o")
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.output


def test_cli_explain_product_without_text_says_so_and_still_tries_heatmaps(text_ws, tmp_path):
    result = _cli("explain", "--workspace", text_ws, "--product", NO_TEXT_ID, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "has no title or description text: no text explanation" in result.output
    assert "no heatmaps" in result.output            # the heatmap part ran and said why there are none
    assert not list((tmp_path / "o").glob("*_text.csv"))


# -- the review card and try-it in a real browser ---------------------------------------------------
def _rects(page) -> list:
    return page.evaluate("() => ['.product-title', '.product-desc', '.xsum', '.meta'].map(s => {"
                         " const r = document.querySelector('#review-card ' + s).getBoundingClientRect();"
                         " return [r.x, r.y, r.width, r.height]; })")


def _tint(page, selector: str) -> str:
    return page.evaluate("s => getComputedStyle(document.querySelector(s)).backgroundColor", selector)


def test_review_card_tints_words_per_category_chip_and_T_shows_words_against(text_ws, tmp_path, monkeypatch):
    import shutil
    from app_server import add_hostile_product, running_app
    from labeler.local_app import launch_chromium
    from test_browser_review import TIMEOUT_MS, open_app, wait_for_new_card
    from playwright.sync_api import sync_playwright
    root = tmp_path / "ws"
    shutil.copytree(text_ws, root)
    from store.workspace import Workspace
    ws = Workspace(root)
    ws.write(lambda c: c.execute("UPDATE model_versions SET path = replace(path, ?, ?)", (str(text_ws), str(root))))
    ws.close()
    hostile = add_hostile_product(root, "alice")
    # the card never waits for its words: the first one (not computed ahead) gets them afterwards
    monkeypatch.setattr("labeler.app_review.HIGHLIGHT_WAIT_S", 0.0)
    with running_app(root, tmp_path) as (_, url), sync_playwright() as p:
        browser = launch_chromium(p)
        page, errors = open_app(browser, url)
        name = page.locator("#reviewer-name input, #reviewer-name textarea").first
        name.fill("alice")
        name.press("Enter")
        assert wait_for_new_card(page, None) == hostile
        page.wait_for_function("() => !document.activeElement.closest('#reviewer-name')", timeout=TIMEOUT_MS)

        # hostile markup stays text, and the words are tinted inside it
        assert page.evaluate("() => window.__xss") is None
        assert page.locator("#review-card script:not([type='text/html'][data-slot]), #review-card svg, #review-card img[src='x'], #review-card a").count() == 0
        assert "Piscine hors-sol" in page.locator("#review-card .product-title").inner_text()
        page.wait_for_selector("#review-card .product-title .xw", timeout=TIMEOUT_MS)
        assert page.locator("#heatmaps .x-late[data-applied]").count() == 1      # sent after the card
        assert page.evaluate("() => window.__xss") is None
        tinted = page.locator("#review-card .product-title .xw").all_inner_texts()
        assert any("Piscine" in w for w in tinted), tinted
        r1 = page.locator("#review-card .product-title .xw[class*='r1p']").first
        assert _tint(page, "#review-card .product-title .xw[class*='r1p']") != "rgba(0, 0, 0, 0)"
        assert r1.count() == 1
        summary = page.locator("#review-card .xsum").inner_text()
        top5 = page.locator("#top5 .t5-row .t5-name").all_inner_texts()
        assert "title words" in summary and top5[0].split(" ")[0] in summary

        # (a page scrollbar coming and going with the heatmap area would change every width)
        page.add_style_tag(content="html { overflow-y: scroll !important; }")
        before = _rects(page)
        # T: the words that pushed against the category get their own tint; nothing moves
        against = page.locator("#review-card .xw[class*='r1n']")
        if against.count():
            assert _tint(page, "#review-card .xw[class*='r1n']") == "rgba(0, 0, 0, 0)"
        page.keyboard.press("t")
        assert page.evaluate("() => document.documentElement.classList.contains('x-against')")
        if against.count():
            assert _tint(page, "#review-card .xw[class*='r1n']") != "rgba(0, 0, 0, 0)"
        assert _rects(page) == before
        # the second category's chip (the one that switches the heatmaps) switches the words too
        page.locator("#heatmaps [data-heat]").nth(1).click()
        page.wait_for_function("() => document.querySelector('#review-card .card').classList.contains('xr-2')",
                               timeout=TIMEOUT_MS)
        assert top5[1].split(" ")[0] in page.locator("#review-card .xsum").inner_text()
        assert _rects(page) == before
        page.keyboard.press("t")
        assert not page.evaluate("() => document.documentElement.classList.contains('x-against')")

        # the next card: same layout slots, explained too, back on its own top-1
        page.keyboard.press("Enter")
        wait_for_new_card(page, hostile)
        assert page.locator("#review-card .card.xr-1").count() == 1
        assert page.locator("#review-card .xsum").bounding_box()["height"] == pytest.approx(26, abs=1)

        # try-it: the typed words, tinted the same way
        page.get_by_role("tab", name="Try it").click()
        page.get_by_label("Title").fill("Bâche d'hivernage pour piscine hors-sol 4x8 m")
        page.get_by_role("button", name="Predict").click()
        page.wait_for_selector("#try-words .xw", timeout=TIMEOUT_MS)
        assert "piscine" in " ".join(page.locator("#try-words .xw").all_inner_texts()).lower()
        page.locator("#try-words [data-xrank='3']").click()
        assert page.locator("#try-words .xexp.xr-3").count() == 1

        # Models tab: what the live version learned
        page.get_by_role("tab", name="Models").click()
        page.wait_for_selector("#learned >> text=word n-grams with the largest weights", timeout=TIMEOUT_MS)
        assert "piscine" in page.locator("#learned").inner_text().lower()
        assert errors == []
        browser.close()


def test_models_tab_learned_ngrams_and_what_changed_since_the_previous_version(text_ws, tmp_path):
    import shutil
    from labeler.learned import learned
    from models.text_learned import ngram_names
    from labeler.training import live_bundle, train_version
    from store.workspace import Workspace
    root = tmp_path / "ws"
    shutil.copytree(text_ws, root)
    ws = Workspace(root)
    ws.write(lambda c: c.execute("UPDATE model_versions SET path = replace(path, ?, ?)", (str(text_ws), str(root))))
    first = ws.live_version()
    one = learned(ws, first)
    assert one.parent is None and one.changes == []
    assert "piscine" in " ".join(g for g, _ in one.top[2583])
    assert all(w > 0 for grams in one.top.values() for _, w in grams)
    assert "First version" in views.learned_html(one)

    labels = ws.current_labels()
    keep = dict(sorted(labels.items())[40:])          # a version that learned from fewer products
    second = train_version(ws, evaluate=False, labels=keep, notes="fewer labels")["id"]
    two = learned(ws, second)
    assert two.parent == first and len(two.changes) == 12
    deltas = [abs(c.delta) for c in two.changes]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0
    # the after / before weights are the two models' own weights for that n-gram's hash bucket
    names = {g: b for b, g in ngram_names(((p["title"], p["description"]) for p in ws.products(sorted(labels))),
                                          categories=live_bundle(ws, second).text.categories).items()}
    c = two.changes[0]
    for model, expected in ((live_bundle(ws, second).text, c.after), (live_bundle(ws, first).text, c.before)):
        col = model.word_._remap_table()[names[c.ngram]]
        k = list(model.classes_).index(c.category)
        assert (model.coef_[k, col] if col >= 0 else 0.0) == pytest.approx(expected)
    assert "What changed most since" in views.learned_html(two)
    ws.close()


def test_alignment_skips_what_one_side_lacks_and_reports_text_past_the_display():
    from models.text_explain import _align
    assert _align("abc def", "ABC DEF").tolist() == list(range(7))
    assert _align("abcdef ghi", "abc\u200bdef ghi").tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert _align("oeuvre x", "Œuvre x").tolist() == [0, 0, 1, 2, 3, 4, 5, 6]      # œ -> oe: both on Œ
    assert _align("abc def ghi", "abc def").tolist() == [0, 1, 2, 3, 4, 5, 6, -1, -1, -1, -1]


def test_text_the_display_cuts_is_reported_as_hidden_not_lost(model, split):
    _, X_te, _, _ = split
    row = next(r for r in X_te.itertuples() if len(views.plain(r.description)) > 300)
    shown = views.plain(row.description)[:120]
    exp = explain_text(model, row.title, row.description, display_title=views.plain(row.title),
                       display_description=shown)
    assert exp.hidden != 0.0
    assert all(s.end <= len(shown) for s in exp.spans if s.field == "description")
    assert abs(exp.total - exp.score) < 1e-6
