"""The app's HTML (labeler.views) and heatmap prefetch cache (labeler.prefetch), without Gradio."""
from __future__ import annotations

import re
import threading
import time
from html.parser import HTMLParser

from PIL import Image

from labeler import taxonomy, views
from labeler.prefetch import NO_IMAGE, NO_IMAGE_MODEL, NO_MODEL, Prefetcher
from labeler.review import Card, Prediction, Vote


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list:
    p = _Tags()
    p.feed(html)
    return p.tags


def _prediction(codes_probs, voters=None) -> Prediction:
    top5 = tuple(Vote(c, taxonomy.name(c), p) for c, p in codes_probs)
    voters = voters or {"text": top5}
    return Prediction(model_version="v001", top5=top5, voters=voters, top1=top5[0].code, top1_prob=top5[0].prob,
                      margin=top5[0].prob - top5[1].prob, entropy=1.0, disagreement=False,
                      auto_accept=top5[0].prob >= 0.8)


def _card(product: dict, pred: Prediction | None) -> Card:
    return Card(product=product, prediction=pred, strategy="least_confidence", score=0.4,
                reason="model top-1 probability 60%", remaining=10, total_remaining=12, reviewed_by_me=2,
                shown_at=time.time(), key="k1")


TOP5 = [(2583, 0.86), (2582, 0.05), (1302, 0.04), (1560, 0.03), (2060, 0.02)]


