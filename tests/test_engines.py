"""The scoring engines: the Ray engine on a real two-node cluster gives the local engine's
predictions; Ray missing, a wrong address and a worker node killed mid-job each end in one line
with the workspace untouched.

The cluster is real: `ray start --head` and `ray start --address` (two raylets, one CPU each,
a small object store, a temp dir of their own), started in their own process groups and killed
with them at the end. The workspace is a slice of the real sample with one small backbone
(lite0 at 224 px, logistic head), trained by the real `train` command.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
X_NAME, Y_NAME = "X_train_update.csv", "Y_train_CVw08PX.csv"
VOTERS = json.dumps([{"backbone": "lite0", "head": "logistic", "input_size": 224, "name": "lite0+logistic"}])
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install -r requirements-ray.txt)")
# Token authentication off for the test clusters and their clients alike: `ray start --head` turns
# it on by itself when ~/.ray/auth_token exists (any local `ray.init()` writes one), and a client
# given an address then fails (tested below with the token on).
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}


def cli(*args: object, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m labeler ...` in a real subprocess (the Ray driver must be its own process)."""
    return subprocess.run([sys.executable, "-m", "labeler", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env or ENV)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr[-3000:])
    return result.stdout


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The lines a failed command printed (tqdm bars and Ray's own log lines aside)."""
    return [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]


# -- the workspace -------------------------------------------------------------------------------
def build_trained(sample_dir: Path, out: Path) -> None:
    """40 labelled products with an image + 40 without, then 80 unlabelled with an image + 20
    without; trained by the CLI with one small voter (lite0@224, logistic)."""
    out.mkdir(parents=True)
    x = pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False)
    y = pd.read_csv(sample_dir / Y_NAME, index_col=0)
    folder = sample_dir / "images" / "image_train"
    has = np.array([(folder / f"image_{i}_product_{p}.jpg").exists() for i, p in zip(x["imageid"], x["productid"])])
    titled = (x["designation"].str.strip() != "").to_numpy()
    with_img, without = x.index[has & titled], x.index[~has & titled]
    labelled = list(with_img[:40]) + list(without[:40])
    rest = list(with_img[40:120]) + list(without[40:60])
    x.loc[labelled].to_csv(out / "X_lab.csv")
    y.loc[[int(i) for i in labelled]].to_csv(out / "Y_lab.csv")
    x.loc[rest].to_csv(out / "X_rest.csv")
    ws = out / "ws"
    ok(cli("import", "-w", ws, "--texts", out / "X_lab.csv", "--labels", out / "Y_lab.csv", "--images", folder))
    ok(cli("import", "-w", ws, "--texts", out / "X_rest.csv", "--images", folder))
    with sqlite3.connect(ws / "workspace.db") as db:
        db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('image_voters', ?)", (VOTERS,))
    ok(cli("train", "-w", ws))


@pytest.fixture(scope="module")
def trained(sample_dir: Path, tmp_path_factory) -> Path:
    """A copy of the trained workspace; the template is cached under /tmp per code fingerprint
    (training takes minutes on the shared 2-core machine)."""
    from labeler.templates import cached, copy_template, fingerprint
    key = fingerprint(sample_dir, ("labeler.cli", "labeler.training", "models.image", "models.fusion"))
    own = Path(tempfile.gettempdir()) / "labeler-test-templates" / "engines"     # its own build lock
    template = cached("engines-ws-v1", key, lambda root: build_trained(sample_dir, root), cache=own) / "ws"
    return copy_template(template, tmp_path_factory.mktemp("engines") / "ws")


def copy_without_features(src: Path, dest: Path) -> Path:
    """A copy of the workspace whose image feature cache is empty (so scoring runs the backbone)."""
    shutil.copytree(src, dest)
    with sqlite3.connect(dest / "workspace.db") as db:
        db.execute("DELETE FROM image_features")
    return dest


def predictions(ws: Path) -> pd.DataFrame:
    with sqlite3.connect(ws / "workspace.db") as db:
        return pd.read_sql("SELECT * FROM predictions ORDER BY product_id, model_version", db)


def live(ws: Path) -> str:
    with sqlite3.connect(ws / "workspace.db") as db:
        return db.execute("SELECT value FROM settings WHERE key = 'live_model_version'").fetchone()[0]


def assert_same_predictions(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-6) -> None:
    """Same products, versions, sources and top-1; every probability within `atol` (1e-6 by
    default: they are stored rounded to 6 decimals, so a last-digit rounding flip is the most they
    may differ when the same model scores the same features)."""
    assert len(a) == len(b) > 0
    keys = ["product_id", "model_version", "source", "top1", "disagreement"]
    pd.testing.assert_frame_equal(a[keys].reset_index(drop=True), b[keys].reset_index(drop=True))
    pa = np.array([json.loads(p) for p in a["probs"]])
    pb = np.array([json.loads(p) for p in b["probs"]])
    assert np.abs(pa - pb).max() <= atol + 1e-12
    assert np.abs(a["top1_prob"].to_numpy() - b["top1_prob"].to_numpy()).max() <= atol + 1e-12


