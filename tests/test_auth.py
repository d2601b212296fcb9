"""Users and roles: hashed auth file, `users add`, login throttling, admin-only model changes
enforced on the server (through gradio_client), the audit trail, and the demo mode of launch.py.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from gradio_client import Client

from app_server import free_port, running_app
from labeler import auth
from labeler.cli import main
from shop_catalog import ADMIN, ADMIN_PW, ANNOTATOR, ANNOTATOR_PW, make_shop

ROOT = Path(__file__).resolve().parent.parent


# -- the auth file ----------------------------------------------------------------------------
def test_passwords_are_salted_slow_hashes():
    a, b = auth.hash_password("s3cret"), auth.hash_password("s3cret")
    assert a != b and a.startswith("scrypt$16384$8$1$")           # a random salt each time
    assert auth.verify_password("s3cret", a) and auth.verify_password("s3cret", b)
    assert not auth.verify_password("s3cret ", a) and not auth.verify_password("s3cret", "scrypt$garbage")


def test_users_add_writes_hashes_with_roles_to_a_private_file(tmp_path):
    f = tmp_path / "reviewers.txt"
    run = CliRunner().invoke(main, ["users", "add", "alice", "--role", "admin", "--auth", str(f),
                                    "--password-stdin"], input="correct horse battery staple\n")
    assert run.exit_code == 0, run.output
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert "correct horse" not in f.read_text() and f.read_text().startswith("alice:admin:scrypt$")
    CliRunner().invoke(main, ["users", "add", "bob", "--role", "annotator", "--auth", str(f), "--password-stdin"],
                       input="bob-pw\n")
    # a second add for alice replaces her role and password, keeps bob
    CliRunner().invoke(main, ["users", "add", "alice", "--role", "annotator", "--auth", str(f), "--password-stdin"],
                       input="new-pw\n")
    users = {u.name: u for u in auth.read_auth_file(f)}
    assert {n: u.role for n, u in users.items()} == {"alice": "annotator", "bob": "annotator"}
    assert users["alice"].check("new-pw") and not users["alice"].check("correct horse battery staple")
    listed = CliRunner().invoke(main, ["users", "list", "--auth", str(f)])
    assert listed.output.split() == ["alice", "annotator", "bob", "annotator"]
    bad = CliRunner().invoke(main, ["users", "add", "a:b", "--role", "admin", "--auth", str(f), "--password-stdin"],
                             input="x\n")
    assert bad.exit_code == 1 and "one word without colons" in bad.output and "Traceback" not in bad.output


def test_users_add_reads_the_password_without_echo(tmp_path, monkeypatch):
    """Interactive use goes through getpass (no echo), asked twice; a mismatch writes nothing."""
    answers = iter(["pw-one", "pw-two"])
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or next(answers))
    f = tmp_path / "reviewers.txt"
    run = CliRunner().invoke(main, ["users", "add", "carl", "--role", "admin", "--auth", str(f)])
    assert run.exit_code == 1 and "differ" in run.output and not f.exists() and len(asked) == 2


def test_a_plain_password_file_still_loads_as_annotators_with_a_warning(tmp_path):
    f = tmp_path / "reviewers.txt"
    f.write_text("# old style\nalice:correct horse\nbob:s3cret:with:colons\n", encoding="utf-8")
    f.chmod(0o644)
    users = auth.read_auth_file(f)
    assert [(u.name, u.role, u.plain) for u in users] == [("alice", "annotator", True), ("bob", "annotator", True)]
    assert users[1].check("s3cret:with:colons") and not users[1].check("s3cret")
    warnings = auth.file_warnings(f, users)
    assert len(warnings) == 2
    assert "2 password(s) stored in clear text (alice, bob)" in warnings[0] and "users add" in warnings[0]
    assert "readable by other users" in warnings[1] and "chmod 600" in warnings[1]
    f.chmod(0o600)
    assert len(auth.file_warnings(f, users)) == 1


# -- throttling -------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_five_wrong_passwords_lock_the_name_for_a_growing_delay(caplog):
    clock = Clock()
    check = auth.Authenticator([auth.User("alice", "admin", auth.hash_password("right"))],
                               auth.LoginThrottle(clock=clock))
    with caplog.at_level(logging.WARNING, logger="labeler.auth"):
        for i in range(5):
            clock.t += 10
            assert check.attempt("alice", f"wrong{i}", "10.0.0.1") is False
        with pytest.raises(auth.LoginLocked, match="try again in 30 s"):
            check.attempt("alice", "right", "10.0.0.2")              # the right password, another address
    assert [r.getMessage() for r in caplog.records] == [
        "login locked for name 'alice' for 30 s after 5 wrong passwords within 300 s",
        "login locked for address '10.0.0.1' for 30 s after 5 wrong passwords within 300 s"]
    clock.t += 30
    assert check.attempt("alice", "right", "10.0.0.2") is True       # unlocked later
    for i in range(5):
        check.attempt("alice", f"wrong{i}", "10.0.0.3")
    with pytest.raises(auth.LoginLocked):
        check.attempt("alice", "right", "10.0.0.4")
    clock.t += 31                       # a success resets the name's delay: 30 s again, not 60
    assert check.attempt("alice", "right", "10.0.0.4") is True


def test_wrong_passwords_spread_over_time_do_not_lock():
    clock = Clock()
    check = auth.Authenticator([auth.User("alice", "admin", auth.hash_password("right"))],
                               auth.LoginThrottle(clock=clock))
    for i in range(12):
        clock.t += 61                    # at most 4 within any 5 minutes
        assert check.attempt("alice", "nope", "10.0.0.1") is False
    assert check.attempt("alice", "right", "10.0.0.1") is True


def test_one_address_guessing_many_names_is_locked_and_the_delay_doubles():
    clock = Clock()
    users = [auth.User(n, "annotator", auth.hash_password(f"{n}-pw")) for n in ("a", "b", "c", "d", "e", "f")]
    check = auth.Authenticator(users, auth.LoginThrottle(clock=clock))
    for name in "abcde":
        assert check.attempt(name, "guess", "203.0.113.9") is False
    with pytest.raises(auth.LoginLocked, match="address; try again in 30 s"):
        check.attempt("f", "f-pw", "203.0.113.9")
    assert check.attempt("f", "f-pw", "198.51.100.1") is True        # another address is not locked
    clock.t += 30
    for name in "abcde":
        check.attempt(name, "guess", "203.0.113.9")
    with pytest.raises(auth.LoginLocked, match="try again in 60 s"):   # second lock-out: twice as long
        check.attempt("f", "f-pw", "203.0.113.9")
    clock.t += 3600 + 60                # an hour without a wrong password: the delay starts over
    for name in "abcde":
        check.attempt(name, "guess", "203.0.113.9")
    with pytest.raises(auth.LoginLocked, match="try again in 30 s"):
        check.attempt("f", "f-pw", "203.0.113.9")


# -- the real server --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shop(sample_dir, tmp_path_factory):
    return make_shop(sample_dir, tmp_path_factory.mktemp("auth"))


@pytest.fixture
def shop_ws(shop, tmp_path):
    import shutil
    return Path(shutil.copytree(shop.workspace, tmp_path / "ws"))


def test_login_over_http_is_throttled(shop, shop_ws, tmp_path):
    """Six wrong passwords through Gradio's login route, then the right one: refused while locked."""
    with running_app(shop_ws, tmp_path, auth=auth.read_auth_file(shop.auth_file)) as (_, url):
        login = url.rstrip("/") + "/login"
        codes = [requests.post(login, data={"username": ADMIN, "password": f"guess{i}"}, timeout=30).status_code
                 for i in range(6)]
        assert codes == [400] * 5 + [429]
        locked = requests.post(login, data={"username": ADMIN, "password": ADMIN_PW}, timeout=30)
        assert locked.status_code == 429 and "try again in" in locked.text
        # the address is locked too: another reviewer from it waits as well
        assert requests.post(login, data={"username": ANNOTATOR, "password": ANNOTATOR_PW},
                             timeout=30).status_code == 429


