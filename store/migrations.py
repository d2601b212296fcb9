"""Named schema migrations, applied once each, in order, inside a transaction."""
from __future__ import annotations

import sqlite3
from typing import Callable

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_core(conn: sqlite3.Connection) -> None:
    conn.executescript(
        """
        CREATE TABLE import_batches (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            started_at TEXT NOT NULL,
            n_rows INTEGER NOT NULL DEFAULT 0,
            n_imported INTEGER NOT NULL DEFAULT 0,
            n_skipped INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE products (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL CHECK (length(trim(title)) > 0),
            description TEXT NOT NULL DEFAULT '',
            image_path TEXT,
            image_sha1 TEXT,
            source_label INTEGER,
            batch_id INTEGER REFERENCES import_batches(id),
            source_row TEXT,
            imported_at TEXT NOT NULL
        );
        CREATE INDEX products_batch ON products(batch_id);
        CREATE TABLE import_problems (
            id INTEGER PRIMARY KEY,
            batch_id INTEGER NOT NULL REFERENCES import_batches(id),
            file TEXT NOT NULL,
            row TEXT,
            field TEXT,
            reason TEXT NOT NULL
        );
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            product_id TEXT NOT NULL REFERENCES products(id),
            reviewer TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('accept', 'correct', 'skip', 'undo')),
            category INTEGER,
            undoes INTEGER REFERENCES decisions(id),
            model_version TEXT,
            shown_top5 TEXT,
            comment TEXT NOT NULL DEFAULT '',
            lead_time_ms INTEGER,
            idempotency_key TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            CHECK ((action IN ('accept', 'correct')) = (category IS NOT NULL)),
            CHECK ((action = 'undo') = (undoes IS NOT NULL))
        );
        CREATE INDEX decisions_product ON decisions(product_id, id);
        CREATE INDEX decisions_reviewer ON decisions(reviewer, id);
        CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
            BEGIN SELECT RAISE(ABORT, 'decisions are append-only: write an undo row instead'); END;
        CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
            BEGIN SELECT RAISE(ABORT, 'decisions are append-only: write an undo row instead'); END;
        CREATE TABLE model_versions (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            parent TEXT,
            path TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}',
            metrics TEXT NOT NULL DEFAULT '{}',
            n_train INTEGER,
            n_decisions INTEGER,
            duration_s REAL,
            status TEXT NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'failed', 'retired')),
            notes TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE predictions (
            product_id TEXT NOT NULL REFERENCES products(id),
            model_version TEXT NOT NULL REFERENCES model_versions(id),
            top5 TEXT NOT NULL,
            probs TEXT NOT NULL,
            voters TEXT NOT NULL DEFAULT '{}',
            top1 INTEGER NOT NULL,
            top1_prob REAL NOT NULL,
            margin REAL NOT NULL,
            entropy REAL NOT NULL,
            disagreement INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            PRIMARY KEY (product_id, model_version)
        );
        CREATE INDEX predictions_version ON predictions(model_version, top1_prob);
        CREATE TABLE reservations (
            product_id TEXT NOT NULL REFERENCES products(id),
            reviewer TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (product_id, reviewer)
        );
        CREATE TABLE image_features (
            sha1 TEXT NOT NULL,
            backbone TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (sha1, backbone)
        );
        """
    )


@migration
def m002_current_labels_view(conn: sqlite3.Connection) -> None:
    # A product's label: its latest accept/correct not undone, else the imported label.
    conn.executescript(
        """
        CREATE VIEW effective_decisions AS
            SELECT d.* FROM decisions d
            WHERE d.action IN ('accept', 'correct', 'skip')
              AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.action = 'undo' AND u.undoes = d.id);
        CREATE VIEW current_labels AS
            SELECT p.id AS product_id,
                   COALESCE(
                     (SELECT e.category FROM effective_decisions e
                       WHERE e.product_id = p.id AND e.action IN ('accept', 'correct')
                       ORDER BY e.id DESC LIMIT 1),
                     p.source_label) AS category,
                   EXISTS (SELECT 1 FROM effective_decisions e
                            WHERE e.product_id = p.id AND e.action IN ('accept', 'correct')) AS reviewed
            FROM products p;
        CREATE INDEX decisions_undoes ON decisions(undoes);
        """
    )



