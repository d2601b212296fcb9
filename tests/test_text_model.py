"""Text model: estimator contract, HTML cleaning, robustness, and real-data quality on the shared sample.

The quality test fits the reference recipe and the shipped model on the same fixed split of the
real sample; the shipped model must beat it by a real margin (measured: see docs/text_model.md).
"""
from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from models.text import TextClassifier, TextConfig, fit_temperature, softmax
from models.text_features import char_wb_ngrams, word_ngrams
from labeler.taxonomy import TAXONOMY_PATH
from models.text_prior import (PATTERN_NAMES, CategoryText, category_documents, pattern_features,
                                read_category_texts)
from models.text_reference import ReferenceTextClassifier
from models.textclean import clean_text, fold

# the quality bar of the test split below: shipped - reference weighted F1 (measured +0.05)
MIN_MARGIN = 0.025
# the Rakuten taxonomy's names, descriptions and keywords: the text prior's parameter
CATS = read_category_texts(TAXONOMY_PATH)


def _sample(sample_dir) -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"].loc[X.index].to_numpy()
    return pd.DataFrame({"title": X["designation"].fillna(""), "description": X["description"]}).reset_index(drop=True), y


@pytest.fixture(scope="module")
def split(sample_dir):
    X, y = _sample(sample_dir)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def fitted(split) -> TextClassifier:
    X_tr, X_te, y_tr, _ = split
    # as the training service fits it: every workspace text (the held-out ones too) shapes the vocabulary
    return TextClassifier(categories=CATS).fit(X_tr, y_tr, X_unlabeled=X_te)


# -- cleaning -----------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("L&amp;#39;Huile", "L'Huile"),                              # double-escaped numeric entity
    ("Protégez &amp; amp; Ajustement", "Protégez & Ajustement"),  # entity split from its ampersand
    ("Tapestry &amp; nbsp Mode", "Tapestry Mode"),
    ("A&eacute;roport &lt;b&gt;", "Aéroport"),                    # escaped tag is still a tag
    ("<p>Bonjour<br/>le&nbsp;monde</p>", "Bonjour le monde"),
    ("Black & Decker 5 < 6", "Black & Decker 5 < 6"),             # a bare & or < is text
    ("  many \n\t spaces  ", "many spaces"),
    ("zero\u200bwidth\ufeff", "zerowidth"),
    (None, ""), (float("nan"), ""), (pd.NA, ""),
])
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_fold_lowercases_and_strips_accents():
    assert fold("Élève Œuvre À ÇA 180×200") == "eleve oeuvre a ca 180x200"


def test_char_wb_ngrams_match_sklearn():
    from sklearn.feature_extraction.text import CountVectorizer
    analyzer = CountVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=False).build_analyzer()
    for text in ["le petit chat noir", "a bb ccc dddd", "x", "", "  double  space  "]:
        assert sorted(char_wb_ngrams(text)) == sorted(analyzer(text))
    assert word_ngrams("jeu en telechargement") == ["jeu", "en", "telechargement", "jeu en", "en telechargement"]


def test_pattern_features_see_marketplace_signals():
    titles = ["Anno 2070 - Jeu En Téléchargement", "Le Monde N° 1234 Du 12/05/1998", "Matelas 180x200 Cm",
              "the history of the world", "kit de désinfection pour piscines", ""]
    P = pattern_features(titles, ["", "", "<p>x</p>", "", "", ""], ["", "", "<p>x</p>", "", "", ""])
    col = {name: i for i, name in enumerate(PATTERN_NAMES)}
    assert P.shape == (6, len(PATTERN_NAMES)) and np.isfinite(P).all() and P.min() >= 0 and P.max() <= 1
    assert P[0, col["download"]] > 0 and P[1, col["issue_number"]] > 0 and P[1, col["date"]] > 0
    assert P[2, col["size_axb"]] > 0 and P[2, col["has_description"]] == 1
    assert P[3, col["title_en"]] > P[3, col["title_fr"]]
    assert P[4, col["title_lowercase_words"]] > 0.5 > P[0, col["title_lowercase_words"]]