def live_history(ws: Path) -> list[tuple]:
    with sqlite3.connect(ws / "workspace.db") as db:
        return db.execute("SELECT version, who, why, reason FROM live_history ORDER BY id").fetchall()


def test_an_annotator_cannot_change_the_model_an_admin_can_and_is_recorded(shop, shop_ws, tmp_path):
    live, ready = shop.versions
    setup = live_history(shop_ws)              # the fixture's own trainings moved the pointer too
    with running_app(shop_ws, tmp_path, auth=auth.read_auth_file(shop.auth_file)) as (_, url):
        nina = Client(url, auth=(ANNOTATOR, ANNOTATOR_PW), verbose=False)
        panel, _, _ = nina.predict(api_name="/models")
        assert "needs the admin role" in panel            # the Models tab says why the buttons refuse
        with pytest.raises(Exception, match="needs the admin role; nina is an annotator"):
            nina.predict(ready, "I want it", api_name="/make_live")
        with pytest.raises(Exception, match="needs the admin role"):
            nina.predict("", api_name="/retrain")
        nina.predict("nina", api_name="/set_reviewer")    # reviewing works
        with sqlite3.connect(shop_ws / "workspace.db") as db:
            assert db.execute("SELECT value FROM settings WHERE key = 'live_model_version'").fetchone()[0] == live
            assert db.execute("SELECT count(*) FROM retrain_runs").fetchone()[0] == 0
        assert live_history(shop_ws) == setup

        ada = Client(url, auth=(ADMIN, ADMIN_PW), verbose=False)
        ada.predict(api_name="/models")
        panel, table, _ = ada.predict(ready, "  v2 reads titles better ", api_name="/make_live")
        assert live_history(shop_ws) == setup + [(ready, ADMIN, "v2 reads titles better", f"rollback from {live}")]
        assert "ada" in panel and "v2 reads titles better" in panel and "needs the admin role" not in panel
        assert table["data"][0][0] == ready and "live" in table["data"][0][1]


