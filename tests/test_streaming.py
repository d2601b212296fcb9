"""Streaming (issue 19, item 2): memory follows the batch, not the catalog.

Measured on real workspaces, not assumed: a catalog of N products (the sample's texts, 324 of them
labelled, the rest re-sampled from the sample's real titles and descriptions under fresh ids) and
the same catalog grown to 4N by importing 3N more, scored by the same trained version.

* `score` (the real command, in a subprocess of its own): Python's peak traced memory
  (tracemalloc, numpy's arrays included) of a second re-scoring, after a first one warmed every
  import and cache, at N and 4N. A catalog read whole (ids, rows, a DataFrame of every text) makes
  it grow with N; read, predicted and written a batch at a time it stays flat.
* the review queue's catalog cache: what building it holds beyond what it keeps (its transient
  peak) stays flat from N to 4N, and what it keeps is ids and numbers, no prediction JSON.
"""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
N = 1500                 # products of the small workspace (12 per category labelled)
BATCH = 100              # products per batch of `score` in the measurement
QUEUE_PAGE = 200         # products per page of the queue cache in the measurement

# Python's allocations (tracemalloc: objects and numpy arrays) plus pandas' string columns, which
# live in Arrow buffers tracemalloc does not see (pyarrow's pool; its peak covers both runs, which
# do the same work).
MEASURE_SCORE = r"""
import json, resource, sys, tracemalloc
import pyarrow
from labeler.cli import main
ws, batch = sys.argv[1], sys.argv[2]
args = ["score", "-w", ws, "--batch-size", batch]
main(args, standalone_mode=False)          # warm: imports, the bundle (cached per process), lazy inits
tracemalloc.start()
main(args, standalone_mode=False)          # measured: the same re-scoring again
current, peak = tracemalloc.get_traced_memory()
arrow = pyarrow.default_memory_pool().max_memory()
print(json.dumps({"traced": peak, "arrow": arrow, "peak": peak + arrow,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def resampled(sample: pd.DataFrame, n: int, first: int, seed: int) -> list[tuple]:
    """n unlabelled products without image: a real title and a real description of the sample,
    drawn independently, under fresh ids s<first>, s<first+1>, ..."""
    rng = np.random.default_rng(seed)
    titles = sample["title"].to_numpy()[rng.integers(len(sample), size=n)]
    descs = sample["description"].to_numpy()[rng.integers(len(sample), size=n)]
    return [(f"s{first + i}", t, d, None, None) for i, (t, d) in enumerate(zip(titles, descs))]


def build_small(root: Path, sample_dir: Path) -> None:
    from labeler.samples import sample_products
    from labeler.training import train_version
    from store.seed import checkpoint_and_close, insert_products
    from store.workspace import Workspace
    ws = Workspace(root / "ws")
    labelled = sample_products(sample_dir, 12)
    insert_products(ws, [(r.id, r.title, r.description, None, int(r.source_label)) for r in labelled.itertuples()])
    insert_products(ws, resampled(sample_products(sample_dir, None), N - len(labelled), 0, seed=1))
    train_version(ws, evaluate=False, notes="streaming fixture")
    checkpoint_and_close(ws)


@pytest.fixture(scope="module")
def workspaces(sample_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """{'N': trained workspace of N products, '4N': a copy grown to 4N products, every one of them
    scored by the same live version}."""
    from labeler.samples import sample_products
    from labeler.templates import cached, copy_template, fingerprint
    from labeler.training import live_bundle, score_products
    from store.seed import checkpoint_and_close, insert_products
    from store.workspace import Workspace
    key = fingerprint(sample_dir, ("labeler.training", "labeler.samples", "store.seed"))
    own = Path(tempfile.gettempdir()) / "labeler-test-templates" / "streaming"
    template = cached("streaming-ws-v1", key, lambda root: build_small(root, sample_dir), cache=own) / "ws"
    tmp = tmp_path_factory.mktemp("streaming")
    small = copy_template(template, tmp / "small")
    big = copy_template(template, tmp / "big")
    ws = Workspace(big)
    insert_products(ws, resampled(sample_products(sample_dir, None), 3 * N, N, seed=2))
    score_products(ws, live_bundle(ws), ids=[f"s{N + i}" for i in range(3 * N)])
    assert ws.count_products() == 4 * N
    checkpoint_and_close(ws)
    return {"N": small, "4N": big}


def measure_score(ws: Path) -> tuple[dict, str]:
    r = subprocess.run([sys.executable, "-c", MEASURE_SCORE, str(ws), str(BATCH)], capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stdout


def test_score_peak_memory_follows_the_batch_not_the_catalog(workspaces):
    small, out_small = measure_score(workspaces["N"])
    big, out_big = measure_score(workspaces["4N"])
    from store.workspace import Workspace
    ws = Workspace(workspaces["N"], create=False)
    labelled = len(ws.current_labels())
    ws.close()
    n_small, n_big = (int(re.search(r"products scored\s+(\d+)", o).group(1)) for o in (out_small, out_big))
    assert (n_small, n_big) == (N - labelled, 4 * N - labelled)     # every product but the out-of-fold ones
    per_product = (big["peak"] - small["peak"]) / (3 * N)
    detail = (f"peak {small['peak'] / 2**20:.2f} MiB at {N} products (Arrow {small['arrow'] / 2**20:.2f}), "
              f"{big['peak'] / 2**20:.2f} MiB at {4 * N} (Arrow {big['arrow'] / 2**20:.2f}): x{big['peak'] / small['peak']:.3f}, "
              f"{per_product:.0f} bytes per added product; peak RSS {small['rss_mb']:.0f} / {big['rss_mb']:.0f} MiB")
    print(detail)
    # The peak is mostly one batch's text-model work (~23 MiB, whatever the catalog). On top of it a
    # catalog read whole adds each product's row (its text alone is ~580 bytes here: ~900
    # bytes per added product measured on main at ab453bc); read a batch at a time, ~10.
    assert per_product < 150, detail
    assert big["peak"] < 1.1 * small["peak"], detail


def test_the_queue_cache_is_built_a_page_at_a_time_and_holds_no_prediction_json(workspaces, monkeypatch):
    from labeler import queue
    from store.workspace import Workspace
    monkeypatch.setattr(queue, "LOAD_BATCH", QUEUE_PAGE, raising=False)
    transient, kept = {}, {}
    for name, path in workspaces.items():
        ws = Workspace(path, create=False)
        queue._load_catalog(ws, ws.live_version())          # warm: one-time caches stay out of the measure
        tracemalloc.start()
        cat = queue._load_catalog(ws, ws.live_version())
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        transient[name], kept[name] = peak - current, current
        assert len(cat.ids) == ws.count_products() and not cat.unscored
        assert cat.probs.shape == (len(cat.ids), len(cat.codes)) and cat.probs.dtype == np.float64
        for f in dataclasses.fields(cat):        # ids and numbers only
            value = getattr(cat, f.name)
            if isinstance(value, np.ndarray):
                assert value.dtype.kind in "fi", f.name
            else:
                assert all(isinstance(x, (str, int)) and not str(x).startswith(("[", "{")) for x in value), f.name
        ws.close()
    detail = (f"transient {transient['N'] / 2**10:.0f} KiB at {N} products, {transient['4N'] / 2**10:.0f} KiB at "
              f"{4 * N}; kept {kept['N'] / 2**10:.0f} / {kept['4N'] / 2**10:.0f} KiB")
    print(detail)
    # what the cache keeps grows with the catalog (ids and a row of probabilities each); what
    # building it needs on top does not (one page of JSON): all rows' JSON at once grows ~x4
    assert kept["4N"] > 2.5 * kept["N"], detail
    assert transient["4N"] < 1.5 * transient["N"], detail
