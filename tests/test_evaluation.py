"""Metric functions on hand-computed inputs."""
from __future__ import annotations

import numpy as np
import pytest

from labeler import evaluation, taxonomy


def test_automation_share_and_precision():
    y_true = np.array([10, 40, 50, 60, 10])
    y_pred = np.array([10, 40, 10, 60, 40])
    prob = np.array([0.95, 0.80, 0.85, 0.30, 0.50])
    a = evaluation.automation(y_true, y_pred, prob, 0.80)
    assert (a.n_auto, a.coverage, a.precision) == (3, 0.6, pytest.approx(2 / 3, abs=1e-4))
    assert evaluation.automation(y_true, y_pred, prob, 0.99).precision is None


def test_evaluate_headline_figures_and_per_class_names():
    y_true = [10, 10, 40, 40, 2583, 2583]
    y_pred = [10, 40, 40, 40, 2583, 10]
    top_k = np.array([[10, 40], [40, 10], [40, 50], [40, 10], [2583, 10], [10, 2582]])
    ev = evaluation.evaluate(y_true, y_pred, [0.9] * 6, threshold=0.8, top_k=top_k,
                             by_model={"text": np.array([10, 10, 40, 40, 2583, 2583]),
                                       "image": np.array([np.nan, 40, np.nan, 40, 2583, np.nan])})
    assert ev.accuracy == pytest.approx(4 / 6, abs=1e-4)
    assert ev.top5_accuracy == pytest.approx(5 / 6, abs=1e-4)
    # per class F1: 10 -> p=1/2 r=1/2; 40 -> p=2/3 r=1; 2583 -> p=1 r=1/2
    f1 = {10: 0.5, 40: 0.8, 2583: 2 / 3}
    assert ev.macro_f1 == pytest.approx(np.mean(list(f1.values())), abs=1e-4)
    assert ev.weighted_f1 == pytest.approx(np.mean(list(f1.values())), abs=1e-4)   # equal supports
    table = ev.per_class.set_index("code")
    assert table.loc[2583, "name"] == taxonomy.name(2583) and table.loc[40, "recall"] == 1.0
    assert ev.confusion.shape == (27, 27) and ev.confusion.sum() == 6
    i10, i40 = taxonomy.codes().index(10), taxonomy.codes().index(40)
    assert ev.confusion[i10, i40] == 1
    models = ev.by_model.set_index("model")
    assert models.loc["text", "accuracy"] == 1.0 and models.loc["image", "n"] == 3
    report = evaluation.format_report(ev)
    assert "top-1 prob >= 0.80  100.0% of products (6), precision 0.6667" in report


def test_nothing_to_evaluate_is_an_error():
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluation.evaluate([], [], [])
