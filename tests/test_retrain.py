"""Retraining on real workspaces of the Rakuten sample: decisions learned, rollback, kills, failures.

The base workspace is imported once per module through the real importer (10 labelled products
per category plus 300 unlabelled ones, 30 of them swimming-pool products) and trained once;
every test works on its own copy of it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labeler import review
from labeler.config import Settings
from labeler.importer import import_challenge
from labeler.model_versions import versions_table
from labeler.retrain import RetrainFailed, retrain
from labeler.retrain_runner import current_retrain, start_background_retrain
from labeler.rollback import rollback
from labeler.runs import RetrainBusy, retrain_state
from labeler import training
from store.workspace import Workspace, WorkspaceError

ROOT = Path(__file__).resolve().parent.parent
POOL, GARDEN = 2583, 2582          # reviewers decide pool products belong to garden furniture


def _copy(src: Path, dest: Path) -> Workspace:
    shutil.copytree(src, dest)
    return Workspace(dest)


def _freeze(ws: Workspace) -> Path:
    ws.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ws.close()
    return ws.root


def _predictions(ws: Workspace, version: str) -> dict[str, tuple]:
    return {r["product_id"]: (r["top1"], r["probs"]) for r in ws.query(
        "SELECT product_id, top1, probs FROM predictions WHERE model_version = ?", (version,))}


@pytest.fixture(scope="module")
def base(sample_dir, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("retrain-base")
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)
    x = x[x["designation"].fillna("").str.strip() != ""]
    y = y.loc[x.index]
    labelled = y.sample(frac=1.0, random_state=0).groupby("prdtypecode").head(10).index
    rest = y.drop(labelled)
    unlabelled = rest[rest["prdtypecode"] == POOL].index[:30].union(
        rest[rest["prdtypecode"] != POOL].sample(n=270, random_state=0).index)
    x.loc[labelled].to_csv(tmp / "X_labelled.csv")
    y.loc[labelled].to_csv(tmp / "Y_labelled.csv")
    x.loc[unlabelled].to_csv(tmp / "X_unlabelled.csv")
    ws = Workspace(tmp / "ws")
    import_challenge(ws, tmp / "X_labelled.csv", tmp / "Y_labelled.csv")
    import_challenge(ws, tmp / "X_unlabelled.csv")
    first = training.train_version(ws, evaluate=False, notes="initial")["id"]
    truth = {str(x.loc[i, "productid"]): int(y.loc[i, "prdtypecode"]) for i in unlabelled}
    return {"path": _freeze(ws), "first": first, "truth": truth}


@pytest.fixture(scope="module")
def corrected(base, tmp_path_factory) -> dict:
    """Pool products corrected to garden furniture through the review workflow, then a background
    retrain (the app's Retrain button path). Observations are returned for the tests to check."""
    ws = _copy(base["path"], tmp_path_factory.mktemp("retrain-corrected") / "ws")
    pool_train = [r["id"] for r in ws.query("SELECT id FROM products WHERE source_label = ? ORDER BY id", (POOL,))]
    pool_unlabelled = [p for p, c in base["truth"].items() if c == POOL]
    before = _predictions(ws, base["first"])
    queue_before = review.ranking(ws, "least_confidence").ids
    for pid in pool_train:
        review.decide(ws, "ana", pid, "correct", category=GARDEN)
    # overlapping reviewers disagree on a book: two say video game, the latest says accessory
    disputed = next(r["id"] for r in ws.query("SELECT id FROM products WHERE source_label = 10 ORDER BY id"))
    for reviewer, category in (("bob", 40), ("cid", 40), ("ana", 50)):
        review.decide(ws, reviewer, disputed, "correct", category=category)
    handle = start_background_retrain(ws)
    obs = {"same_handle": start_background_retrain(ws) is handle, "busy": None, "progress": []}
    while not retrain_state(ws) and not handle.done:     # its run row exists: the workspace is taken
        time.sleep(0.01)
    try:
        retrain(ws)
    except RetrainBusy as exc:
        obs["busy"] = str(exc)
    while not handle.done:
        obs["progress"].append(handle.status())
        time.sleep(0.05)
    assert handle.error is None, handle.error
    return {**obs, "ws": ws, "result": handle.result, "status": handle.status(), "pool_train": pool_train,
            "pool_unlabelled": pool_unlabelled, "before": before, "queue_before": queue_before,
            "first": base["first"], "disputed": disputed}


def test_reviewer_corrections_are_learned_by_the_next_version(corrected):
    ws, result = corrected["ws"], corrected["result"]
    assert result.went_live and ws.live_version() == result.version
    assert result.previous == corrected["first"]
    assert result.n_decisions == len(corrected["pool_train"]) + 1 and len(corrected["pool_train"]) >= 5
    assert result.n_train == len(ws.current_labels())          # nothing held out: every label is learned
    after = _predictions(ws, result.version)
    # the corrected products themselves now come out as garden furniture...
    learned = np.mean([after[p][0] == GARDEN for p in corrected["pool_train"]])
    assert learned >= 0.8, f"only {learned:.0%} of corrected products predicted as {GARDEN}"
    # ...and so do unlabelled pool products the reviewers never saw, which the old version called pool
    old = np.mean([corrected["before"][p][0] == GARDEN for p in corrected["pool_unlabelled"]])
    new = np.mean([after[p][0] == GARDEN for p in corrected["pool_unlabelled"]])
    was_pool = np.mean([corrected["before"][p][0] == POOL for p in corrected["pool_unlabelled"]])
    print(f"corrected learned {learned:.0%}; unseen pool products: pool before {was_pool:.0%}, "
          f"garden before {old:.0%}, garden after {new:.0%}")
    assert was_pool >= 0.5 and old <= 0.1 and new >= 0.4, (was_pool, old, new)
    # every product was re-scored by the new version; the old version's rows are untouched
    assert set(after) == {r["id"] for r in ws.query("SELECT id FROM products")}
    assert _predictions(ws, corrected["first"]) == corrected["before"]


def test_the_running_app_switches_to_the_new_version_and_reorders_the_queue(corrected):
    ws, result = corrected["ws"], corrected["result"]
    assert training.live_bundle(ws).version == result.version     # no restart: the pointer is read each call
    card = review.next_card(ws, "ben")
    assert card.prediction.model_version == result.version
    queue = review.ranking(ws, "least_confidence").ids
    assert queue != corrected["queue_before"]
    top = queue[:50]
    probs = {r["product_id"]: r["top1_prob"] for r in ws.query(
        "SELECT product_id, top1_prob FROM predictions WHERE model_version = ?", (result.version,))}
    assert [probs[p] for p in top] == sorted(probs[p] for p in top)   # ranked by the NEW version
    assert card.product_id not in set(corrected["pool_train"])        # decided products left the queue
    review.release(ws, "ben")


def test_background_retrain_runs_one_at_a_time_and_reports_progress(corrected):
    assert corrected["same_handle"]
    assert corrected["busy"] is not None and "already running" in corrected["busy"]
    fractions = [s["fraction"] for s in corrected["progress"]]
    assert fractions == sorted(fractions) and any(0 < f < 1 for f in fractions)
    assert corrected["status"]["state"] == "succeeded" and corrected["status"]["went_live"] is True
    assert current_retrain(corrected["ws"]).result is corrected["result"]
    runs = retrain_state(corrected["ws"])
    assert runs[0]["status"] == "succeeded" and runs[0]["trigger"] == "app" and runs[0]["went_live"] == 1


def test_versions_record_out_of_fold_comparison_sizes_and_what_changed(corrected):
    ws, result = corrected["ws"], corrected["result"]
    table = {v["id"]: v for v in versions_table(ws)}
    new = table[result.version]
    assert new["live"] and not table[corrected["first"]]["live"]
    for m in (new["validation"], new["compared_to"]["metrics"]):
        assert set(m) >= {"weighted_f1", "macro_f1", "accuracy", "n"}
        assert 0 <= m["weighted_f1"] <= 1 and m["n"] == len(ws.current_labels())
    assert new["validation"]["out_of_fold"] == len(ws.current_labels())
    # the first version (train) scored its labelled products out of fold too: a fair comparison, with a delta
    assert new["compared_to"]["in_sample"] is False and new["compared_to"]["delta_weighted_f1"] is not None
    assert f"{len(corrected['pool_train']) + 3} decisions since {corrected['first']}" in new["changes"]
    assert new["n_train"] == result.n_train and new["n_decisions"] == result.n_decisions
    assert new["duration_s"] > 0
    snapshot = json.loads((Path(ws.model_version(result.version)["path"]).parent / "training_labels.json").read_text())
    assert {snapshot["train"][p] for p in corrected["pool_train"]} == {GARDEN}
    assert snapshot["validation"] == [] and set(snapshot["train"]) == set(ws.current_labels())


def test_rollback_restores_the_parent_and_scores_products_it_never_saw(corrected, sample_dir, tmp_path):
    ws = _copy(_freeze(corrected["ws"]), tmp_path / "ws")
    new, first = corrected["result"].version, corrected["first"]
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    known = {r["id"] for r in ws.query("SELECT id FROM products")}
    extra = x[~x["productid"].astype(str).isin(known) & (x["designation"].fillna("").str.strip() != "")].head(5)
    extra.to_csv(tmp_path / "X_extra.csv")
    import_challenge(ws, tmp_path / "X_extra.csv")           # imported after both versions scored
    out = rollback(ws)
    assert out == {"version": first, "previous": new, "rescored": 5}
    assert ws.live_version() == first and training.live_bundle(ws).version == first
    assert review.next_card(ws, "cleo").prediction.model_version == first
    review.release(ws, "cleo")
    assert all(ws.prediction(str(p)) is not None for p in extra["productid"])
    assert rollback(ws, new)["version"] == new and ws.live_version() == new     # and forward again
    history = ws.query("SELECT version, previous, reason FROM live_history ORDER BY id")
    assert [h["version"] for h in history] == [first, new, first, new]   # the first training's move too
    assert history[2]["reason"] == f"rollback from {new}"
    with pytest.raises(WorkspaceError, match=f"unknown model version 'v999'.*known: {first}, {new}"):
        rollback(ws, "v999")
    rollback(ws, first)
    with pytest.raises(WorkspaceError, match=f"live version {first} has no parent"):
        rollback(ws)
    ws.close()


def test_the_app_warms_a_version_made_live_by_another_process(corrected, tmp_path):
    """The CLI rolls back while the app serves: the app ranks that version's queue on its own."""
    from labeler.app import build_app
    root = _freeze(corrected["ws"])
    ws = _copy(root, tmp_path / "ws")
    new, first = corrected["result"].version, corrected["first"]
    demo = build_app(ws, Settings(workspace=ws.root))
    ui = demo.review_ui
    try:
        ui.warming.join(60)
        watcher = ui.watch_live(every=0.05)
        cli = Workspace(ws.root)                      # another connection, as the CLI's process
        assert rollback(cli, first)["previous"] == new
        cli.close()
        deadline = time.monotonic() + 60
        while not any(key[0] == first for key in review._state(ws).rankings) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(key[0] == first for key in review._state(ws).rankings)
        ui.warming.join(60)
        built = next(r for key, r in review._state(ws).rankings.items() if key[0] == first)
        assert review.ranking(ws, "least_confidence", settings=ui.settings) is built   # the next card's
    finally:
        ui.prefetch.close()
    watcher.join(10)
    assert not watcher.is_alive()
    ws.close()


def test_a_gated_retrain_keeps_a_worse_version_ready_but_not_live(corrected, tmp_path):
    ws = _copy(_freeze(corrected["ws"]), tmp_path / "ws")
    live = corrected["result"].version          # trained by retrain: a fair comparison this time
    rng = np.random.default_rng(0)
    codes = sorted({c for c in ws.current_labels().values()})
    # a careless reviewer scrambles most training labels
    for r in ws.query("SELECT id FROM products WHERE source_label IS NOT NULL ORDER BY id"):
        if rng.random() < 0.7:
            ws.record_decision(r["id"], "zed", "correct", category=int(rng.choice(codes)))
    result = retrain(ws, min_delta=0.02)
    assert not result.previous_in_sample and result.delta_weighted_f1 < -0.02
    assert not result.went_live and ws.live_version() == live == result.live
    assert "not put live" in result.warning and f"rollback {result.version}" in result.warning
    assert ws.model_version(result.version)["status"] == "ready"
    assert review.next_card(ws, "hal").prediction.model_version == live
    review.release(ws, "hal")
    assert rollback(ws, result.version)["version"] == result.version     # promoted on purpose
    assert ws.live_version() == result.version
    ws.close()


RETRAIN_IN_CHILD = textwrap.dedent("""
    from store.workspace import Workspace
    from labeler.retrain import retrain
    retrain(Workspace({ws!r}), trigger="cli")
""")


@pytest.mark.parametrize("stage", ["fitting", "scoring"])
def test_a_retrain_killed_midway_leaves_the_previous_version_serving(base, tmp_path, stage):
    ws = _copy(base["path"], tmp_path / "ws")
    first = base["first"]
    before = _predictions(ws, first)
    child = subprocess.Popen([sys.executable, "-c", RETRAIN_IN_CHILD.format(ws=str(ws.root))], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and child.poll() is None:
            run = ws.query("SELECT * FROM retrain_runs ORDER BY id DESC LIMIT 1")
            if stage == "fitting" and run and "fitting" in run[0]["message"]:
                break
            if stage == "scoring" and run and run[0]["version"] and ws.query(
                    "SELECT 1 FROM model_versions WHERE id = ?", (run[0]["version"],)):
                break             # registered: train_version is scoring every product now
            time.sleep(0.01)
        assert child.poll() is None, f"retrain ended before the kill: {child.stderr.read().decode()[-500:]}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert ws.live_version() == first
    assert _predictions(ws, first) == before
    card = review.next_card(ws, "dan")
    assert card.prediction.model_version == first
    review.release(ws, "dan")
    run = ws.query("SELECT * FROM retrain_runs")[0]
    assert run["status"] == "running" and run["pid"] == child.pid       # the dead process could not record

    if stage == "scoring":   # the next retrain recognises the dead run, retires its version, and works
        result = retrain(ws)
        runs = {r["id"]: r for r in retrain_state(ws)}
        assert runs[run["id"]]["status"] == "interrupted" and "process" in runs[run["id"]]["error"]
        half_built = ws.model_version(run["version"])
        assert half_built["status"] == "failed" and "interrupted" in half_built["notes"]
        assert result.went_live and ws.live_version() == result.version != run["version"]
        with pytest.raises(WorkspaceError, match="failed"):
            rollback(ws, run["version"])
    ws.close()


def test_a_retrain_that_cannot_train_keeps_the_live_version_and_says_why(base, tmp_path):
    ws = _copy(base["path"], tmp_path / "ws")
    # a reviewer folds every labelled product into one category: nothing left to tell apart
    for r in ws.query("SELECT id FROM products WHERE source_label IS NOT NULL"):
        ws.record_decision(r["id"], "eve", "correct", category=GARDEN)
    with pytest.raises(RetrainFailed, match=rf"nothing to tell apart: the 270 labelled products are all in one "
                                            rf"category.*{base['first']} is still live") as info:
        retrain(ws)
    assert ws.live_version() == base["first"]
    run = retrain_state(ws)[0]
    assert run["status"] == "failed" and "two categories" in run["error"] and run["id"] == info.value.run_id
    assert "Traceback" not in str(info.value) and "ValueError" not in str(info.value)
    assert [v["id"] for v in ws.model_versions()] == [base["first"]]   # nothing half-registered
    ws.close()


def test_a_failure_while_scoring_marks_the_version_failed_and_keeps_the_live_one(base, tmp_path, monkeypatch):
    """Fault injection: the real scoring runs, then the disk 'fills up' before the last batch."""
    ws = _copy(base["path"], tmp_path / "ws")
    real = training.score_products

    def disk_full_midway(ws_, bundle, ids=None, batch_size=2048, progress=None):
        all_ids = [r["id"] for r in ws_.query("SELECT id FROM products ORDER BY rowid")]
        real(ws_, bundle, ids=all_ids[: len(all_ids) // 2], batch_size=batch_size, progress=progress)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training, "score_products", disk_full_midway)
    with pytest.raises(RetrainFailed, match="OSError.*No space left on device.*still live") as info:
        retrain(ws)
    assert ws.live_version() == base["first"]
    failed = ws.model_version(info.value.version)
    assert failed["status"] == "failed" and "No space left on device" in failed["notes"]
    assert retrain_state(ws)[0]["status"] == "failed"
    assert review.next_card(ws, "fay").prediction.model_version == base["first"]
    ws.close()


def test_retrain_learns_every_label_and_keeps_no_validation_split(base, tmp_path):
    ws = _copy(base["path"], tmp_path / "ws")
    result = retrain(ws)
    assert result.n_train == len(ws.current_labels()) == 270
    assert ws.get_setting("validation_split") is None
    sources = {r["source"]: r["n"] for r in ws.query(
        "SELECT source, count(*) AS n FROM predictions WHERE model_version = ? GROUP BY source", (result.version,))}
    assert sources == {"out-of-fold": 270, "model trained on all labels": 300}
    ws.close()


def test_disagreeing_reviewers_are_resolved_by_majority_not_by_the_latest_decision(corrected):
    ws, result = corrected["ws"], corrected["result"]
    snapshot = json.loads((Path(ws.model_version(result.version)["path"]).parent / "training_labels.json").read_text())
    assert ws.current_labels()[corrected["disputed"]] == 40          # the store: the same one rule
    assert snapshot["train"][corrected["disputed"]] == 40            # training: 2 votes beat 1
    assert result.n_conflicts == 1