@pytest.fixture(scope="module")
def local_scored(trained: Path, tmp_path_factory) -> Path:
    """The reference: the local engine re-scores a copy (its image features recomputed)."""
    ws = copy_without_features(trained, tmp_path_factory.mktemp("local") / "ws")
    out = ok(cli("score", "-w", ws, "--engine", "local"))
    assert "products scored  100" in out, out
    return ws


# -- the cluster ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive_nodes(address: str, env: dict | None = None) -> int:
    host, port = address.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return 0                   # the head's GCS is not listening yet
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))" % address)
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, env=env or ENV)
    except subprocess.TimeoutExpired:
        return 0
    return int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else 0


class Cluster:
    """A Ray head and worker nodes on this machine, each `ray start --block` in its own process
    group, so stopping one kills exactly its processes."""

    def __init__(self, env: dict | None = None) -> None:
        self.env = env or ENV
        self.temp = tempfile.mkdtemp(prefix="rayt")      # short: Ray's socket paths must stay short
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def _start(self, *args: str) -> subprocess.Popen:
        cmd = ["ray", "start", "--block", "--num-cpus=1", "--object-store-memory=80000000",
               "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args]
        log = open(Path(self.temp) / f"node{len(self.nodes)}.log", "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        log.close()
        self.nodes.append(proc)
        return proc

    def start(self, workers: int = 1) -> "Cluster":
        self._start("--head", f"--port={self.port}", f"--temp-dir={self.temp}", "--include-dashboard=false")
        self._wait(1)
        for _ in range(workers):
            self._start(f"--address={self.address}")
        if workers:
            self._wait(1 + workers)
        return self

    def _wait(self, n: int, timeout: float = 300) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if alive_nodes(self.address, self.env) >= n:
                return
            for i, proc in enumerate(self.nodes):
                if proc.poll() is not None:
                    tail = (Path(self.temp) / f"node{i}.log").read_text()[-1500:]
                    raise RuntimeError(f"ray start (node {i}) exited {proc.returncode}: {tail}")
            time.sleep(1)
        raise RuntimeError(f"Ray cluster at {self.address} did not reach {n} nodes in {timeout:.0f} s")

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
        try:    # the raylet's children left in the group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        for proc in reversed(self.nodes):
            self.kill(proc)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install -r requirements-ray.txt)")
    c = Cluster()
    try:
        yield c.start(workers=1)
    finally:
        c.stop()


# -- equal predictions ---------------------------------------------------------------------------
@needs_ray
def test_ray_score_on_two_nodes_equals_the_local_engine(trained, local_scored, cluster, tmp_path):
    ws = copy_without_features(trained, tmp_path / "ws")
    before = live(ws)
    out = ok(cli("score", "-w", ws, "--engine", "ray", "--ray-address", cluster.address, "--batch-size", 8))
    assert "products scored  100" in out and f"at {cluster.address}" in out
    assert live(ws) == before
    assert_same_predictions(predictions(local_scored), predictions(ws))
    with sqlite3.connect(ws / "workspace.db") as a, sqlite3.connect(local_scored / "workspace.db") as b:
        q = "SELECT sha1, backbone, vector FROM image_features ORDER BY sha1, backbone"
        fa, fb = a.execute(q).fetchall(), b.execute(q).fetchall()
    assert len(fa) == len(fb) == 80     # every scored photo's features came back and were cached
    assert [r[:2] for r in fa] == [r[:2] for r in fb]
    diff = max(np.abs(np.frombuffer(x[2], np.float32) - np.frombuffer(y[2], np.float32)).max() for x, y in zip(fa, fb))
    assert diff < 1e-4
    assert not glob.glob(str(ws / "tmp" / "score-*.db"))      # the staging file is gone


@needs_ray
def test_ray_train_and_predict_equal_the_local_engine(trained, cluster, tmp_path, sample_dir):
    """train --engine ray: features on the cluster, fits here -> the same version's predictions as
    a local train (the workspace's own live version: `train` with the local engine on the same
    products, equal to 1e-6 to a second local train on a copy, measured); predict --engine ray
    writes the local CSV."""
    remote = copy_without_features(trained, tmp_path / "remote")
    result = cli("train", "-w", remote, "--engine", "ray", "--ray-address", cluster.address)
    ok(result)
    assert "Image features computed on Ray: 120 new" in result.stderr
    a, b = predictions(trained), predictions(remote)
    va, vb = live(trained), live(remote)
    assert va != vb
    a, b = a[a["model_version"] == va].copy(), b[b["model_version"] == vb].copy()
    b["model_version"] = va
    # The image features a Ray actor computes (one torch thread) differ from the local ones in the
    # last float32 digits (< 1e-4, test above); the heads and the fusion are then fitted on them, so
    # the two versions are two fits: same top-1 everywhere, probabilities within 0.01 (measured: at
    # most 0.003 on these 180 products). Scoring with one fitted version is equal to 1e-6 (above).
    assert_same_predictions(a.reset_index(drop=True), b.reset_index(drop=True), atol=1e-2)
    x = tmp_path / "X.csv"
    pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False).iloc[1800:1830].to_csv(x)
    folder = sample_dir / "images" / "image_train"
    ok(cli("predict", "-w", trained, "--texts", x, "--images", folder, "--out", tmp_path / "l.csv"))
    ok(cli("predict", "-w", trained, "--texts", x, "--images", folder, "--out", tmp_path / "r.csv",
           "--engine", "ray", "--ray-address", cluster.address, "--batch-size", 7))
    pl, pr = pd.read_csv(tmp_path / "l.csv"), pd.read_csv(tmp_path / "r.csv")
    # one of those 30 rows has no title, only a photo: predicted from it by both
    assert list(pl.columns) == list(pr.columns) and len(pl) == len(pr) == 30
    num = pl.select_dtypes("number").columns
    assert np.abs(pl[num].fillna(-1).to_numpy() - pr[num].fillna(-1).to_numpy()).max() <= 1e-6 + 1e-12