def test_category_documents_cover_the_taxonomy():
    titles, codes = category_documents(CATS)
    assert len(set(codes)) == 27 and len(titles) == len(codes) > 27 * 20
    titles, codes = category_documents(CATS, [2905, 10])
    assert set(codes) == {10, 2905} and "jeu en téléchargement" in titles
    assert len(category_documents(None)[0]) == 0   # no taxonomy: no prior


def test_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3000, 5))
    probs = softmax(scores, 0.5)
    y = np.array([rng.choice(5, p=p) for p in probs])
    assert fit_temperature(scores, y) == pytest.approx(0.5, rel=0.15)


# -- estimator contract -------------------------------------------------------------------------
def test_not_fitted_raises():
    with pytest.raises(NotFittedError):
        TextClassifier().predict_proba(pd.DataFrame({"title": ["x"], "description": [""]}))


def test_contract(fitted, split):
    _, X_te, y_tr, _ = split
    assert list(fitted.classes_) == sorted(set(y_tr))
    P = fitted.predict_proba(X_te.iloc[:40])
    assert P.shape == (40, len(fitted.classes_))
    assert np.allclose(P.sum(axis=1), 1.0) and (P >= 0).all()
    assert set(fitted.predict(X_te.iloc[:40])) <= set(fitted.classes_)
    info = fitted.describe()
    json.dumps(info)
    assert info["n_train"] == len(y_tr) and info["temperature"] > 0


def test_fit_returns_self_and_rejects_mismatched_labels(split):
    X_tr, _, y_tr, _ = split
    model = TextClassifier()
    assert model.fit(X_tr.iloc[:200], y_tr[:200]) is model
    with pytest.raises(ValueError, match="labels"):
        TextClassifier().fit(X_tr.iloc[:10], y_tr[:9])


def test_predictions_do_not_depend_on_the_batch(fitted, split):
    """Any batch, even one of 150 unseen products: the fitted model as is, row by row
    (tests/test_scoring_pure.py checks it to 1e-9 for text and fused over batches of 1-500)."""
    _, X_te, _, _ = split
    batch = X_te.iloc[:150]
    together = fitted.predict_proba(batch)
    alone = np.vstack([fitted.predict_proba(batch.iloc[i:i + 1]) for i in range(5)])
    assert np.abs(together[:5] - alone).max() < 1e-9


def test_adapt_is_the_explicit_batch_dependent_opt_in(split):
    """adapt=True refits with the call's unseen texts: the same product then scores differently
    alone and in a batch of 150 unseen ones; without it, identically."""
    X_tr, X_te, y_tr, _ = split
    model = TextClassifier(categories=CATS).fit(X_tr.iloc[:600], y_tr[:600])
    batch = X_te.iloc[:150]
    assert np.abs(model.predict_proba(batch, adapt=True)[:1] - model.predict_proba(batch.iloc[:1], adapt=True)).max() > 1e-6
    assert np.abs(model.predict_proba(batch)[:1] - model.predict_proba(batch.iloc[:1])).max() < 1e-9


def test_saved_model_predicts_the_same(fitted, split, tmp_path):
    _, X_te, _, _ = split
    joblib.dump(fitted, tmp_path / "text.joblib")
    again = joblib.load(tmp_path / "text.joblib")
    assert np.allclose(again.predict_proba(X_te.iloc[:150]), fitted.predict_proba(X_te.iloc[:150]))


def test_robust_to_empty_and_odd_text(fitted):
    odd = pd.DataFrame({
        "title": ["Trampoline", "🎮🎮🎮", "ＦＵＬＬ-ＷＩＤＴＨ ｔｅｘｔ", "كتاب عربي", "書籍 漫画", "e\u0301le\u0300ve",
                  "!!!", "1234567890", "x" * 5000, "Matelas"],
        "description": [np.nan, None, "", "<div><script>x</script></div>", "&amp;&amp;&amp;", "\x00\x01 ctrl",
                        "a" * 100_000, pd.NA, "", "Très ferme " * 2000],
    })
    P = fitted.predict_proba(odd)
    assert P.shape == (len(odd), len(fitted.classes_)) and np.isfinite(P).all()
    assert np.allclose(P.sum(axis=1), 1.0)
    titles_only = fitted.predict_proba(odd[["title"]])   # no description column at all
    assert np.allclose(titles_only.sum(axis=1), 1.0)


