"""The Ray engine: image features and scoring as Ray Data `map_batches` over actors.

Each actor loads one model bundle and one set of backbones once (`num_gpus=1` per actor where the
cluster has GPUs, one CPU and one torch thread otherwise) and is fed chunks of products named by
rowid ranges; it reads them, and the image features already cached, from the workspace, and
sends back prediction rows and the features it computed. The driver alone writes: features into
the cache as they arrive, predictions into a staging file moved into the workspace in one
transaction once every chunk is back (`store.engine_io.Staging`). A job that fails (a node lost,
an actor killed) therefore leaves the stored predictions and the live version as they were.

The fits (text model, image heads, fusion) stay on the driver: they are small next to feature
extraction. The workspace folder and the model files must be at the same path on every node
(one machine, or shared storage). Ray is imported here only.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from labeler.engines import EngineError, Progress, product_batches
from store import engine_io
from store.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "pip install -r requirements-ray.txt  (or: pip install '.[ray]')"
CHUNK = 64            # products per Ray Data batch: one actor call, one progress step
SPOOLED = ["id", "title", "description", "image_path", "image_sha1"]     # what a predict actor reads
REACH_TIMEOUT_S = 10


# -- connecting ----------------------------------------------------------------------------------
def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EngineError(f"--engine ray needs Ray, which is not installed in this Python; install it with: "
                          f"{INSTALL}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of 'host:port' or 'ray://host:port'; None for 'auto' / 'local'."""
    rest = address.split("://", 1)[-1].rstrip("/")
    if rest in ("auto", "local", ""):
        return None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise EngineError(f"--ray-address {address}: expected HOST:PORT (the head's GCS port, e.g. 127.0.0.1:6379) "
                          "or ray://HOST:PORT")
    return host, int(port)


def _reachable(address: str) -> None:
    """A clear line within seconds instead of Ray's own long retry loop on a wrong address."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        raise EngineError(f"Ray cluster at {address} cannot be reached ({exc.strerror or exc}); start one with "
                          f"`ray start --head --port={hp[1]}` or fix --ray-address") from None


def check(address: str | None) -> None:
    _ray()
    if address:
        _reachable(address)


def connect(address: str | None) -> Any:
    """The `ray` module, connected to `address` (None: RAY_ADDRESS, else a Ray started here)."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _reachable(address)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    try:
        ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": path}}, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True,
                 **({} if address else {"include_dashboard": False}))
    except Exception as exc:  # ConnectionError, version mismatch, timeouts: all one line
        if _wants_token(exc):
            raise EngineError(f"Ray cluster at {address} uses token authentication and this command sent no "
                              "token it accepts: run it with RAY_AUTH_MODE=token and the cluster's token in "
                              "RAY_AUTH_TOKEN (or ~/.ray/auth_token)") from None
        raise EngineError(f"Ray cluster at {address or 'a local Ray'} did not accept this job "
                          f"({type(exc).__name__}: {_first_line(exc)})") from None
    from ray.data import DataContext
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def _wants_token(exc: BaseException | None) -> bool:
    """Ray's refusal of a missing or wrong token, under its ConnectionError. (Ray turns token auth
    on for a cluster by itself: `ray start --head` does when ~/.ray/auth_token exists, which any
    local `ray.init()` writes; a client given an explicit address sends a token only under
    RAY_AUTH_MODE=token.)"""
    while exc is not None:
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).strip().splitlines()[:1])
    return text[:300] or type(exc).__name__


def _placement(ray: Any) -> dict[str, Any]:
    """One actor per GPU where there are GPUs, else one per CPU (one torch thread each)."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 0))
    if gpus:
        return {"num_gpus": 1, "size": gpus, "threads": max(1, cpus // gpus)}
    if not cpus:
        raise EngineError("the Ray cluster offers no CPU and no GPU to run actors on; start a worker node with "
                          "`ray start --address=HEAD:PORT --num-cpus=1`")
    return {"num_cpus": 1, "size": cpus, "threads": 1}


# -- actors --------------------------------------------------------------------------------------
class _Recording:
    """The workspace's feature cache, read-only: features computed here are kept for the driver."""

    def __init__(self, ws: Workspace):
        from store.features import WorkspaceFeatures
        self.inner = WorkspaceFeatures(ws)
        self.new: list[tuple[str, str, np.ndarray]] = []

    def get(self, sha1s: Any, key: str) -> dict[str, np.ndarray]:
        return self.inner.get(sha1s, key)

    def cached(self, sha1s: Any, key: str) -> set[str]:
        return self.inner.cached(sha1s, key)

    def put(self, items: Any, key: str) -> None:
        self.new.extend((s, key, np.asarray(v, dtype=np.float32)) for s, v in items)