STREAMING_DRIVER = """
import gc, json, sys, weakref
from pathlib import Path
import numpy as np
from labeler.engines import engine
from labeler.importer import stream_challenge
from labeler.training import live_bundle
from store.workspace import Workspace

ws_path, x, images, address, spool = sys.argv[1:6]
ws = Workspace(ws_path, create=False, read_only=True)
bundle = live_bundle(ws, None)
alive_late = []               # per chunk read: products of the chunk before last still in memory
refs = []

def tracked(chunks):
    for chunk in chunks:
        gc.collect()
        alive_late.append(sum(r() is not None for r in refs[-2]) if len(refs) >= 2 else 0)
        refs.append([weakref.ref(p) for p in chunk])
        yield chunk
        del chunk

def parts(name, **kw):
    with stream_challenge(x, images, chunk_rows=10) as (reading, chunks):
        return [(list(part["id"]), out["fused"].tolist(), out["text"].tolist())
                for part, out in engine(name, address if name == "ray" else None).predict(
                    ws, bundle, tracked(chunks), batch_size=7, **kw)]

ray_parts = parts("ray", spool=Path(spool))
n_chunks, late = len(refs), list(alive_late)
refs.clear()
local_parts = parts("local")
print(json.dumps({"ray": ray_parts, "local": local_parts, "alive_late": late, "chunks": n_chunks}))
"""


