"""The database tells the truth about itself: damaged pages, a read-only workspace, online backup.

Real workspace.db files (the sample's products imported through the CLI), damaged by writing
random bytes over pages in the middle, or made read-only for real: as an ordinary user with
chmod; as root (who ignores permission bits) with an immutable file (`chattr +i`) or a read-only
bind mount of the folder, the two ways root itself is refused a write. Commands run as
subprocesses, as a user runs them, and the file's bytes are compared before and after.
"""
from __future__ import annotations

import hashlib
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from labeler.cli import main
from readonly_workspace import read_only
from store import Workspace

ROOT = Path(__file__).resolve().parent.parent
X_NAME, Y_NAME = "X_train_update.csv", "Y_train_CVw08PX.csv"


def cli(*args: object) -> subprocess.CompletedProcess:
    """`python -m labeler ARGS` in this process (click's runner); an exception that escaped the
    command shows up as a traceback in stderr, as it would in a terminal."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)


def cli_process(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labeler", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)


def launch(ws: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch.py", "--workspace", str(ws), "--no-demo", "--port", "7991"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(run: subprocess.CompletedProcess) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    return lines[0]


@pytest.fixture(scope="module")
def sample_ws(sample_dir: Path, tmp_path_factory) -> Path:
    """The whole sample's texts and labels imported, a few decisions, a dead 'running' retrain row."""
    ws_path = tmp_path_factory.mktemp("integrity") / "ws"
    run = cli_process("import", "--workspace", ws_path, "--texts", sample_dir / X_NAME, "--labels", sample_dir / Y_NAME)
    assert run.returncode == 0, run.stderr
    ws = Workspace(ws_path)
    ids = [r["id"] for r in ws.query("SELECT id FROM products ORDER BY rowid LIMIT 5")]
    for pid in ids:
        ws.record_decision(pid, "alice", "accept", category=10)
    ws.write(lambda c: c.execute("INSERT INTO retrain_runs (started_at, pid, host, message) VALUES (?, ?, ?, ?)",
                                 ("2026-01-01T00:00:00+00:00", 2**22 + 17, socket.gethostname(), "fitting")))
    ws.close()
    return ws_path