class _Actor:
    """Loads the bundle / backbones once; one call per chunk of products."""

    def __init__(self, root: str, cwd: str, threads: int, bundle_path: str | None = None,
                 voters: str | None = None):
        import torch
        os.chdir(cwd)                      # image paths stored relative to where the driver runs
        torch.set_num_threads(threads)
        self.ws = Workspace(root, create=False)
        self.bundle = None
        if bundle_path:
            from models.predictor import load_bundle
            self.bundle = load_bundle(bundle_path)
        self.voters = voters

    def frame(self, rows: list[dict]) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=["id", "title", "description", "image_path", "image_sha1"])
        df["description"] = df["description"].fillna("")
        return df


class _ScoreActor(_Actor):
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from models.honest import OUT_OF_FOLD_SOURCE
        from models.predictor import prediction_rows
        out: dict[str, list] = {"lo": [], "rows": [], "features": []}
        for lo, hi in zip(batch["lo"], batch["hi"]):
            df = self.frame(engine_io.products_to_score(self.ws, int(lo), int(hi), self.bundle.version,
                                                        OUT_OF_FOLD_SOURCE))
            cache = _Recording(self.ws)
            rows = prediction_rows(df["id"].astype(str).tolist(), self.bundle.predict(df, feature_store=cache),
                                   self.bundle.codes) if len(df) else []
            out["lo"].append(int(lo))
            out["rows"].append(json.dumps(rows).encode())
            out["features"].append(pickle.dumps(cache.new))
        return out


class _FeatureActor(_Actor):
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from labeler import taxonomy
        from models.image import ImageEnsemble, voters_from_config
        ensemble = ImageEnsemble(voters=voters_from_config(self.voters), codes=taxonomy.of(self.ws).keys())
        out: dict[str, list] = {"lo": [], "features": []}
        for lo, hi in zip(batch["lo"], batch["hi"]):
            df = self.frame(engine_io.products_with_images(self.ws, int(lo), int(hi)))
            cache = _Recording(self.ws)
            if len(df):
                ensemble.product_features(df, feature_store=cache)
            out["lo"].append(int(lo))
            out["features"].append(pickle.dumps(cache.new))
        return out


class _PredictActor(_Actor):
    def __init__(self, *args: Any, adapt: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.adapt = adapt

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"part": [], "out": []}
        for i, path in zip(batch["part"], batch["path"]):     # one spooled batch of products a call
            part = pd.read_parquet(path, columns=SPOOLED)
            out["part"].append(int(i))
            out["out"].append(pickle.dumps(self.bundle.predict(part, feature_store=_Recording(self.ws),
                                                               adapt=self.adapt)))
        return out


# -- jobs ----------------------------------------------------------------------------------------
def _run(ray: Any, ds: Any, actor: type, kwargs: dict, batch_format: str = "numpy", batch_size: int | None = 1) -> Any:
    """Batches of `actor`'s output as they come back (streaming; order preserved)."""
    from ray.data import ActorPoolStrategy
    place = _placement(ray)
    resources = {k: place[k] for k in ("num_cpus", "num_gpus") if k in place}
    mapped = ds.map_batches(actor, batch_size=batch_size, batch_format=batch_format,
                            compute=ActorPoolStrategy(size=place["size"]),
                            fn_constructor_kwargs={**kwargs, "threads": place["threads"]}, **resources)
    return mapped.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=1)


def _stream(ray: Any, ds: Any, actor: type, kwargs: dict, *, address: str | None, doing: str, outcome: str,
            total: int, unit: str, progress: Progress | None = None, **run: Any) -> Iterator[dict]:
    """Each output batch of `actor` over `ds`, as it comes back, for the driver to write before
    the next one is taken (so the driver holds one batch, not the job's output).

    Whatever Ray raises (a node lost, an actor killed, a task error) becomes one EngineError line
    naming the cluster, what was being done (`doing`) and what that leaves (`outcome`); progress
    is reported after the caller has handled each batch ("<doing> on Ray: i/total <unit>")."""
    done = 0
    try:
        batches = iter(_run(ray, ds, actor, kwargs, **run))
    except EngineError:
        raise
    except Exception as exc:
        raise _failed(address, exc, doing, outcome) from None
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except EngineError:
            raise
        except Exception as exc:
            raise _failed(address, exc, doing, outcome) from None
        yield batch
        done += len(next(iter(batch.values())))
        if progress:
            progress(done / total, f"{doing} on Ray: {done}/{total} {unit}")


UNCHANGED = "nothing was written to the predictions and the live version is unchanged"


def _failed(address: str | None, exc: BaseException, doing: str, outcome: str = UNCHANGED) -> EngineError:
    return EngineError(f"Ray job on {address or 'a local Ray'} failed while {doing} ({type(exc).__name__}: "
                       f"{_first_line(exc)}); {outcome}")