def test_cli_changes_record_who_and_why(shop, shop_ws):
    live, ready = shop.versions
    setup = len(live_history(shop_ws))         # the fixture's own trainings moved the pointer too
    run = CliRunner().invoke(main, ["rollback", ready, "-w", str(shop_ws), "--by", "ops-bot", "--why", "night switch"])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(main, ["rollback", live, "-w", str(shop_ws)])
    assert run.exit_code == 0, run.output
    assert live_history(shop_ws)[setup:] == [(ready, "ops-bot", "night switch", f"rollback from {live}"),
                                             (live, auth.os_user(), "", f"rollback from {ready}")]
    run = CliRunner().invoke(main, ["train", "-w", str(shop_ws), "--no-cv", "--by", "trainer", "--notes", "weekly"])
    assert run.exit_code == 0, run.output
    (trained,) = live_history(shop_ws)[setup + 2:]
    assert trained[1:] == ("trainer", "weekly", "train")


# -- launch.py: demo mode and warnings --------------------------------------------------------
def _launch(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: list[str] = []
    while True:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl+C"):
            break
    return proc, lines


def _stop(proc: subprocess.Popen) -> None:
    import signal
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_launch_on_every_interface_without_auth_is_a_demo(shop, shop_ws, tmp_path):
    """--host 0.0.0.0 and no --auth: one line says it is a demo and how to add users; reviewing
    works, the model-changing endpoints are refused."""
    setup = live_history(shop_ws)
    port = free_port()
    proc, lines = _launch(["--workspace", str(shop_ws), "--host", "0.0.0.0", "--port", str(port)], tmp_path)
    try:
        demo = [line for line in lines if line.startswith("Demo mode")]
        assert len(demo) == 1 and "python -m labeler users add" in demo[0], lines
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict("visitor", api_name="/set_reviewer")
        panel, _, _ = client.predict(api_name="/models")
        assert "off in this demo" in panel
        for args, api in (((shop.versions[1], ""), "/make_live"), (("",), "/retrain")):
            with pytest.raises(Exception, match="off in this demo"):
                client.predict(*args, api_name=api)
    finally:
        _stop(proc)
    assert live_history(shop_ws) == setup


def test_launch_warns_about_a_readable_plain_auth_file(shop, shop_ws, tmp_path):
    f = tmp_path / "reviewers.txt"
    f.write_text("alice:correct horse\n", encoding="utf-8")
    f.chmod(0o644)
    port = free_port()
    proc, lines = _launch(["--workspace", str(shop_ws), "--port", str(port), "--auth", str(f)], tmp_path)
    try:
        warnings = [line for line in lines if line.startswith("Warning:")]
        assert len(warnings) == 2, lines
        assert "clear text" in warnings[0] and "chmod 600" in warnings[1]
        assert not any(line.startswith("Demo mode") for line in lines)
        assert any("1 reviewers, 0 admin, login required" in line for line in lines)
    finally:
        _stop(proc)
