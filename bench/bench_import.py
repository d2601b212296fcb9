"""Catalog import speed on the whole Rakuten sample (1,949 rows, 420 images): medians of N runs.

Stages: parse + validate only (what `predict` does before predicting, images verified), a fresh
import into an empty workspace, and a re-import of the same files (nothing new: images of stored
products are not verified again). Also the whole `python -m labeler import` process once, as a
user would time it (interpreter start and imports included).

Then synthetic catalogs (issue 19: the import streams, its memory follows the chunk): N text
products, the sample's real titles, descriptions and category codes re-sampled (seeded) under
fresh ids, in the challenge layout (X + Y), imported by `python -m labeler import` in a process of
its own, then imported again (every id already stored): products/s and that process's peak RSS
(its VmHWM, `bench.bench_scale.run_measured`), with the load average.

    python -m bench.bench_import            # 5 runs each; synthetic 10,000 and 40,000
    python -m bench.bench_import --runs 3 --synthetic 100000
    python -m bench.bench_import --quick    # one run of each; synthetic 2,000
    python -m bench.bench_import --runs 0 --synthetic 10000,40000     # synthetic only
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import IMAGES, ROOT, SAMPLE, parse, parser, timed
from labeler.importer import import_challenge, read_challenge
from store.workspace import Workspace

X, Y = SAMPLE / "X_train_update.csv", SAMPLE / "Y_train_CVw08PX.csv"


def sample_stages(runs: int) -> None:
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
    print(f"Import of the Rakuten sample: {n_rows} rows, medians of {runs} runs (load {os.getloadavg()[0]:.1f})")
    print(f"{'stage':34} {'median s':>9} {'min s':>7} {'rows/s':>8} {'vs fresh':>9}")
    for stage, values in results.items():
        med = statistics.median(values)
        print(f"{stage:34} {med:9.3f} {min(values):7.3f} {n_rows / med:8.0f} {med / base:8.2f}x")


def write_synthetic(n: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """X and Y files of n products: a real title, description and category code of the sample,
    drawn independently, under fresh ids s0, s1, ..."""
    x = pd.read_csv(X, index_col=0, dtype=str, keep_default_na=False)
    y = pd.read_csv(Y, index_col=0)
    x = x[x["designation"].str.strip() != ""]
    rng = np.random.default_rng(seed)
    pick = lambda values: values[rng.integers(len(values), size=n)]     # noqa: E731
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"designation": pick(x["designation"].to_numpy()), "description": pick(x["description"].to_numpy()),
                  "productid": [f"s{i}" for i in range(n)], "imageid": np.arange(n)}).to_csv(folder / "X.csv")
    pd.DataFrame({"prdtypecode": pick(y["prdtypecode"].to_numpy())}).to_csv(folder / "Y.csv")
    return folder / "X.csv", folder / "Y.csv"


def synthetic(sizes: list[int]) -> None:
    from bench.bench_scale import labeler, run_measured
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-import-synthetic-") as tmp:
        for n in sizes:
            x, y = write_synthetic(n, Path(tmp) / f"files-{n}")
            cmd = labeler("import", "-w", Path(tmp) / f"ws-{n}", "--texts", x, "--labels", y)
            for step in ("import", "re-import"):
                res = run_measured(cmd, timeout=7200)
                if "error" in res:
                    raise SystemExit(f"{step} of {n} products failed: {res['error']}")
                rows.append((n, step, res["wall_s"], n / res["wall_s"], res["peak_rss_mb"], os.getloadavg()[0]))
                print(f"{n:>9,} {step:10} {rows[-1][2]:8.1f} {rows[-1][3]:10.0f} {rows[-1][4]:10.0f} "
                      f"{rows[-1][5]:6.1f}", file=sys.stderr, flush=True)
    print("\nSynthetic text catalogs (X + Y, no images), `python -m labeler import` in its own process")
    print(f"{'products':>9} {'step':10} {'wall s':>8} {'rows/s':>10} {'peak RSS MB':>11} {'load':>6}")
    for n, step, wall, rate, rss, load in rows:
        print(f"{n:>9,} {step:10} {wall:8.1f} {rate:10.0f} {rss:11.0f} {load:6.1f}")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=5, help="runs of each stage on the sample (0: skip them)")
    ap.add_argument("--synthetic", default="10000,40000", help="sizes of the synthetic catalogs ('' to skip)")
    args = parse(ap, quick={"runs": 1, "synthetic": "2000"})
    if args.runs:
        sample_stages(args.runs)
    sizes = [int(s) for s in args.synthetic.split(",") if s.strip()]
    if sizes:
        synthetic(sizes)


if __name__ == "__main__":
    main()