@pytest.fixture
def ws_copy(sample_ws: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(sample_ws, dest)
    return dest


# -- damaged pages --------------------------------------------------------------------------------
def damage(db: Path, n_pages: int = 3) -> None:
    size, page = db.stat().st_size, 4096
    middle = size // page // 2
    rng = np.random.default_rng(7)
    with db.open("r+b") as fh:
        for p in range(middle, middle + n_pages):
            fh.seek(p * page)
            fh.write(rng.bytes(page))


def test_a_damaged_workspace_is_refused_in_one_line_and_never_written(ws_copy: Path, tmp_path: Path):
    db = ws_copy / "workspace.db"
    assert db.stat().st_size > 1_000_000
    damage(db)
    before = sha256(db)
    catalog = tmp_path / "more.csv"
    catalog.write_text("id,title\nn1,Nouveau produit\n", encoding="utf-8")
    runs = {"versions": cli("versions", "--workspace", ws_copy),
            "export": cli("export", "--workspace", ws_copy, "--out", tmp_path / "export"),
            "import": cli_process("import", "--workspace", ws_copy, "--csv", catalog),
            "backup": cli("backup", "--workspace", ws_copy, "--out", tmp_path / "b.db"),
            "launch": launch(ws_copy)}
    for name, run in runs.items():
        line = one_line_error(run)
        assert str(db) in line and "damaged" in line and "quick_check" in line, (name, line)
        assert "copy your latest backup over it" in line, line
    assert sha256(db) == before
    assert not (tmp_path / "b.db").exists()
    from store.health import WorkspaceDamaged
    with pytest.raises(WorkspaceDamaged, match="nothing was written"):
        Workspace(ws_copy)
    assert sha256(db) == before


# -- read-only workspaces ---------------------------------------------------------------------------
@pytest.fixture(params=["file", "folder"])
def read_only_ws(request, ws_copy: Path):
    """The workspace made read-only for this process, for real (tests/readonly_workspace.py)."""
    with read_only(ws_copy, request.param) as reason:
        yield ws_copy, reason


def test_a_read_only_workspace_serves_reads_and_refuses_writes_in_one_line(read_only_ws, tmp_path: Path):
    ws_path, reason = read_only_ws
    db = ws_path / "workspace.db"
    before = sha256(db)
    reads = {"versions": cli("versions", "--workspace", ws_path, "--json"),
             "export": cli("export", "--workspace", ws_path, "--out", tmp_path / "export"),
             "backup": cli("backup", "--workspace", ws_path, "--out", tmp_path / "b.db")}
    for name, run in reads.items():
        assert run.returncode == 0 and "Traceback" not in run.stderr, (name, run.stderr)
    assert '"status": "running"' in reads["versions"].stdout      # shown as stored, not repaired
    assert "products, 5 reviewed)" in reads["export"].stdout
    catalog = tmp_path / "more.csv"
    catalog.write_text("id,title\nn1,Nouveau produit\n", encoding="utf-8")
    writes = {"import": cli_process("import", "--workspace", ws_path, "--csv", catalog),
              "train": cli("train", "--workspace", ws_path, "--no-cv"),
              "rollback": cli("rollback", "--workspace", ws_path),
              "launch": launch(ws_path)}
    for name, run in writes.items():
        line = one_line_error(run)
        assert str(db) in line and "read-only" in line and reason in line and "chmod" in line, (name, line)
    assert sha256(db) == before
    from store.health import WorkspaceReadOnly
    with pytest.raises(WorkspaceReadOnly, match=reason):
        Workspace(ws_path)
    ws = Workspace(ws_path, read_only=True)
    assert ws.count_products() > 1900 and len(ws.decisions()) == 5
    with pytest.raises(WorkspaceReadOnly, match="read-only"):
        ws.record_decision(ws.products()[0]["id"], "bob", "skip")
    ws.close()
    assert sha256(db) == before


# -- backup -------------------------------------------------------------------------------------
WRITER = """
import sys, time
from pathlib import Path
from store import Workspace
ws = Workspace(sys.argv[1])
ids = [r["id"] for r in ws.query("SELECT id FROM products ORDER BY rowid LIMIT 200")]
stop = Path(sys.argv[2])
n = 0
print("started", flush=True)
while not stop.exists():
    ws.record_decision(ids[n % len(ids)], "writer", "accept", category=2583, comment="x" * 2000)
    n += 1
    time.sleep(0.002)
print(n, flush=True)
"""


def test_backup_while_another_process_writes_is_one_consistent_snapshot(ws_copy: Path, tmp_path: Path):
    from store.backup import backup_database
    from store.health import read_only_uri
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(ws_copy), str(stop)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "started"
        time.sleep(0.5)
        steps: list[float] = []

        def slow_progress(fraction: float, desc: str) -> None:
            steps.append(fraction)
            time.sleep(0.02)                 # the writer commits several decisions between two steps

        dest = tmp_path / "snapshot.db"
        (tmp_path / "backups").mkdir()
        result = backup_database(read_only_uri(ws_copy / "workspace.db"), dest, progress=slow_progress,
                                 pages_per_step=8)
        run = cli("backup", "--workspace", ws_copy, "--out", tmp_path / "backups")     # a folder: named inside
    finally:
        stop.touch()
        written = int(writer.communicate(timeout=60)[0].strip())
    assert len(steps) > 20 and steps == sorted(steps) and steps[-1] == 1.0
    assert written > 50
    con = sqlite3.connect(dest)
    assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    ids = [r[0] for r in con.execute("SELECT id FROM decisions ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1))                       # a prefix of the log, no hole
    assert result.decisions == len(ids) and 5 < len(ids) < 5 + written
    final = Workspace(ws_copy)
    assert final.query("SELECT * FROM decisions WHERE id <= ?", (len(ids),)) == \
        [dict(zip([d[0] for d in con.execute("SELECT * FROM decisions").description], row))
         for row in con.execute("SELECT * FROM decisions ORDER BY id")]
    con.close()
    assert run.returncode == 0, run.stderr
    [made] = list((tmp_path / "backups").glob("workspace-*.db"))
    assert str(made.resolve()) in run.stdout and "quick_check ok" in run.stdout
    final.close()


def test_restore_is_copying_the_backup_over_workspace_db(ws_copy: Path, tmp_path: Path):
    backup = tmp_path / "b.db"
    assert cli("backup", "--workspace", ws_copy, "--out", backup).returncode == 0
    again = cli("backup", "--workspace", ws_copy, "--out", backup)
    assert "already exists; pass --force" in one_line_error(again)
    ws = Workspace(ws_copy)
    ws.record_decision(ws.products()[10]["id"], "bob", "accept", category=40)   # after the backup
    assert len(ws.decisions()) == 6
    ws.close()
    for suffix in ("", "-wal", "-shm"):          # the README's restore: app stopped, copy over, drop -wal/-shm
        (ws_copy / f"workspace.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, ws_copy / "workspace.db")
    restored = Workspace(ws_copy)
    assert len(restored.decisions()) == 5 and restored.count_products() > 1900
    restored.close()
