"""Catalog import speed on the whole Rakuten sample (1,949 rows, 420 images): medians of N runs.

Stages: parse + validate only (what `predict` does before predicting, images verified), a fresh
import into an empty workspace, and a re-import of the same files (nothing new: images of stored
products are not verified again). Also the whole `python -m labeler import` process once, as a
user would time it (interpreter start and imports included).

    python -m bench.bench_import            # 5 runs each
    python -m bench.bench_import --runs 3
    python -m bench.bench_import --quick    # one run of each
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import IMAGES, ROOT, SAMPLE, parse, parser, timed
from labeler.importer import import_challenge, read_challenge
from store.workspace import Workspace

X, Y = SAMPLE / "X_train_update.csv", SAMPLE / "Y_train_CVw08PX.csv"


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=5)
    runs = parse(ap, quick={"runs": 1}).runs
    n_rows = read_challenge(X, Y, IMAGES).n_rows
    results: dict[str, list[float]] = {"parse + validate (no workspace)": [], "fresh import": [], "re-import": [],
                                       "CLI process, fresh import": []}
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        for i in range(runs):
            results["parse + validate (no workspace)"].append(timed(lambda: read_challenge(X, Y, IMAGES)))
            ws = Workspace(Path(tmp) / f"ws{i}")
            results["fresh import"].append(timed(lambda: import_challenge(ws, X, Y, IMAGES)))
            results["re-import"].append(timed(lambda: import_challenge(ws, X, Y, IMAGES)))
            ws.close()
        for i in range(max(1, runs // 2)):
            cmd = [sys.executable, "-m", "labeler", "import", "--workspace", str(Path(tmp) / f"cli{i}"),
                   "--texts", str(X), "--labels", str(Y), "--images", str(IMAGES)]
            results["CLI process, fresh import"].append(
                timed(lambda: subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)))
    base = statistics.median(results["fresh import"])
    print(f"Import of the Rakuten sample: {n_rows} rows, medians of {runs} runs")
    print(f"{'stage':34} {'median s':>9} {'min s':>7} {'rows/s':>8} {'vs fresh':>9}")
    for stage, values in results.items():
        med = statistics.median(values)
        print(f"{stage:34} {med:9.3f} {min(values):7.3f} {n_rows / med:8.0f} {med / base:8.2f}x")


if __name__ == "__main__":
    main()
