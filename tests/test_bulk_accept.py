"""Bulk auto-accept and batch undo on real workspaces (the sample's products, a really trained model)."""
from __future__ import annotations

import json
import re
import sqlite3

import pytest
from click.testing import CliRunner

from review_workspace import copy_workspace

from labeler import bulk, review, stats
from labeler.cli import main
from labeler.config import Settings
from store import migrations
from store.workspace import Workspace


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def rws(sample_dir, tmp_path):
    ws = Workspace(copy_workspace(sample_dir, tmp_path / "ws"))
    yield ws
    ws.close()


def _expected(ws: Workspace, threshold: float, exclude: set[str]) -> tuple[set[str], set[str]]:
    """(products auto-accept must take, products left because the imported label differs), by hand."""
    take, conflicts = set(), set()
    for p in ws.products():
        pred = ws.prediction(p["id"])
        if pred is None or pred["top1_prob"] < threshold or p["id"] in exclude:
            continue
        if p["source_label"] is not None and int(p["source_label"]) != int(pred["top1"]):
            conflicts.add(p["id"])
        else:
            take.add(p["id"])
    return take, conflicts


def test_migration_widens_decisions_and_keeps_every_row_and_guard(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    migrations.apply(conn, before="m030_bulk_auto_accept_batches")
    conn.execute("INSERT INTO products (id, title, imported_at) VALUES ('p1', 'Piscine', 'now'), ('p2', 'Lego', 'now')")
    conn.execute("INSERT INTO decisions (product_id, reviewer, action, category, idempotency_key, created_at) "
                 "VALUES ('p1', 'alice', 'accept', 2583, 'k1', 'now'), ('p2', 'bob', 'correct', 1280, 'k2', 'now')")
    conn.execute("INSERT INTO decisions (product_id, reviewer, action, undoes, idempotency_key, created_at) "
                 "VALUES ('p2', 'bob', 'undo', 2, 'k3', 'now')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO decisions (product_id, reviewer, action, category, idempotency_key, created_at) "
                     "VALUES ('p2', 'x', 'auto_accept', 1280, 'k4', 'now')")
    before = conn.execute("SELECT * FROM decisions ORDER BY id").fetchall()
    names = [n for n, _ in migrations.MIGRATIONS]
    assert migrations.apply(conn) == names[names.index("m030_bulk_auto_accept_batches"):]
    after = conn.execute("SELECT id, product_id, reviewer, action, category, undoes, model_version, shown_top5, "
                         "comment, lead_time_ms, idempotency_key, created_at FROM decisions ORDER BY id").fetchall()
    assert after == before
    assert conn.execute("SELECT product_id, category, reviewed FROM current_labels ORDER BY product_id").fetchall() \
        == [("p1", 2583, 1), ("p2", None, 0)]
    conn.execute("INSERT INTO decisions (product_id, reviewer, action, category, idempotency_key, created_at) "
                 "VALUES ('p2', 'admin', 'auto_accept', 1280, 'k4', 'now')")
    assert conn.execute("SELECT category, reviewed FROM current_labels WHERE product_id = 'p2'").fetchone() == (1280, 1)
    assert conn.execute("SELECT max(id) FROM decisions").fetchone()[0] == 4     # AUTOINCREMENT carried on
    with pytest.raises(sqlite3.IntegrityError):     # an auto-accept still needs its category
        conn.execute("INSERT INTO decisions (product_id, reviewer, action, idempotency_key, created_at) "
                     "VALUES ('p2', 'admin', 'auto_accept', 'k5', 'now')")
    for sql in ("UPDATE decisions SET category = 10 WHERE id = 1", "DELETE FROM decisions WHERE id = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_auto_accept_takes_undecided_confident_products_as_one_batch(rws):
    threshold = 0.5
    decided = review.next_card(rws, "alice")
    review.decide(rws, "alice", decided.product_id, "accept")
    held = review.next_card(rws, "bob").product_id          # bob is looking at it right now
    take, conflicts = _expected(rws, threshold, {decided.product_id, held})
    assert len(take) > 50

    dry = bulk.auto_accept(rws, "root", threshold=threshold, dry_run=True)
    assert {p for p, _, _ in dry.accepted} == take and dry.batch_id is None
    assert rws.scalar("SELECT count(*) FROM decisions") == 1

    res = bulk.auto_accept(rws, "root", threshold=threshold)
    assert {p for p, _, _ in res.accepted} == take and set(res.conflicts) == conflicts
    assert (held in res.held) == (rws.prediction(held)["top1_prob"] >= threshold)
    rows = rws.query("SELECT * FROM decisions WHERE batch_id = ?", (res.batch_id,))
    assert {r["product_id"] for r in rows} == take
    live = rws.live_version()
    for r in rows:
        pred = rws.prediction(r["product_id"])
        assert (r["action"], r["reviewer"], r["model_version"], r["category"]) == \
            ("auto_accept", "root", live, pred["top1"])
        assert json.loads(r["shown_top5"]) == pred["top5"] and "0.5" in r["comment"]
    batch = rws.query("SELECT * FROM decision_batches WHERE id = ?", (res.batch_id,))[0]
    assert (batch["kind"], batch["threshold"], batch["model_version"], batch["n_decisions"]) == \
        ("auto_accept", 0.5, live, len(take))

    # the label rule and the queue count an auto-accept as an accept
    reviewed = rws.current_labels(reviewed_only=True)
    assert take <= set(reviewed) and all(reviewed[p] == rws.prediction(p)["top1"] for p in take)
    assert review.resolved_labels(rws)[next(iter(take))] == rws.prediction(next(iter(take)))["top1"]
    assert stats.progress(rws)["done"] == len(take) + 1
    queue = review.upcoming(rws, "carol", rws.count_products())
    assert set(queue) == {p["id"] for p in rws.products()} - take - {decided.product_id, held}
    # an admin's U on the card does not take auto-accepts back one by one
    assert review.undo(rws, "root") is None
    # running it again finds nothing new
    assert bulk.auto_accept(rws, "root", threshold=threshold).accepted == []


def test_undo_batch_takes_the_whole_batch_back_once(rws):
    before = rws.current_labels()
    res = bulk.auto_accept(rws, "root", threshold=0.6)
    first = res.accepted[0][0]
    alice_cat = 10 if res.accepted[0][1] != 10 else 40
    review.decide(rws, "alice", first, "correct", category=alice_cat)
    out = cli("undo-batch", "-w", rws.root, res.batch_id, "--by", "root")
    assert out.exit_code == 0, out.output
    assert f"{len(res.accepted)} decisions undone" in out.output
    after = rws.current_labels()
    assert after[first] == alice_cat        # alice's correction made after the batch stays
    assert {p: after[p] for p in after if p != first} == {p: before[p] for p in before if p != first}
    assert rws.scalar("SELECT count(*) FROM effective_decisions WHERE action = 'auto_accept'") == 0
    assert review.upcoming(rws, "dana", 10000) and set(p for p, _, _ in res.accepted[1:]) <= set(
        review.upcoming(rws, "dana", 10000))
    again = cli("undo-batch", "-w", rws.root, res.batch_id)
    assert again.exit_code == 0 and "nothing left to undo" in again.output
    listing = cli("batches", "-w", rws.root)
    assert res.batch_id in listing.output and "0 in effect" in listing.output
    unknown = cli("undo-batch", "-w", rws.root, "aa-nope")
    assert unknown.exit_code == 1 and "unknown batch 'aa-nope'" in unknown.output and res.batch_id in unknown.output


def test_threshold_comes_from_the_version_when_it_stores_one(rws):
    live = rws.live_version()
    # a version trained before the guaranteed threshold existed stores none: the setting applies
    older = {k: v for k, v in rws.model_version(live)["metrics"].items() if k != "auto_accept"}
    rws.write(lambda c: c.execute("UPDATE model_versions SET metrics = ? WHERE id = ?", (json.dumps(older), live)))
    assert bulk.threshold_for(rws, live) == bulk.Threshold(Settings().auto_accept_threshold, "settings")
    metrics = older | {"auto_accept_threshold": 0.93}
    rws.write(lambda c: c.execute("UPDATE model_versions SET metrics = ? WHERE id = ?", (json.dumps(metrics), live)))
    assert bulk.threshold_for(rws, live) == bulk.Threshold(0.93, f"version {live}")
    assert bulk.threshold_for(rws, live, 0.7).source == "given"
    guaranteed = metrics | {"auto_accept": {"target": 0.95, "threshold": 0.88}}
    rws.write(lambda c: c.execute("UPDATE model_versions SET metrics = ? WHERE id = ?", (json.dumps(guaranteed), live)))
    assert bulk.threshold_for(rws, live) == bulk.Threshold(0.88, f"version {live}, guaranteed")
    none = metrics | {"auto_accept": {"target": 0.95, "threshold": None}}
    rws.write(lambda c: c.execute("UPDATE model_versions SET metrics = ? WHERE id = ?", (json.dumps(none), live)))
    with pytest.raises(bulk.BulkError, match="guarantees no auto-accept threshold"):
        bulk.threshold_for(rws, live)
    assert bulk.threshold_for(rws, live, 0.9).value == 0.9
    rws.write(lambda c: c.execute("UPDATE model_versions SET metrics = ? WHERE id = ?", (json.dumps(metrics), live)))
    out = cli("auto-accept", "-w", rws.root, "--dry-run")
    assert out.exit_code == 0, out.output
    assert f"0.93 (from version {live})" in out.output and "nothing written" in out.output
    assert rws.scalar("SELECT count(*) FROM decisions") == 0


def test_auto_accept_cli_and_its_errors(rws, tmp_path):
    out = cli("auto-accept", "-w", rws.root, "--threshold", "0.7", "--by", "root")
    assert out.exit_code == 0, out.output
    n = rws.scalar("SELECT count(*) FROM decisions WHERE action = 'auto_accept'")
    assert n > 0 and re.search(rf"accepted\s+{n}\n", out.output)
    assert "undo-batch aa-" in out.output
    bad = cli("auto-accept", "-w", rws.root, "--threshold", "1.5")
    assert bad.exit_code == 2 and "1.5" in bad.output
    bare = Workspace(tmp_path / "bare")
    bare.write(lambda c: c.execute("INSERT INTO products (id, title, imported_at) VALUES ('p', 't', 'now')"))
    none = cli("auto-accept", "-w", bare.root)
    assert none.exit_code == 1 and "no live model version" in none.output


def test_a_large_batch_is_written_in_chunks_and_a_product_decided_meanwhile_is_left_alone(rws, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 5)
    plan = bulk.auto_accept(rws, "root", threshold=0.5, dry_run=True)
    late = plan.accepted[7][0]           # in the second chunk
    writes = []
    real_write = rws.write

    def write(fn):
        writes.append(fn)
        if len(writes) == 2:             # between the first and the second chunk, a reviewer decides
            real_write(lambda c: rws.record_decision(late, "zoe", "correct", category=10, conn=c))
        return real_write(fn)

    monkeypatch.setattr(rws, "write", write)
    res = bulk.auto_accept(rws, "root", threshold=0.5)
    assert len(writes) >= -(-len(plan.accepted) // 5)   # one transaction per chunk of 5 at least
    assert res.decided_meanwhile == [late] and late not in {p for p, _, _ in res.accepted}
    assert len(res.accepted) == len(plan.accepted) - 1
    batch = rws.query("SELECT n_decisions FROM decision_batches WHERE id = ?", (res.batch_id,))[0]
    assert batch["n_decisions"] == len(res.accepted) == rws.scalar(
        "SELECT count(*) FROM decisions WHERE batch_id = ?", (res.batch_id,))
    assert rws.current_labels(reviewed_only=True)[late] == 10