@migration
def m010_retrain_runs(conn: sqlite3.Connection) -> None:
    # One row per retrain attempt (labeler/retrain.py): its progress for the app, why it failed,
    # and `pid`/`host` so a run whose process was killed is recognised and marked 'interrupted'.
    # live_history: every move of the live pointer made by retrain/rollback, newest last.
    conn.executescript(
        """
        CREATE TABLE retrain_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
            trigger TEXT NOT NULL DEFAULT 'api',
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            previous TEXT,
            version TEXT,
            went_live INTEGER NOT NULL DEFAULT 0 CHECK (went_live IN (0, 1)),
            progress REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
            message TEXT NOT NULL DEFAULT '',
            error TEXT
        );
        CREATE INDEX retrain_runs_status ON retrain_runs(status, id);
        CREATE TABLE live_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            version TEXT NOT NULL,
            previous TEXT,
            reason TEXT NOT NULL
        );
        """
    )


@migration
def m011_label_issues(conn: sqlite3.Connection) -> None:
    # Confident-learning flags (models/label_issues.py). Each detection run replaces the rows of
    # `label_issues`; `label_issue_runs` keeps the history of runs and their per-class thresholds.
    conn.executescript(
        """
        CREATE TABLE label_issue_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            method TEXT NOT NULL,
            folds INTEGER NOT NULL,
            n_products INTEGER NOT NULL,
            n_flagged INTEGER NOT NULL,
            thresholds TEXT NOT NULL DEFAULT '{}',
            duration_s REAL
        );
        CREATE TABLE label_issues (
            run_id INTEGER NOT NULL REFERENCES label_issue_runs(id),
            product_id TEXT NOT NULL REFERENCES products(id),
            rank INTEGER NOT NULL CHECK (rank >= 1),
            given_label INTEGER NOT NULL,
            suggested INTEGER NOT NULL,
            given_prob REAL NOT NULL,
            suggested_prob REAL NOT NULL,
            margin REAL NOT NULL,
            PRIMARY KEY (run_id, product_id)
        );
        CREATE INDEX label_issues_rank ON label_issues(run_id, rank);
        """
    )


@migration
def m012_live_history_who_why(conn: sqlite3.Connection) -> None:
    # Who moved the live pointer (a login name, `--by`, or the OS user of a CLI run) and why (their
    # note); `reason` keeps saying what moved it (train, retrain run N, rollback from X). Rows from
    # before this migration keep '' (unknown).
    conn.executescript(
        """
        ALTER TABLE live_history ADD COLUMN who TEXT NOT NULL DEFAULT '';
        ALTER TABLE live_history ADD COLUMN why TEXT NOT NULL DEFAULT '';
        """
    )


@migration
def m013_reservation_tabs(conn: sqlite3.Connection) -> None:
    # A reviewer may work in several browser tabs: each tab holds its own product, so the
    # reservation names the tab too ('' for callers without one: the CLI, the API, old rows).
    conn.executescript(
        """
        ALTER TABLE reservations ADD COLUMN tab TEXT NOT NULL DEFAULT '';
        """
    )


@migration
def m030_bulk_auto_accept_batches(conn: sqlite3.Connection) -> None:
    # Bulk work (labeler/bulk.py, labeler/interop.py): a decision may belong to a batch that is
    # undone as one (`decision_batches`), and an admin's bulk accept of confident predictions is
    # its own action, 'auto_accept', counted as an accept by the label rule and the queue.
    # SQLite cannot ALTER a CHECK constraint, and rebuilding `decisions` would trip the foreign
    # keys (undo rows point at decisions; PRAGMA foreign_keys cannot be turned off inside this
    # transaction). Widening a CHECK leaves every stored row valid, so the table's stored SQL is
    # edited in place, SQLite's documented procedure for constraint changes that touch no row
    # (sqlite.org/lang_altertable.html, "other kinds of table schema changes"); columns other
    # migrations added are kept. The views that name the accepting actions are recreated with
    # 'auto_accept' among them.
    c = getattr(conn, "conn", conn)
    table_sql = c.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'decisions'").fetchone()[0]
    new_sql = table_sql
    for old, new in (("'skip', 'undo')", "'skip', 'undo', 'auto_accept')"),
                     ("(action IN ('accept', 'correct')) = (category IS NOT NULL)",
                      "(action IN ('accept', 'correct', 'auto_accept')) = (category IS NOT NULL)")):
        if old not in new_sql:
            raise RuntimeError(f"m030: decisions table no longer holds {old!r}; update this migration")
        new_sql = new_sql.replace(old, new)
    _rewrite_table_sql(c, "decisions", new_sql)
    views = c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view' AND sql LIKE '%''accept''%' "
                      "ORDER BY rowid").fetchall()
    for name, _ in reversed(views):
        c.execute(f"DROP VIEW {name}")
    for _, sql in views:
        c.execute(_with_auto_accept(sql))
    c.execute("""
        CREATE TABLE decision_batches (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('auto_accept', 'grid', 'labelstudio', 'undo')),
            reviewer TEXT NOT NULL,
            model_version TEXT,
            threshold REAL,
            undoes_batch TEXT REFERENCES decision_batches(id),
            n_decisions INTEGER NOT NULL DEFAULT 0,
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )""")
    c.execute("ALTER TABLE decisions ADD COLUMN batch_id TEXT REFERENCES decision_batches(id)")
    c.execute("ALTER TABLE decisions ADD COLUMN via TEXT")
    c.execute("CREATE INDEX decisions_batch ON decisions(batch_id) WHERE batch_id IS NOT NULL")


