"""launch.py: the auth file format, and a real start on an empty workspace (demo catalog, --share)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app_server import free_port
from app_workspace import demo_workspace
from launch import AuthFileError, read_auth_file

ROOT = Path(__file__).resolve().parent.parent


def test_auth_file_format(tmp_path):
    f = tmp_path / "reviewers.txt"
    f.write_text("# spring campaign\n\n alice :correct horse battery staple\nbob:s3cret:with:colons\n",
                 encoding="utf-8")
    users = read_auth_file(f)          # plain `name:password` lines: annotators (labeler/auth.py)
    assert [(u.name, u.role) for u in users] == [("alice", "annotator"), ("bob", "annotator")]
    assert users[0].check("correct horse battery staple") and users[1].check("s3cret:with:colons")


@pytest.mark.parametrize("content, message", [
    ("alice\n", "line 1: expected `name:role:scrypt"),
    ("alice:pw\n:pw\n", "line 2: the reviewer name before the colon is empty"),
    ("alice:\n", "reviewer 'alice' has an empty password"),
    ("alice:a\nbob:b\nalice:c\n", "line 3: reviewer 'alice' is already defined on line 1"),
    ("# nobody\n\n", "lists no reviewer"),
])
def test_auth_file_errors_name_the_line_and_the_fix(tmp_path, content, message):
    f = tmp_path / "reviewers.txt"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(AuthFileError, match=message.replace("(", r"\(")):
        read_auth_file(f)
    with pytest.raises(AuthFileError, match="not found"):
        read_auth_file(tmp_path / "missing.txt")


def test_bad_auth_file_is_one_line_and_nonzero_exit(tmp_path):
    f = tmp_path / "reviewers.txt"
    f.write_text("alice\n", encoding="utf-8")
    run = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--workspace", str(tmp_path / "ws"),
                          "--auth", str(f)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [f"Error: auth file {f}, line 1: expected `name:role:scrypt$...` "
                                               "(or `name:password`), found no colon"]


def test_empty_workspace_gets_the_demo_catalog_and_a_model(tmp_path):
    root = demo_workspace(tmp_path / "ws")
    log = (root / "prepare.log").read_text(encoding="utf-8")
    assert "is empty: loading the demo catalog" in log
    from store.workspace import Workspace
    ws = Workspace(root)
    version = ws.model_version(ws.live_version())
    assert ws.count_products() == 81 and "image" in version["config"]     # text model + image ensemble
    assert int(ws.scalar("SELECT count(*) FROM predictions WHERE model_version = ?", (version["id"],))) == 81
    ws.close()


def _start(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: list[str] = []
    deadline = time.time() + 150
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl+C"):
            break
    return proc, lines


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_launch_prints_where_and_share_failure_is_one_line(tmp_path):
    root = demo_workspace(tmp_path / "ws")
    port = free_port()
    proc, lines = _start(["--workspace", str(root), "--port", str(port), "--share"], tmp_path)
    try:
        out = "\n".join(lines)
        assert f"Workspace: {root.resolve()} (81 products, live model v001" in out
        assert f"Review app: http://127.0.0.1:{port}/" in out
        share = [line for line in lines if "public link" in line.lower()]
        assert len(share) == 1, out      # reachable or not, the share attempt is one line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:   # local URL still serves
            assert r.status == 200
    finally:
        _stop(proc)


def test_launch_with_no_demo_says_how_to_import(tmp_path):
    port = free_port()
    proc, lines = _start(["--workspace", str(tmp_path / "empty"), "--port", str(port), "--no-demo"], tmp_path)
    try:
        out = "\n".join(lines)
        assert "has no products (--no-demo): import a catalog with `python -m labeler import" in out
        assert f"(0 products, live model none)" in out
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert r.status == 200
    finally:
        _stop(proc)