def test_text_strips_tags_decodes_entities_then_escapes():
    assert views.text("<b>Piscine</b> &amp;amp; <script>alert(1)</script>spa") == "Piscine &amp; alert(1) spa"
    assert views.text('&lt;img src=x onerror="x()"&gt; ok') == "ok"
    assert views.text("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert views.text("x" * 50, limit=10) == "x" * 10 + " …"
    assert views.text(None) == "" and views.text(float("nan")) == ""


def test_card_shows_product_text_as_text_only():
    product = {"id": 'p"1', "title": '<img src=x onerror="steal()">Bâche <i>4x6</i>',
               "description": '<p>Robuste</p><script>steal()</script>\n<a href="javascript:steal()">x</a>',
               "image_path": None, "source_label": 2583}
    html = views.card_html(_card(product, _prediction(TOP5)), None, threshold=0.8)
    tags = tags_of(html)
    assert {t for t, _ in tags} <= {"div", "span", "h2", "b", "code", "em", "p", "br", "ul", "ol", "li", "strong", "i"}
    assert not [a for _, attrs in tags for a in attrs if a.startswith("on")]
    assert 'data-product-id="p&quot;1"' in html
    assert "Bâche 4x6" in html and "Robuste" in html and "auto-accept · 86.0%" in html
    assert "Piscine et accessoires · 2583" in html          # imported label by name


def _desc_of(html: str) -> str:
    start = html.index('<div class="product-desc"')
    start = html.index(">", start) + 1
    return html[start:html.index("</div>", start)]       # the rich description holds no <div>


def test_description_keeps_paragraphs_and_lists_decodes_entities_and_drops_everything_else():
    # shaped like the sample's descriptions (<b>, <br />, <ul><li>, &#39;, "&amp; nbsp;"), plus markup
    # that must not survive: attributes, script, iframe, links, images, encoded tags
    description = ('<b>Pot Marina</b><br /><br /><br /><ul><li><b>Marque</b> : Eda</li>'
                   '<li style="color:red" onclick="steal()">Pays d&#39;origine : France</li></ul>'
                   '<p class="x">TRX-4 &amp; nbsp; Vague &amp;amp; co</p><p>&nbsp;</p>'
                   '<div>Bloc <em>un</em> <i>deux</i> <strong>trois</strong></div>'
                   '<script>steal()</script><iframe src="//evil"></iframe><a href="javascript:steal()">lien</a>'
                   '<img src=x onerror="steal()">&lt;u&gt;encoded&lt;/u&gt;<ol><li>un<li>deux</ol>')
    product = {"id": "p1", "title": "Pot", "description": description, "image_path": None, "source_label": None}
    html = views.card_html(_card(product, _prediction(TOP5)), None, threshold=0.8)
    desc = _desc_of(html)
    tags = tags_of(desc)
    assert [t for t, _ in tags] == ["b", "br", "br", "ul", "li", "b", "li", "p", "p", "em", "i", "strong", "ol",
                                    "li", "li"]
    assert all(attrs == {} for _, attrs in tags)                 # no attribute ever passes
    assert "<li>Pays d'origine : France</li>" in desc            # entities decoded
    assert "TRX-4 Vague &amp; co" in desc and "nbsp" not in desc  # mangled "& nbsp;" is a space
    assert "<p>\xa0</p>" not in desc and "<p> </p>" not in desc    # empty paragraphs dropped
    assert "steal" not in desc and "evil" not in desc and "lien" in desc
    assert "encoded" in desc and "&lt;" not in desc and "<u>" not in desc   # encoded tags: neither shown nor run
    assert "<ol><li>un</li><li>deux</li></ol>" in desc           # unclosed items closed


def test_description_box_scrolls_from_the_keyboard_and_long_text_is_cut_well_formed():
    product = {"id": "p1", "title": "T", "description": "<ul>" + "<li>ligne assez longue</li>" * 400 + "</ul>",
               "image_path": None, "source_label": None}
    html = views.card_html(_card(product, _prediction(TOP5)), None, threshold=0.8)
    box = next(attrs for t, attrs in tags_of(html) if attrs.get("class") == "product-desc")
    assert box.get("tabindex") == "0" and box.get("role") == "region"
    desc = _desc_of(html)
    assert desc.endswith(" …</li></ul>") and desc.count("<li>") == desc.count("</li>")
    assert views.MAX_DESCRIPTION - 20 <= len(re.sub(r"<[^>]*>", "", desc)) <= views.MAX_DESCRIPTION + 2
    assert any(k == "D" for k, _ in views.SHORTCUTS)


def test_a_100000_character_title_is_capped_on_the_card():
    product = {"id": "p1", "title": "Piscine" + "x" * 100_000, "description": "", "image_path": None,
               "source_label": None}
    html = views.card_html(_card(product, _prediction(TOP5)), None, threshold=0.8)
    assert len(html) < 10_000
    shown = html[html.index('<h2 class="product-title"'):html.index("</h2>")]
    assert shown.endswith(" …") and views.MAX_TITLE <= len(shown.split(">", 1)[1]) <= views.MAX_TITLE + 2


def test_top5_rows_carry_keys_names_probabilities_and_backing_voters():
    voters = {"text": tuple(Vote(c, taxonomy.name(c), p) for c, p in TOP5),
              "image": (Vote(2582, taxonomy.name(2582), 0.7),),
              "lite0": (Vote(2583, taxonomy.name(2583), 0.6),)}
    pred = _prediction(TOP5, voters)
    html = views.top5_html(pred, threshold=0.8)
    assert [a["data-pick"] for t, a in tags_of(html) if "data-pick" in a] == ["1", "2", "3", "4", "5"]
    assert "Piscine et accessoires" in html and "86.0%" in html and "5.0%" in html
    votes = views.votes_html(pred)
    assert "2 of 3 models agree with the fused top-1" in votes
    assert votes.count('class="vote ok"') == 2 and votes.count('class="vote warn"') == 1
    assert views.voter_shorts(voters) == {"text": "T", "image": "I", "lite0": "V1"}
    assert "No model prediction" in views.top5_html(None, threshold=0.8)


def test_heatmaps_and_history_escape_captions_and_titles():
    html = views.heatmaps_html([("<b>lite0</b>", "data:image/jpeg;base64,AA==")], category=2583)
    assert "&lt;b&gt;" not in html and "lite0" in html and "Piscine et accessoires · 2583" in html
    note = views.heatmaps_html((), category=None, note="<no image>")
    assert "&lt;no image&gt;" in note
    hist = views.history_html([{"action": "correct", "category": 2583, "title": "<script>x</script>Bâche"}])
    assert "<script" not in hist and "Bâche" in hist and "Piscine" in hist


def test_image_data_uri_reads_real_images_and_survives_bad_files(tmp_path, sample_dir):
    jpg = next((sample_dir / "images" / "image_train").glob("*.jpg"))
    uri = views.image_data_uri(str(jpg))
    assert uri.startswith("data:image/jpeg;base64,") and len(uri) > 1000
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert views.image_data_uri(str(bad)) is None and views.image_data_uri(str(tmp_path / "missing.jpg")) is None
    big = tmp_path / "big.png"
    Image.new("RGB", (1200, 900), "red").save(big)
    assert views.image_data_uri(str(big)).startswith("data:image/jpeg;base64,")


class _Bundle:
    """Stand-in for a loaded model version: the prefetcher only asks whether it has an image
    ensemble and hands it to the explainer (here one that returns real images, no Grad-CAM)."""

    def __init__(self, image):
        self.image = image


def test_prefetch_answers_at_once_when_there_is_nothing_to_compute(sample_dir):
    jpg = str(next((sample_dir / "images" / "image_train").glob("*.jpg")))
    pf = Prefetcher(lambda v: _Bundle(None), explain=None)
    try:
        assert pf.get({"id": "a", "image_path": jpg}, None, None).note == NO_MODEL
        assert pf.get({"id": "a", "image_path": None}, "v1", 10).note == NO_IMAGE
        assert pf.get({"id": "a", "image_path": jpg}, "v1", 10).note == NO_IMAGE_MODEL
    finally:
        pf.close()


def test_prefetch_caches_per_product_version_category_and_serves_the_current_card_first(sample_dir):
    jpgs = [str(p) for p in sorted((sample_dir / "images" / "image_train").glob("*.jpg"))[:6]]
    calls: list[tuple[str, int]] = []
    gate = threading.Event()

    def overlay(bundle, product, category):           # real images, one per "voter"
        gate.wait(10)
        calls.append((product["id"], category))
        with Image.open(product["image_path"]) as im:
            return [("voter A", im.copy()), ("voter B", im.convert("L").convert("RGB"))]

    pf = Prefetcher(lambda v: _Bundle(image=object()), explain=overlay)
    try:
        products = [{"id": f"p{i}", "image_path": p} for i, p in enumerate(jpgs)]
        pf.warm([(p, 10) for p in products[1:5]], "v1")     # queued behind...
        first = pf.request(products[0], "v1", 10)          # ...the card on screen, which jumps ahead
        assert pf.get(products[5], "v1", 10) is None        # not ready, never blocks
        gate.set()
        heat = first.result(timeout=30)
        assert [c for c, _ in heat.items] == ["voter A", "voter B"]
        assert all(uri.startswith("data:image/jpeg;base64,") for _, uri in heat.items)
        assert pf.get(products[4], "v1", 10, wait=30) is not None   # waiting on it moves it up too
        assert calls.index(("p0", 10)) <= 1                 # the worker may have started p1 before p0 arrived
        assert ("p3", 10) not in calls[:calls.index(("p4", 10))]
        n = len(calls)
        assert pf.get(products[0], "v1", 10) is heat        # cached: not computed again
        assert calls.count(("p0", 10)) == 1
        assert pf.get(products[0], "v1", 2583, wait=30).category == 2583   # another category, another entry
        assert ("p0", 2583) in calls[n:]
    finally:
        pf.close()


def test_prefetch_drops_work_its_owner_left_behind(sample_dir):
    jpgs = [str(p) for p in sorted((sample_dir / "images" / "image_train").glob("*.jpg"))[:6]]
    products = [{"id": f"p{i}", "image_path": p} for i, p in enumerate(jpgs)]
    calls: list[str] = []
    gate = threading.Event()

    def overlay(bundle, product, category):
        gate.wait(10)
        calls.append(product["id"])
        with Image.open(product["image_path"]) as im:
            return [("voter", im.copy())]

    pf = Prefetcher(lambda v: _Bundle(image=object()), explain=overlay)
    try:
        busy = pf.request(products[0], "v1", 10)                       # the worker is on p0 (no owner)
        time.sleep(0.2)
        first = pf.want("ana", (products[1], "v1", 10), [(products[2], 10)], "v1")
        other = pf.want("ben", (products[2], "v1", 10), [], "v1")      # ben wants p2 as well
        moved = pf.want("ana", (products[3], "v1", 10), [(products[4], 10)], "v1")   # ana moved on
        assert first.cancelled() and not other.cancelled()
        gate.set()
        assert pf.result(moved, 10, wait=30).items and pf.result(other, 10, wait=30).items
        assert busy.result(timeout=30).items
        assert "p1" not in calls and {"p0", "p2", "p3"} <= set(calls)
        assert pf.get(products[1], "v1", 10, wait=30).items             # asked again later: computed then
    finally:
        pf.close()


def test_retrain_panel_and_versions_rows_say_state_and_escape():
    from labeler.views import retrain_status_html, versions_rows
    running = retrain_status_html({"state": "running", "fraction": 0.42, "message": "fitting <b>text</b>",
                                   "elapsed_s": 12.3})
    assert "42 %" in running and "width:42%" in running and "<b>text" not in running and "fitting text" in running
    failed = retrain_status_html({"state": "failed", "error": "retrain failed: need labels <script>x</script>"})
    assert "Retrain failed</b>: need labels" in failed and "<script>" not in failed and "not changed" in failed
    done = retrain_status_html(None, [("version", "v002 (live)"), ("what changed", "3 decisions")])
    assert "Retrain finished" in done and done.count("<tr>") == 2
    assert "No retrain yet" in retrain_status_html(None)
    assert "run 7, interrupted" in retrain_status_html(None, (), {"id": 7, "status": "interrupted",
                                                                   "started_at": "2026-11-26T03:00:00"})
    rows = versions_rows([
        {"id": "v001", "live": False, "status": "ready", "created_at": "2026-11-26T01:00:00", "n_train": 10,
         "n_decisions": 0, "validation": {}, "compared_to": {}, "changes": "trained by `train`"},
        {"id": "v002", "live": True, "status": "ready", "created_at": "2026-11-26T02:00:00", "n_train": 12,
         "n_decisions": 2, "validation": {"weighted_f1": 0.71234}, "compared_to": {"delta_weighted_f1": -0.012},
         "changes": "<i>2 decisions</i>"}])
    assert [r[0] for r in rows] == ["v002", "v001"]
    assert rows[0][1] == "● live" and rows[0][6] == "0.7123" and rows[0][7] == "-0.0120" and rows[0][8] == "2 decisions"
    assert rows[1][6] == "–" and rows[1][3] == "2026-11-26 01:00:00"


def test_model_metrics_are_named_and_nested_results_flattened():
    """A retrained version's metrics hold dicts (validation, comparison): the Stats tab names
    each figure and never prints a dict's repr."""
    metrics = {"text_weighted_f1": 0.7371, "oof_fused_weighted_f1": 0.8, "n_image_problems": 0, "n_without_image": 12,
               "validation": {"weighted_f1": 0.81, "n": 120},
               "compared_to": {"version": "v001", "metrics": {"weighted_f1": 0.79}, "delta_weighted_f1": 0.02},
               "something_new": 3}
    rows = views.metric_rows(metrics)
    assert rows[0] == ("weighted F1 on the labelled products, out-of-fold (fused, vs previous version)", "0.8100")
    labels = [label.strip() for label, _ in rows]
    assert labels.index("compared with") < labels.index("text model: weighted F1 (cross-validated)")
    assert ("image files that would not decode", "0") in rows and ("something_new", "3") in rows
    page = views.metrics_html({"live": "v002", "metrics": metrics})
    assert "{" not in page and "change in out-of-fold weighted F1" in page and 'class=sub' in page
    # a version trained before n_without_image counted products without a photo as problems
    assert ("labelled products without a usable image", "1529") in views.metric_rows({"n_image_problems": 1529})


def test_the_text_models_tints_lie_over_the_description_paragraphs_and_lists():
    from labeler.text_highlights import Highlights
    description = "<p>Piscine <b>tubulaire</b> ronde</p><script>x()</script><ul><li>Bâche 3,66 m</li><li>pompe</li></ul>"
    flat = views.plain(description)               # what the text model's explanation is computed on
    spans = [(flat.index(w), flat.index(w) + len(w), c) for w, c in (("tubulaire", "r1p2"), ("3,66", "r1n1"),
                                                                       ("pompe", "r1p4"))]
    hl = Highlights(codes=(2583,), title_html="Piscine", description_html=views.highlighted_text_html(flat, spans),
                    summaries=("title words +80 %",))
    product = {"id": "p1", "title": "Piscine", "description": description, "image_path": None, "source_label": None}
    desc = _desc_of(views.card_html(_card(product, _prediction(TOP5)), None, threshold=0.8, highlights=hl))
    assert desc == ('<p>Piscine <b><span class="xw r1p2">tubulaire</span></b> ronde</p><ul><li>Bâche '
                    '<span class="xw r1n1">3,66</span> m</li><li><span class="xw r1p4">pompe</span></li></ul>')
    late = views.late_words_html("k1", hl, product=product)
    assert '<li><span class="xw r1p4">pompe</span></li>' in late      # words computed after the card: same layout
