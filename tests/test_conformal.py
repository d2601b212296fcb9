"""Auto-accept with a guaranteed precision and conformal prediction sets: the pure functions of
models/honest.py on hand-computed arrays and on seeded draws whose truth is known."""
from __future__ import annotations

import numpy as np
import pytest

from models import honest


def test_clopper_pearson_upper_bound_matches_the_closed_form_and_grows_with_errors():
    # no error in n trials: the bound solves (1 - b)^n = 1 - confidence
    for n in (10, 59, 300):
        assert honest.clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    assert honest.clopper_pearson_upper(3, 100) > honest.clopper_pearson_upper(2, 100) > 0.02
    assert honest.clopper_pearson_upper(0, 0) == 1.0 and honest.clopper_pearson_upper(5, 5) == 1.0


def test_the_binary_search_keeps_the_lowest_threshold_passing_its_share_of_the_risk():
    # 200 right answers at p=0.99, 100 at 0.9 with 10 errors, 100 at 0.5 with 50 errors
    p = np.r_[np.full(200, 0.99), np.full(100, 0.9), np.full(100, 0.5)]
    ok = np.r_[np.ones(200, bool), np.arange(100) >= 10, np.arange(100) >= 50]
    a = honest.guaranteed_threshold(p, ok, target=0.95)
    # 9 tests (ceil log2 400), each at 1 - 0.05/9: 0.9 -> 10 errors / 300, bound > 0.05; 0.99 -> 0 / 200 passes
    level = 1 - 0.05 / 9
    assert honest.clopper_pearson_upper(10, 300, level) > 0.05 >= honest.clopper_pearson_upper(0, 200, level)
    assert a.threshold == 0.99 and a.n_auto == 200 and a.precision == 1.0 and a.coverage == 0.5
    assert a.error_bound == pytest.approx(honest.clopper_pearson_upper(0, 200, level), abs=1e-4)
    loose = honest.guaranteed_threshold(p, ok, target=0.90)      # 10 / 300 passes at 0.90
    assert loose.threshold == 0.9 and loose.n_auto == 300 and loose.precision == round(290 / 300, 4)
    none = honest.guaranteed_threshold(np.full(20, 0.99), np.ones(20, bool), target=0.95)
    assert none.threshold is None and none.coverage == 0.0 and not none.accepts(1.0)   # 20 labels: too few
    assert "cannot guarantee 95%" in none.describe()


def test_the_guarantee_holds_on_fresh_products_in_at_least_95_percent_of_seeded_repeats():
    """Calibrated scores whose truth is known: p(right) = top-1 probability (94 % right on average).
    The threshold chosen on 400 calibration products reaches the target on 4,000 fresh ones in
    >= 95 % of 200 repeats."""
    def draw(rng, n):
        p = rng.beta(12, 0.7, n)
        return p, rng.random(n) < p

    for target in (0.90, 0.95):
        met, covered = 0, []
        for seed in range(200):
            rng = np.random.default_rng(seed)
            a = honest.guaranteed_threshold(*draw(rng, 400), target=target)
            p, ok = draw(rng, 4000)
            auto = p >= a.threshold if a.threshold is not None else np.zeros(len(p), bool)
            met += (not auto.any()) or ok[auto].mean() >= target
            covered.append(auto.mean())
        assert met >= 190, (target, met)
        assert np.mean(covered) > 0.1        # and it does accept something: not trivially safe


def test_raps_scores_sets_and_quantile_by_hand():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.4, 0.3, 0.3]])
    # score = mass of the categories at least as probable as the label + 0.1 per rank past the first;
    # the top-1 scores 0 (always in the set); a tie group counts whole and shares its rank
    np.testing.assert_allclose(honest.aps_scores(probs, np.array([1, 0, 2])), [0.9 + 0.1, 1.0 + 0.2, 1.0 + 0.1])
    np.testing.assert_allclose(honest.aps_scores(probs, np.array([0, 1, 0])), [0, 0, 0])
    np.testing.assert_allclose(honest.aps_scores(probs, np.array([1, 0, 1]), lam=0.0), [0.9, 1.0, 1.0])   # APS
    sets = honest.prediction_sets(probs, 0.95)
    assert sets.tolist() == [[True, False, False], [False, True, True], [True, False, False]]
    assert honest.prediction_sets(probs, 0.0).sum(1).tolist() == [1, 1, 1]   # the top-1 always
    # quantile: the ceil((n+1) * 0.9)-th smallest; too few scores -> every category
    assert honest.conformal_quantile(np.arange(1, 20) / 20, 0.9) == pytest.approx(18 / 20)
    assert honest.conformal_quantile(np.array([0.5, 0.6]), 0.9) == float("inf")
    assert honest.fit_conformal(probs, np.array([1, 0, 2])).qhat == 1e9              # stored as 'every category'


def test_conformal_coverage_on_exchangeable_draws_is_within_two_points_of_nominal():
    rng = np.random.default_rng(0)
    k, covs, sizes = 27, [], []
    for _ in range(40):
        logits = rng.normal(0, 2.0, (1500, k))
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = np.array([rng.choice(k, p=row) for row in probs])      # labels drawn from the probabilities
        q = honest.conformal_quantile(honest.aps_scores(probs[:500], y[:500]), 0.9)
        s = honest.prediction_sets(probs[500:], q)
        covs.append(s[np.arange(1000), y[500:]].mean())
        sizes.append(s.sum(1).mean())
    assert abs(np.mean(covs) - 0.9) <= 0.02, np.mean(covs)
    assert 1 < np.mean(sizes) < k


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, "x", None])
def test_a_fraction_outside_zero_one_names_the_value_and_the_range(value):
    with pytest.raises(honest.CalibrationError) as info:
        honest.check_fraction(value, "target precision")
    msg = str(info.value)
    assert f"target precision {value!r}" in msg or f"target precision {value}" in msg
    assert "between 0 and 1" in msg and "\n" not in msg


def test_folds_depend_on_the_product_id_alone_and_are_about_balanced():
    ids = [f"p{i}" for i in range(2000)]
    f = honest.product_folds(ids)
    assert set(f.tolist()) == {0, 1, 2, 3, 4} and np.bincount(f).min() > 340 and np.bincount(f).max() < 460
    # more products labelled later: nobody else changes fold
    assert (honest.product_folds(ids + ["new-1", "new-2"])[:2000] == f).all()
    assert (honest.product_folds(ids[::-1])[::-1] == f).all()
    assert (honest.product_folds(ids, seed=1) != f).any()