@needs_ray
def test_ray_predict_streams_the_file_through_a_spool(trained, cluster, tmp_path, sample_dir):
    """predict on Ray holds a chunk of the X file, not the file: the reader's chunks are spooled
    to Parquet a batch at a time (no product of a chunk is alive once the chunk after the next
    is read), the cluster predicts the spooled batches, and they come back in the file's order,
    the reader's batches of 7 across chunks of 10 rows, equal to the local engine's; the spool
    is removed at the end."""
    x = tmp_path / "X.csv"
    pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False).iloc[1800:1850].to_csv(x)
    spool = tmp_path / "spool"
    spool.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(STREAMING_DRIVER)
    result = subprocess.run([sys.executable, str(script), str(trained), str(x),
                             str(sample_dir / "images" / "image_train"), cluster.address, str(spool)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["chunks"] == 5 and got["alive_late"] == [0] * 5
    ray_parts, local_parts = got["ray"], got["local"]
    assert [len(ids) for ids, _, _ in ray_parts] == [7] * 7 + [1]
    assert [i for ids, _, _ in ray_parts for i in ids] == [i for ids, _, _ in local_parts for i in ids]
    for (_, fr, tr), (_, fl, tl) in zip(ray_parts, local_parts):
        assert np.abs(np.array(fr) - np.array(fl)).max() <= 1e-6
        assert np.abs(np.array(tr) - np.array(tl)).max() <= 1e-6
    assert list(spool.iterdir()) == []


# -- bad input -----------------------------------------------------------------------------------
def test_engine_ray_without_ray_says_how_to_install(tmp_path):
    """Ray made unimportable in the CLI's own process (sys.modules['ray'] = None is what Python
    does for a package that is not there): one line with the install command, nothing else."""
    code = "import sys; sys.modules['ray'] = None; from labeler.cli import main; main()"
    for args in (["score", "-w", tmp_path / "ws", "--engine", "ray"],
                 ["train", "-w", tmp_path / "ws", "--engine", "ray", "--ray-address", "127.0.0.1:1"]):
        r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                           timeout=120, cwd=ROOT, env=ENV)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines() == [
            "Error: --engine ray needs Ray, which is not installed in this Python; install it with: "
            "pip install -r requirements-ray.txt  (or: pip install '.[ray]')"]
        assert not (tmp_path / "ws").exists()


def test_the_app_and_help_never_import_ray(trained, tmp_path):
    code = ("import sys; from click.testing import CliRunner; from labeler.cli import main; import labeler.app; "
            "r = CliRunner().invoke(main, ['score', '-w', sys.argv[1]]); assert r.exit_code == 0, r.output; "
            "print('ray' in sys.modules)")
    ws = shutil.copytree(trained, tmp_path / "ws")
    r = subprocess.run([sys.executable, "-c", code, str(ws)], capture_output=True, text=True, timeout=300,
                       cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "False"


@needs_ray
@pytest.mark.parametrize("address", ["127.0.0.1:{closed}", "192.0.2.1:6379", "nohost.invalid:6379"])
def test_unreachable_ray_address_is_one_line_within_30_s(trained, tmp_path, address):
    address = address.format(closed=free_port())
    ws = shutil.copytree(trained, tmp_path / "ws")
    before = predictions(ws)
    started = time.time()
    r = cli("score", "-w", ws, "--engine", "ray", "--ray-address", address, timeout=60)
    assert time.time() - started < 30
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and f"Ray cluster at {address} cannot be reached" in lines[0], r.stderr
    pd.testing.assert_frame_equal(predictions(ws), before)


@needs_ray
def test_a_cluster_with_token_authentication_says_how_to_send_the_token(trained, tmp_path, sample_dir):
    """A head started with a token (as `ray start --head` does by itself once ~/.ray/auth_token
    exists) refuses a client that sends none: one line naming RAY_AUTH_MODE=token and where the
    token goes, instead of Ray's "Failed to connect" to an address it made up; with them set, the
    same command runs."""
    token = secrets.token_hex(32)
    head = Cluster(env={**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    x = tmp_path / "X.csv"
    pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False).iloc[1800:1803].to_csv(x)
    try:
        head.start(workers=0)
        args = ("predict", "-w", trained, "--texts", x, "--out", tmp_path / "p.csv", "--engine", "ray",
                "--ray-address", head.address)
        r = cli(*args, timeout=120)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        lines = error_lines(r)
        assert len(lines) == 1 and f"Ray cluster at {head.address} uses token authentication" in lines[0], r.stderr
        assert "RAY_AUTH_MODE=token" in lines[0] and "RAY_AUTH_TOKEN" in lines[0]
        assert not (tmp_path / "p.csv").exists()
        ok(cli(*args, env=head.env))
        assert len(pd.read_csv(tmp_path / "p.csv")) == 3
    finally:
        head.stop()


@needs_ray
def test_a_worker_node_killed_mid_scoring_changes_nothing_or_retries(trained, local_scored, cluster, tmp_path):
    """Kill the worker node (its raylet and actor) while `score --engine ray` runs: the job either
    fails in one line with every stored prediction (created_at included) and the live version as
    they were, or Ray retries it on the head node and the predictions equal the local engine's.
    Runs last: the cluster is down to its head afterwards."""
    ws = copy_without_features(trained, tmp_path / "ws")
    before, version = predictions(ws), live(ws)
    worker = cluster.nodes[-1]
    cmd = [sys.executable, "-m", "labeler", "score", "-w", str(ws), "--engine", "ray", "--ray-address",
           cluster.address, "--batch-size", "2"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    try:
        end = time.time() + 300
        staged = 0
        while time.time() < end and job.poll() is None and staged < 4:
            for f in glob.glob(str(ws / "tmp" / "score-*.db")):
                try:
                    with sqlite3.connect(f"file:{f}?mode=ro", uri=True, timeout=1) as db:
                        staged = db.execute("SELECT count(*) FROM staged").fetchone()[0]
                except sqlite3.Error:
                    pass
            time.sleep(0.1)
        assert job.poll() is None and staged >= 4, "the job was not running with results staged"
        Cluster.kill(worker)
        stdout, stderr = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert live(ws) == version
    if job.returncode != 0:
        lines = [ln for ln in stderr.splitlines() if ln.startswith("Error:")]
        assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
        assert f"Ray job on {cluster.address} failed while scoring" in lines[0]
        assert "nothing was written to the predictions" in lines[0]
        pd.testing.assert_frame_equal(predictions(ws), before)     # created_at too: no row was rewritten
    else:
        assert "products scored  100" in stdout
        assert_same_predictions(predictions(local_scored), predictions(ws))
    assert not glob.glob(str(ws / "tmp" / "score-*.db"))