@migration
def m031_browse_search(conn: sqlite3.Connection) -> None:
    # Browse (labeler/browse.py) at catalog scale: full-text search over title and description
    # (FTS5, diacritics folded, 2- and 3-letter prefixes indexed so a short prefix stays fast,
    # kept in step with products by triggers) and the index the grid's pages use: the live
    # version's predicted category by confidence.
    conn.executescript(
        """
        CREATE VIRTUAL TABLE products_fts USING fts5(
            title, description, content='products', content_rowid='rowid',
            tokenize='unicode61 remove_diacritics 2', prefix='2 3');
        INSERT INTO products_fts(products_fts) VALUES ('rebuild');
        CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
            INSERT INTO products_fts(rowid, title, description) VALUES (new.rowid, new.title, new.description);
        END;
        CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
            INSERT INTO products_fts(products_fts, rowid, title, description)
                VALUES ('delete', old.rowid, old.title, old.description);
        END;
        CREATE TRIGGER products_fts_update AFTER UPDATE OF title, description ON products BEGIN
            INSERT INTO products_fts(products_fts, rowid, title, description)
                VALUES ('delete', old.rowid, old.title, old.description);
            INSERT INTO products_fts(rowid, title, description) VALUES (new.rowid, new.title, new.description);
        END;
        CREATE INDEX predictions_version_top1 ON predictions(model_version, top1, top1_prob);
        """
    )


def _with_auto_accept(sql: str) -> str:
    """A view's SQL with 'auto_accept' wherever it lists the actions that set a label."""
    sql = sql.replace("IN ('accept', 'correct', 'skip')", "IN ('accept', 'correct', 'skip', 'auto_accept')")
    return sql.replace("IN ('accept', 'correct')", "IN ('accept', 'correct', 'auto_accept')")


@migration
def m040_honest_loop(conn: sqlite3.Connection) -> None:
    # predictions.source: which model produced the row ('out-of-fold' for a labelled product at
    # training time, 'model trained on all labels' otherwise; NULL = stored before this existed).
    # label_issues.flagged: every labelled product is ranked now; 1 where confident learning flags it.
    conn.executescript(
        """
        ALTER TABLE predictions ADD COLUMN source TEXT;
        ALTER TABLE label_issues ADD COLUMN flagged INTEGER NOT NULL DEFAULT 1 CHECK (flagged IN (0, 1));
        """
    )


def _rewrite_table_sql(c: sqlite3.Connection, table: str, new_sql: str) -> None:
    """Replace `table`'s stored CREATE statement and bump the schema version: SQLite's documented
    procedure for a constraint change no stored row can break (m030, m080); the caller checks it."""
    version = c.execute("PRAGMA schema_version").fetchone()[0]
    c.execute("PRAGMA writable_schema = ON")
    try:
        c.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (new_sql, table))
        c.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        c.execute("PRAGMA writable_schema = OFF")


