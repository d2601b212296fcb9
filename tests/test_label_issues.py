"""Confident-learning label issues: the rule on hand-computed arrays, then on the real sample."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labeler import taxonomy
from labeler.importer import import_challenge
from labeler.label_issues import detect_label_issues, label_issues, latest_run, suspect_ids
from models.label_issues import class_thresholds, find_issues
from store.workspace import Workspace

# 4 classes, class 3 has no labelled product. Thresholds (mean self-confidence):
#   t0 = (0.9 + 0.8 + 0.2) / 3 = 0.6333, t1 = (0.8 + 0.5) / 2 = 0.65, t2 = (0.8 + 0.3) / 2 = 0.55, t3 = inf
LABELS = np.array([0, 0, 0, 1, 1, 2, 2])
PROBS = np.array([
    [0.90, 0.05, 0.05, 0.00],   # 0: confident in its label
    [0.80, 0.10, 0.10, 0.00],   # 1: fine
    [0.20, 0.72, 0.08, 0.00],   # 2: label 0 below t0, class 1 above t1 -> issue, margin 0.52
    [0.10, 0.80, 0.10, 0.00],   # 3: fine
    [0.10, 0.50, 0.00, 0.40],   # 4: below t1, but only class 3 (nobody labelled) is high -> not an issue
    [0.10, 0.10, 0.80, 0.00],   # 5: fine
    [0.66, 0.04, 0.30, 0.00],   # 6: label 2 below t2, class 0 above t0 -> issue, margin 0.36
])


def test_thresholds_are_mean_self_confidence_and_inf_for_unlabelled_classes():
    t = class_thresholds(LABELS, PROBS)
    assert t[:3] == pytest.approx([1.9 / 3, 0.65, 0.55])
    assert np.isinf(t[3])


def test_issues_are_flagged_by_the_rule_and_ranked_by_margin():
    issues = find_issues(LABELS, PROBS)
    assert issues.flagged.tolist() == [False, False, True, False, False, False, True]
    assert issues.order.tolist() == [2, 6]
    assert issues.suggested.tolist() == [-1, -1, 1, -1, -1, -1, 0]
    assert issues.margin[2] == pytest.approx(0.52) and issues.margin[6] == pytest.approx(0.36)
    assert np.isnan(issues.margin[[0, 1, 3, 4, 5]]).all()


def test_the_most_probable_confident_class_is_suggested_and_ties_rank_by_position():
    # t0 = (0.9 + 0.9 + 0.0) / 3 = 0.6, t1 = t2 = 0.4
    labels = np.array([0, 0, 1, 1, 2, 2, 0])
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.3, 0.4, 0.3], [0.3, 0.4, 0.3],
                      [0.3, 0.3, 0.4], [0.3, 0.3, 0.4],
                      [0.0, 0.45, 0.55]])   # label 0: classes 1 and 2 both above threshold -> 2 suggested
    issues = find_issues(labels, probs)
    assert issues.order.tolist() == [6]
    assert issues.suggested[6] == 2 and issues.margin[6] == pytest.approx(0.55)
    # equal margins: rows keep their order (t0 = 0.55, t1 = 0.9)
    same = find_issues(np.array([0, 0, 0, 0, 1, 1]),
                       np.array([[1, 0], [1, 0], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]]))
    assert same.order.tolist() == [2, 3]


def test_bad_shapes_are_refused_with_what_was_received():
    with pytest.raises(ValueError, match=r"labels \(3,\) and probs \(2, 2\)"):
        find_issues(np.array([0, 1, 0]), np.eye(2))
    with pytest.raises(ValueError, match=r"column indices in \[0, 2\)"):
        find_issues(np.array([0, 5]), np.eye(2))


def test_flipped_labels_of_the_real_sample_are_mostly_flagged(sample_dir, tmp_path):
    """Flip 10% of 300 real products to another category; out-of-fold text model + the rule."""
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)
    keep = x["designation"].fillna("").str.strip() != ""
    idx = y[keep].sample(n=300, random_state=1).index
    xs, ys = x.loc[idx], y.loc[idx].copy()
    rng = np.random.default_rng(0)
    flip = rng.choice(len(ys), size=30, replace=False)
    codes = taxonomy.codes()
    for i in flip:
        ys.iloc[i, 0] = rng.choice([c for c in codes if c != ys.iloc[i, 0]])
    xs.to_csv(tmp_path / "X.csv")
    ys.to_csv(tmp_path / "Y.csv")
    ws = Workspace(tmp_path / "ws")
    import_challenge(ws, tmp_path / "X.csv", tmp_path / "Y.csv")
    report = detect_label_issues(ws, folds=3)
    flipped = {str(x.loc[idx[i], "productid"]) for i in flip}
    ranked = label_issues(ws)
    assert len(ranked) == report.n_products          # every checked label is ranked, flagged or not
    flagged = {r["product_id"] for r in ranked if r["flagged"]}
    recall = len(flagged & flipped) / len(flipped)
    precision = len(flagged & flipped) / len(flagged)
    assert report.n_products + report.n_skipped == 300 and report.n_flagged == len(flagged)
    assert recall >= 0.6, f"only {recall:.0%} of flipped labels flagged"
    # a weak model (200 training products per fold, 27 categories) flags many true labels too, but
    # the ranking by p(label) puts the flipped ones first: the top of the suspect queue is mostly real
    top = [r["product_id"] for r in label_issues(ws, limit=len(flipped))]
    precision_at_k = len(set(top) & flipped) / len(top)
    print(f"recall {recall:.0%}, precision {precision:.0%}, precision@{len(top)} {precision_at_k:.0%}")
    assert precision > 0.1, f"precision {precision:.0%} is no better than the 10% flip rate"
    assert precision_at_k >= 0.25, f"precision@{len(top)} {precision_at_k:.0%}: ranking does not surface flips"
    run = latest_run(ws)
    assert run["n_flagged"] == len(flagged) and len(run["thresholds"]) == len(set(ys["prdtypecode"]))

    # a reviewer who settles a suspect takes it out of the suspect queue; the stored flags stay
    first = suspect_ids(ws)[0]
    ws.record_decision(first, "ana", "accept", category=ws.product(first)["source_label"])
    assert first not in suspect_ids(ws)
    assert first in {r["product_id"] for r in label_issues(ws, include_reviewed=True)}
    ws.close()


def test_out_of_fold_rows_come_from_models_that_never_saw_them_and_tiny_categories_are_skipped():
    from sklearn.linear_model import LogisticRegression

    from models.label_issues import min_category_size, out_of_fold_probs
    rng = np.random.default_rng(0)
    y = np.array([10] * 12 + [40] * 12 + [50] * 2)        # category 50: too small for 3 folds
    X = rng.normal(size=(len(y), 4)) + np.where(y == 10, 3.0, -3.0)[:, None]
    probs, scored = out_of_fold_probs(X, y, lambda: LogisticRegression(), folds=3, seed=0, codes=taxonomy.codes())
    assert min_category_size(3) == 3 and min_category_size(2) == 4
    assert scored.tolist() == [True] * 24 + [False] * 2
    assert probs.shape == (26, 27) and np.allclose(probs[:24].sum(axis=1), 1) and not probs[24:].any()
    col = {c: j for j, c in enumerate(taxonomy.codes())}
    assert (np.argmax(probs[:24], axis=1) == [col[c] for c in y[:24]]).all()   # separable: all right
    # a product whose label contradicts its features is scored by folds that never saw it: caught
    y_noisy = y.copy()
    y_noisy[0] = 40
    probs, _ = out_of_fold_probs(X, y_noisy, lambda: LogisticRegression(), folds=3, seed=0, codes=taxonomy.codes())
    issues = find_issues(np.array([col[c] for c in y_noisy[:24]]), probs[:24])
    assert issues.order.tolist() == [0] and taxonomy.codes()[issues.suggested[0]] == 10
