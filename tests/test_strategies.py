"""Query strategies on hand-computed probability arrays, with exact expected indices."""
from __future__ import annotations

import numpy as np
import pytest

from labeler import strategies as S
from labeler.strategies import Context, PoolExhausted, StrategyError

# 3 categories (codes 10, 40, 50) keep the arithmetic checkable by hand.
CODES = (10, 40, 50)
P = np.array([
    [0.90, 0.05, 0.05],   # 0: sure of 10
    [0.40, 0.35, 0.25],   # 1: unsure, close margin (0.05)
    [0.50, 0.50, 0.00],   # 2: tie between 10 and 40 (margin 0)
    [0.34, 0.33, 0.33],   # 3: almost uniform (max entropy)
    [0.60, 0.10, 0.30],   # 4: fairly sure of 10
])


def test_least_confidence_values_and_order():
    s = S.least_confidence(P)
    np.testing.assert_allclose(s, [0.10, 0.60, 0.50, 0.66, 0.40])
    assert S.rank(s).tolist() == [3, 1, 2, 4, 0]


def test_margin_values_and_order():
    s = S.margin(P)
    np.testing.assert_allclose(s, [1 - 0.85, 1 - 0.05, 1.0, 1 - 0.01, 1 - 0.30])
    assert S.rank(s).tolist() == [2, 3, 1, 4, 0]


def test_entropy_values_and_order():
    s = S.entropy(P)
    h = lambda *p: -sum(x * np.log(x) for x in p if x > 0)   # noqa: E731
    np.testing.assert_allclose(s, [h(.9, .05, .05), h(.4, .35, .25), h(.5, .5), h(.34, .33, .33), h(.6, .1, .3)])
    assert S.rank(s).tolist() == [3, 1, 4, 2, 0]  # 1.0986 > 1.0805 > 0.8979 > 0.6931 > 0.3944


def test_disagreement_keeps_only_text_vs_image_conflicts_ranked_by_fused_doubt():
    ctx = Context(codes=CODES, text_top1=np.array([10, 10, 40, 10, 50]), image_top1=np.array([10, 40, 10, 0, 10]))
    s = S.disagreement(P, ctx)
    # row 0 agrees, row 3 has no image: out; rows 1, 2, 4 disagree, ranked by least confidence
    assert np.isneginf(s[[0, 3]]).all()
    assert S.rank(s).tolist() == [1, 2, 4]


def test_disagreement_without_voters_says_what_is_missing():
    with pytest.raises(StrategyError, match="text_top1"):
        S.disagreement(P)


def test_below_threshold_filters_on_the_auto_accept_threshold():
    s = S.below_threshold(P, Context(codes=CODES, threshold=0.55))
    assert S.rank(s).tolist() == [3, 1, 2]   # 0.90 and 0.60 are >= 0.55: left out


def test_category_matches_predicted_or_imported_label():
    ctx = Context(codes=CODES, category=40, source_labels=np.array([40, 0, 10, 50, 0]))
    s = S.category(P, ctx)
    # row 0: imported label 40; row 2: top-1 tie 10/40 -> argmax picks 10 (first column), not 40
    assert S.rank(s).tolist() == [0]
    ctx = Context(codes=CODES, category=10, source_labels=np.array([40, 0, 10, 50, 0]))
    assert S.rank(S.category(P, ctx)).tolist() == [3, 1, 2, 4, 0]


def test_category_unknown_code_lists_the_known_ones():
    with pytest.raises(StrategyError, match="unknown category 99; expected one of 10, 40, 50"):
        S.category(P, Context(codes=CODES, category=99))


def test_suspect_labels_rank_every_labelled_product_least_probable_label_first():
    labels = np.array([40, 10, 0, 10, 50])
    s = S.suspect_labels(P, Context(codes=CODES, source_labels=labels))
    # 1 - p(label): row 0 p(40)=0.05, row 1 p(10)=0.40, row 3 p(10)=0.34, row 4 p(50)=0.30; row 2 unlabelled
    np.testing.assert_allclose(s[[0, 1, 3, 4]], [0.95, 0.60, 0.66, 0.70])
    assert S.rank(s).tolist() == [0, 4, 3, 1]          # every labelled product, not only contradicted ones
    flags = np.array([False, True, False, False, False])
    plain = S.suspect_labels(P, Context(codes=CODES, source_labels=labels, flags=flags))
    assert S.rank(plain).tolist() == [0, 4, 3, 1]      # flags alone do not reorder the plain ranking
    first = S.suspect_labels(P, Context(codes=CODES, source_labels=labels, flags=flags, suspects_flagged_first=True))
    assert S.rank(first).tolist() == [1, 0, 4, 3]      # ... unless flagged products are asked first