def apply(conn: sqlite3.Connection, before: str | None = None) -> list[str]:
    """Apply pending migrations (those listed before `before` only, when given: the schema an
    older version left, for upgrade tests); returns the names applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    applied = []
    names = [n for n, _ in MIGRATIONS]
    for name, fn in MIGRATIONS[:names.index(before) if before else None]:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(_ScriptInTx(conn))  # type: ignore[arg-type]
            conn.execute("INSERT INTO _migrations VALUES (?, datetime('now'))", (name,))
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


class _ScriptInTx:
    """executescript() commits first; split the script so the migration stays one transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def executescript(self, script: str) -> None:
        for stmt in _split_sql(script):
            self.conn.execute(stmt)


def _split_sql(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


@migration
def m065_constraints_and_counters(conn: sqlite3.Connection) -> None:
    # Concurrency rules held by the schema, not by SQLite's single writer (store/reservations.py,
    # store/decisions.py, store/catalog.py):
    # * one holder per product: a UNIQUE index on reservations(product_id); rows that would break
    #   it (the same product held by two reviewers: only possible through writes that bypassed
    #   the application's check) keep the latest lease.
    # * `counters`: named generations bumped by triggers in the transaction of every write they
    #   count: 'decisions' (each appended decision), 'catalog' (products or predictions written),
    #   'label_issues' (a detection run stored). Caches compare a counter, not max(rowid).
    # * `decision_seq`: each decision's position in commit order, taken from the 'decisions'
    #   counter in its own transaction; replay reads `seq > last seen`, which stays right where
    #   ids are not handed out in commit order (an explicit id, another backend's sequences).
    conn.executescript(
        """
        DELETE FROM reservations WHERE rowid NOT IN (
            SELECT (SELECT r.rowid FROM reservations r WHERE r.product_id = g.product_id
                    ORDER BY r.expires_at DESC, r.rowid DESC LIMIT 1)
            FROM (SELECT DISTINCT product_id FROM reservations) g);
        CREATE UNIQUE INDEX reservations_one_holder ON reservations(product_id);
        CREATE INDEX reservations_reviewer ON reservations(reviewer, tab);
        CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL DEFAULT 0 CHECK (value >= 0)
        );
        INSERT INTO counters (name, value) VALUES
            ('decisions', (SELECT count(*) FROM decisions)), ('catalog', 1), ('label_issues', 1);
        CREATE TABLE decision_seq (
            seq INTEGER PRIMARY KEY,
            decision_id INTEGER NOT NULL UNIQUE REFERENCES decisions(id)
        );
        INSERT INTO decision_seq (seq, decision_id)
            SELECT row_number() OVER (ORDER BY id), id FROM decisions;
        CREATE TRIGGER decisions_count AFTER INSERT ON decisions BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'decisions';
            INSERT INTO decision_seq (seq, decision_id)
                VALUES ((SELECT value FROM counters WHERE name = 'decisions'), new.id);
        END;
        CREATE TRIGGER products_count_insert AFTER INSERT ON products BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'catalog';
        END;
        CREATE TRIGGER products_count_update AFTER UPDATE ON products BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'catalog';
        END;
        CREATE TRIGGER products_count_delete AFTER DELETE ON products BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'catalog';
        END;
        CREATE TRIGGER predictions_count_insert AFTER INSERT ON predictions BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'catalog';
        END;
        CREATE TRIGGER predictions_count_update AFTER UPDATE ON predictions BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'catalog';
        END;
        CREATE TRIGGER predictions_count_delete AFTER DELETE ON predictions BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'catalog';
        END;
        CREATE TRIGGER label_issue_runs_count AFTER INSERT ON label_issue_runs BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'label_issues';
        END;
        CREATE TRIGGER label_issues_count_update AFTER UPDATE ON label_issues BEGIN
            UPDATE counters SET value = value + 1 WHERE name = 'label_issues';
        END;
        """
    )


@migration
def m050_workspace_taxonomy(conn: sqlite3.Connection) -> None:
    # A workspace's own categories (labeler/taxonomy.py, store/taxonomy.py); none stored = the
    # Rakuten 27. The category columns elsewhere keep holding integer keys: a whole-number code is
    # its own key, a text code ('toys') gets a negative key here, never reused (`retired_at` keeps
    # a removed category's row, so its key still names it). model_versions.classes: the keys of a
    # version's probability columns, in order (JSON); NULL = a version trained before this
    # migration, whose columns are the Rakuten 27 in code order.
    conn.executescript(
        """
        CREATE TABLE categories (
            key INTEGER PRIMARY KEY,
            code TEXT NOT NULL UNIQUE CHECK (length(trim(code)) > 0),
            position INTEGER,
            name TEXT NOT NULL CHECK (length(trim(name)) > 0),
            description TEXT NOT NULL DEFAULT '',
            keywords TEXT NOT NULL DEFAULT '[]',
            parent TEXT,
            added_at TEXT NOT NULL,
            retired_at TEXT,
            CHECK ((position IS NULL) = (retired_at IS NOT NULL))
        );
        CREATE UNIQUE INDEX categories_position ON categories(position) WHERE position IS NOT NULL;
        ALTER TABLE model_versions ADD COLUMN classes TEXT;
        """
    )



PRODUCT_TEXT_OR_IMAGE = ("length(trim(title)) > 0 OR length(trim(description)) > 0 OR image_path IS NOT NULL")


@migration
def m080_products_without_title(conn: sqlite3.Connection) -> None:
    # A product needs something to be predicted from, not a title (issue 16, item 7): one with
    # only a photo, or only a description, is stored with title ''; a product with no title, no
    # description and no image is still refused by the schema. `products.title` carried
    # CHECK (length(trim(title)) > 0) since m001. SQLite cannot ALTER a CHECK and rebuilding
    # `products` would trip the foreign keys pointing at it (decisions, predictions, reservations,
    # label issues: PRAGMA foreign_keys cannot be turned off inside this transaction) and the FTS
    # triggers. The new CHECK is implied by the old one (every stored title is non-empty), so, as
    # m030 did for `decisions`, the table's stored SQL is edited in place: SQLite's documented
    # procedure for constraint changes that touch no row (sqlite.org/lang_altertable.html, "other
    # kinds of table schema changes"), then the schema version is bumped and `products` checked.
    c = getattr(conn, "conn", conn)
    table_sql = c.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'products'").fetchone()[0]
    old = "title TEXT NOT NULL CHECK (length(trim(title)) > 0)"
    if table_sql.count(old) != 1:
        raise RuntimeError(f"m080: products table no longer holds {old!r}; update this migration")
    new_sql = table_sql.replace(old, f"title TEXT NOT NULL CHECK ({PRODUCT_TEXT_OR_IMAGE})")
    _rewrite_table_sql(c, "products", new_sql)
    problems = [r[0] for r in c.execute("PRAGMA quick_check(products)")]
    if problems != ["ok"]:
        raise RuntimeError(f"m080: products failed its check after the schema edit ({'; '.join(problems[:3])}); "
                           "the migration was rolled back")


@migration
def m085_current_labels_rulings(conn: sqlite3.Connection) -> None:
    # `current_labels` follows the one label rule of store/labels.py (`resolve_labels`), which
    # it read differently before ("latest decision wins", so a reviewer's decision after an
    # admin's ruling overturned the ruling here while the rule kept it):
    # 1. the latest ruling in effect (a label decision with via 'adjudication') is the label;
    # 2. else each reviewer's latest label decision in effect (rulings aside) is one vote, the
    #    category with most votes wins, a tie goes to the category of the latest tied vote;
    # 3. else the imported label. `reviewed`: any label decision in effect, rulings included.
    # Every subquery is per product (decisions_product index), as the view's reads are.
    conn.executescript(
        """
        DROP VIEW current_labels;
        CREATE VIEW current_labels AS
            SELECT p.id AS product_id,
                   COALESCE(
                     (SELECT r.category FROM effective_decisions r
                       WHERE r.product_id = p.id AND r.action IN ('accept', 'correct', 'auto_accept')
                         AND r.via IS 'adjudication'
                       ORDER BY r.id DESC LIMIT 1),
                     (SELECT v.category FROM effective_decisions v
                       WHERE v.product_id = p.id AND v.action IN ('accept', 'correct', 'auto_accept')
                         AND v.via IS NOT 'adjudication'
                         AND v.id = (SELECT max(w.id) FROM effective_decisions w
                                      WHERE w.product_id = p.id AND w.reviewer = v.reviewer
                                        AND w.action IN ('accept', 'correct', 'auto_accept')
                                        AND w.via IS NOT 'adjudication')
                       GROUP BY v.category ORDER BY count(*) DESC, max(v.id) DESC LIMIT 1),
                     p.source_label) AS category,
                   EXISTS (SELECT 1 FROM effective_decisions e
                            WHERE e.product_id = p.id
                              AND e.action IN ('accept', 'correct', 'auto_accept')) AS reviewed
            FROM products p;
        """
    )