def _chunk_items(chunks: list[tuple[int, int]]) -> list[dict]:
    return [{"lo": lo, "hi": hi} for lo, hi in chunks]


def _actor_args(ws: Workspace) -> dict[str, str]:
    return {"root": str(ws.root.resolve()), "cwd": os.getcwd()}


def featurise(ws: Workspace, *, address: str | None = None, progress: Progress | None = None) -> int:
    """Every product image's features under the workspace's voters, computed on the cluster and
    written into the workspace's cache (training then reads them from there)."""
    from models.image import VOTERS_SETTING
    ray = connect(address)
    chunks = engine_io.rowid_chunks(ws, CHUNK)
    if not chunks:
        return 0
    ds = ray.data.from_items(_chunk_items(chunks), override_num_blocks=min(len(chunks), 200))
    n = 0
    for batch in _stream(ray, ds, _FeatureActor, {**_actor_args(ws), "voters": ws.get_setting(VOTERS_SETTING)},
                         address=address, doing="computing image features",
                         outcome="nothing was trained and the live version is unchanged", total=len(chunks),
                         unit="chunks", progress=progress):
        for blob in batch["features"]:
            n += engine_io.put_features(ws, pickle.loads(blob))
    return n


def score(ws: Workspace, bundle: Any, *, address: str | None = None, batch_size: int | None = None,
          progress: Progress | None = None) -> int:
    """Re-score with `bundle` every product lacking its out-of-fold prediction of it; predictions
    are staged and enter the workspace all at once, after the last chunk."""
    from models.honest import ALL_LABELS_SOURCE
    ray = connect(address)
    chunks = engine_io.rowid_chunks(ws, batch_size or CHUNK)
    if not chunks:
        return 0
    bundle_path = str(Path(ws.model_version(bundle.version)["path"]).resolve())
    ds = ray.data.from_items(_chunk_items(chunks), override_num_blocks=min(len(chunks), 200))
    with engine_io.Staging(ws) as staging:
        for batch in _stream(ray, ds, _ScoreActor, {**_actor_args(ws), "bundle_path": bundle_path},
                             address=address, doing="scoring", outcome=UNCHANGED, total=len(chunks),
                             unit="chunks", progress=progress):
            for rows, blob in zip(batch["rows"], batch["features"]):
                engine_io.put_features(ws, pickle.loads(blob))
                staging.add(bundle.version, json.loads(rows), ALL_LABELS_SOURCE)
        return staging.commit()


def _spool(chunks: Iterable[list], size: int, folder: Path) -> list[Path]:
    """The reader's products written as one Parquet file per batch, a batch at a time: the
    driver never holds more than a chunk and a batch of the file."""
    files = []
    for i, part in enumerate(product_batches(chunks, size)):
        files.append(folder / f"part-{i:07d}.parquet")
        part.reindex(columns=SPOOLED + ["row"]).to_parquet(files[-1], index=False)
    return files


def predict(ws: Workspace, bundle: Any, chunks: Iterable[list], *, address: str | None = None,
            batch_size: int = 512, adapt: bool = False, spool: Path | None = None,
            progress: Progress | None = None) -> Iterator[tuple[pd.DataFrame, dict]]:
    """`bundle.predict` of a file's products on the cluster, in the reader's order, without the
    file in the driver's memory: the products are spooled to Parquet a batch at a time (in
    `spool`, which the nodes must see like the workspace and the photos), each actor call reads
    one batch's file, and each prediction is handed on with its batch re-read from its file.
    Batches that come back early wait only until the ones before them are handed on; the spool
    is removed at the end. The workspace's cached features are read, new ones are not kept:
    `predict` writes nothing there."""
    ray = connect(address)
    with tempfile.TemporaryDirectory(prefix=".predict-spool-", dir=spool) as folder:
        files = _spool(chunks, batch_size, Path(folder))
        if not files:
            return
        bundle_path = str(Path(ws.model_version(bundle.version)["path"]).resolve())
        ds = ray.data.from_items([{"part": i, "path": str(f)} for i, f in enumerate(files)],
                                 override_num_blocks=min(len(files), 200))
        waiting: dict[int, dict] = {}
        at = 0
        for batch in _stream(ray, ds, _PredictActor, {**_actor_args(ws), "bundle_path": bundle_path, "adapt": adapt},
                             address=address, doing="predicting", outcome="no file was written", total=len(files),
                             unit="batches", progress=progress):
            for i, blob in zip(batch["part"], batch["out"]):
                waiting[int(i)] = pickle.loads(blob)
            while at in waiting:
                yield pd.read_parquet(files[at], columns=SPOOLED + ["row"]), waiting.pop(at)
                at += 1