def test_largest_set_ranks_by_prediction_set_size_then_least_confidence():
    # RAPS scores (mass of the categories at least as probable + 0.1 per rank past the first, the top-1 0),
    # qhat 0.9: row 0 {10}; row 1 {10, 40} (40: 0.75 + 0.1); row 2: 10 and 40 tie for the top: both in;
    # row 3: the 40/50 tie scores 1.0 + 0.1: {10}; row 4: 50 scores 0.9 + 0.1: {10}
    s = S.largest_set(P, Context(codes=CODES, set_qhat=0.9))
    np.testing.assert_allclose(s, [1 + 0.05, 2 + 0.30, 2 + 0.25, 1 + 0.33, 1 + 0.20])
    assert S.rank(s).tolist() == [1, 2, 3, 4, 0]
    np.testing.assert_allclose(S.largest_set(P, Context()), S.least_confidence(P))   # no calibration yet


def test_random_is_seeded():
    a = S.random(P, Context(seed=3))
    assert np.array_equal(a, S.random(P, Context(seed=3)))
    assert not np.array_equal(a, S.random(P, Context(seed=4)))
    assert sorted(S.rank(a).tolist()) == [0, 1, 2, 3, 4]


def test_ties_are_broken_by_a_seeded_permutation():
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(5)
        tied = sorted([0, 2, 3], key=lambda i: perm[i])
        assert S.rank(scores, seed=seed).tolist() == [1, *tied, 4]
    orders = {tuple(S.rank(scores, seed=seed).tolist()) for seed in range(20)}
    assert len(orders) > 1   # the seed matters only among ties
    assert all(o[0] == 1 and o[-1] == 4 for o in orders)


def test_select_k_and_pool_exhausted():
    s = S.least_confidence(P)
    assert S.select(s, 2, seed=0).tolist() == [3, 1]
    assert S.select(s, 0).tolist() == []
    with pytest.raises(PoolExhausted, match="pool exhausted: 3 available / 4 requested"):
        S.select(S.below_threshold(P, Context(codes=CODES, threshold=0.55)), 4)


def test_bad_shapes_are_named():
    with pytest.raises(StrategyError, match=r"shape \(3,\)"):
        S.least_confidence(np.array([0.2, 0.3, 0.5]))
    with pytest.raises(StrategyError, match=r"shape \(2, 2\)"):
        S.rank(np.zeros((2, 2)))


def test_registry_has_every_app_strategy_with_a_description():
    expected = {"least_confidence", "margin", "entropy", "disagreement", "below_threshold", "random",
                "category", "suspect_labels", "largest_set"}
    assert set(S.STRATEGIES) == expected
    for name, strat in S.STRATEGIES.items():
        assert strat.name == name and strat.description and "\n" not in strat.description
        assert S.describe_score(name, 0.25)


def test_unknown_strategy_suggests_close_names():
    with pytest.raises(StrategyError, match="did you mean margin"):
        S.get("margn")


def test_context_from_full_arrays_matches_top1_codes():
    text = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    image = np.array([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    ctx = Context.from_arrays(text_probs=text, image_probs=image, has_image=np.array([True, False]), codes=CODES)
    assert ctx.text_top1.tolist() == [10, 40] and ctx.image_top1.tolist() == [50, 0]
    assert S.rank(S.disagreement(P[:2], ctx)).tolist() == [0]


def test_strategies_accept_27_column_taxonomy_arrays():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(27), size=50)
    for name in ("least_confidence", "margin", "entropy", "below_threshold", "random"):
        s = S.STRATEGIES[name](probs, Context())
        assert s.shape == (50,)
    assert S.rank(S.least_confidence(probs))[0] == int(np.argmin(probs.max(axis=1)))