def test_labels_that_are_not_category_codes(split):
    X_tr, X_te, y_tr, _ = split
    y = np.where(np.isin(y_tr, [10, 2705, 2403, 2280]), "books", "other")
    model = TextClassifier(categories=CATS).fit(X_tr, y)
    assert list(model.classes_) == ["books", "other"] and model.describe()["n_prior_documents"] == 0
    assert np.allclose(model.predict_proba(X_te.iloc[:20]).sum(axis=1), 1.0)


# -- what the labels do not show ----------------------------------------------------------------
def test_keyword_prior_names_categories_no_labelled_title_shows(split):
    """'trampoline' and 'quadricoptère' are removed from every training product: only the taxonomy
    keywords can tie them to their categories."""
    X_tr, _, y_tr, _ = split
    text = (X_tr["title"].fillna("") + " " + X_tr["description"].fillna("")).map(lambda s: fold(clean_text(s)))
    keep = ~text.str.contains("trampoline|quadricoptere")
    probe = pd.DataFrame({"title": ["Trampoline", "Quadricoptère"], "description": ["", ""]})
    with_prior = TextClassifier(categories=CATS).fit(X_tr[keep], y_tr[keep])
    without = TextClassifier(categories=CATS, config=TextConfig(prior_weight=0)).fit(X_tr[keep], y_tr[keep])
    no_taxonomy = TextClassifier().fit(X_tr[keep], y_tr[keep])
    assert list(with_prior.predict(probe)) == [1302, 1300]
    assert list(without.predict(probe)) != [1302, 1300]
    assert no_taxonomy.describe()["n_prior_documents"] == 0


def test_a_taxonomy_with_string_codes_gets_its_prior(split):
    """Codes are whatever y holds: the same categories renamed 'toys', 'drones', ... still get their
    keywords' weight (nothing in the model assumes the 27 integer codes)."""
    X_tr, _, y_tr, _ = split
    text = (X_tr["title"].fillna("") + " " + X_tr["description"].fillna("")).map(lambda s: fold(clean_text(s)))
    keep = ~text.str.contains("trampoline|quadricoptere").to_numpy()
    renamed = {c.code: f"cat-{c.code}" for c in CATS}
    cats = tuple(CategoryText(renamed[c.code], c.name, c.description, c.keywords) for c in CATS)
    y = np.array([renamed[c] for c in y_tr])
    model = TextClassifier(categories=cats).fit(X_tr[keep], y[keep])
    probe = pd.DataFrame({"title": ["Trampoline", "Quadricoptère"], "description": ["", ""]})
    assert list(model.predict(probe)) == ["cat-1302", "cat-1300"] and model.describe()["n_prior_documents"] > 27


def test_unlabelled_texts_enter_the_vocabulary(split):
    X_tr, X_te, y_tr, _ = split
    plain = TextClassifier(config=TextConfig(transductive_min_new=0)).fit(X_tr, y_tr)
    semi = TextClassifier(config=TextConfig(transductive_min_new=0)).fit(X_tr, y_tr, X_unlabeled=X_te)
    assert 0.95 * len(X_te) < semi.describe()["n_unlabeled"] <= len(X_te)   # exact repeats of training texts dropped
    assert semi.word_.n_columns > plain.word_.n_columns
    # passing every workspace product (the labelled ones included) counts no labelled text twice
    everything = TextClassifier(config=TextConfig(transductive_min_new=0)).fit(
        X_tr, y_tr, X_unlabeled=pd.concat([X_tr, X_te, X_te]))
    assert everything.n_unlabeled_ == semi.n_unlabeled_
    assert np.array_equal(everything.word_.columns_, semi.word_.columns_)


def test_beats_the_reference_recipe_on_held_out_real_products(fitted, split):
    X_tr, X_te, y_tr, y_te = split
    reference = ReferenceTextClassifier().fit(X_tr, y_tr)
    f1_ref = f1_score(y_te, reference.predict(X_te), average="weighted")
    f1_new = f1_score(y_te, fitted.predict(X_te), average="weighted")   # X_te's texts were unlabelled at fit
    assert f1_new >= f1_ref + MIN_MARGIN, f"shipped {f1_new:.4f} vs reference {f1_ref:.4f}"
