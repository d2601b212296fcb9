"""The workspace store on real temporary SQLite files."""
from __future__ import annotations

import sqlite3

import pytest

from store import Workspace, WorkspaceError


def add_products(ws: Workspace, n: int = 3, label: int | None = 10) -> list[str]:
    def ins(conn):
        conn.execute("INSERT INTO import_batches(source, fingerprint, started_at) VALUES ('t', 'f', 'now')")
        for i in range(n):
            conn.execute("INSERT INTO products(id, title, description, source_label, batch_id, imported_at) "
                         "VALUES (?, ?, '', ?, 1, 'now')", (f"p{i}", f"Produit {i}", label))
    ws.write(ins)
    return [f"p{i}" for i in range(n)]


def test_schema_is_created_once_and_in_wal_mode(ws_path):
    ws = Workspace(ws_path)
    assert ws.scalar("PRAGMA journal_mode") == "wal"
    names = [r["name"] for r in ws.query("SELECT name FROM _migrations ORDER BY name")]
    ws.close()
    again = Workspace(ws_path)  # reopening applies nothing new
    assert [r["name"] for r in again.query("SELECT name FROM _migrations ORDER BY name")] == names
    assert {"products", "decisions", "model_versions", "predictions"} <= set(again.db.table_names())


def test_decisions_are_append_only(workspace):
    add_products(workspace)
    d = workspace.record_decision("p0", "alice", "accept", category=10)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        workspace.write(lambda c: c.execute("UPDATE decisions SET category = 40 WHERE id = ?", (d["id"],)))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        workspace.write(lambda c: c.execute("DELETE FROM decisions"))
    assert workspace.decisions()[0]["category"] == 10


def test_retried_submit_is_stored_once(workspace):
    add_products(workspace)
    a = workspace.record_decision("p0", "alice", "correct", category=40, idempotency_key="k1")
    b = workspace.record_decision("p0", "alice", "correct", category=40, idempotency_key="k1")
    assert a["id"] == b["id"] and len(workspace.decisions()) == 1


def test_current_label_is_latest_decision_not_undone_else_source(workspace):
    add_products(workspace, label=10)
    assert workspace.current_labels() == {"p0": 10, "p1": 10, "p2": 10}
    first = workspace.record_decision("p0", "alice", "correct", category=40)
    second = workspace.record_decision("p0", "bob", "correct", category=50)
    assert workspace.current_labels()["p0"] == 50
    workspace.record_decision("p0", "bob", "undo", undoes=second["id"])
    assert workspace.current_labels()["p0"] == 40
    workspace.record_decision("p0", "alice", "undo", undoes=first["id"])
    assert workspace.current_labels()["p0"] == 10
    assert workspace.current_labels(reviewed_only=True) == {}
    workspace.record_decision("p1", "alice", "skip")
    assert workspace.current_labels(reviewed_only=True) == {}
    assert len(workspace.decisions()) == 5  # nothing lost


def test_decision_rows_are_checked(workspace):
    add_products(workspace)
    with pytest.raises(sqlite3.IntegrityError):
        workspace.record_decision("p0", "alice", "accept")  # accept needs a category
    with pytest.raises(sqlite3.IntegrityError):
        workspace.record_decision("missing", "alice", "skip")  # unknown product
    with pytest.raises(WorkspaceError, match="unknown action"):
        workspace.record_decision("p0", "alice", "delete")
    assert workspace.decisions() == []


def test_failed_write_rolls_back_everything(workspace):
    add_products(workspace, n=1)

    def half(conn):
        conn.execute("INSERT INTO products(id, title, imported_at) VALUES ('new', 'Nouveau', 'now')")
        conn.execute("INSERT INTO products(id, title, imported_at) VALUES ('bad', '   ', 'now')")  # CHECK fails

    with pytest.raises(sqlite3.IntegrityError):
        workspace.write(half)
    assert [p["id"] for p in workspace.products()] == ["p0"]


def test_model_versions_and_live_pointer(workspace, tmp_path):
    add_products(workspace, n=2)
    assert workspace.live_version() is None
    v1 = workspace.new_version_id()
    workspace.register_model_version(v1, tmp_path / "v1", metrics={"f1": 0.5})
    v2 = workspace.new_version_id()
    workspace.register_model_version(v2, tmp_path / "v2", metrics={"f1": 0.6}, parent=v1, make_live=False)
    assert workspace.live_version() == v1
    workspace.set_live_version(v2)
    assert [v["live"] for v in workspace.model_versions()] == [False, True]
    with pytest.raises(WorkspaceError, match="unknown model version 'nope'.*" + v1):
        workspace.set_live_version("nope")
    row = {"product_id": "p0", "top5": [[10, 0.9], [40, 0.1]], "probs": [0.9] + [0.0] * 26,
           "voters": {"text": [[10, 0.9]]}, "top1": 10, "top1_prob": 0.9, "margin": 0.8, "entropy": 0.3}
    workspace.save_predictions(v2, [row])
    got = workspace.prediction("p0")
    assert got["top5"][0] == [10, 0.9] and got["voters"]["text"] == [[10, 0.9]]
    assert workspace.prediction("p0", v1) is None


def test_not_a_database_is_a_clear_error(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "workspace.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(WorkspaceError, match="not a usable SQLite workspace"):
        Workspace(root)


def test_missing_workspace_without_create(tmp_path):
    with pytest.raises(WorkspaceError, match="does not exist"):
        Workspace(tmp_path / "nope", create=False)
