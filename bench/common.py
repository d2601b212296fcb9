"""What the performance benches (and the experiments) share: the `--quick` switch, timing,
percentiles, printed tables, the cached sample workspaces, a catalog grown to scale, the held-out
image split and memory readings.

Run a bench from the project folder as a module (`python -m bench.bench_review --quick`): the
package (labeler, models, store) and this module are imported from there, no path is edited.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from labeler.samples import ROOT, SAMPLE, sample_products

CACHE = Path(tempfile.gettempdir()) / "labeler-bench"     # bench workspaces and features, across runs
OUT = ROOT / "bench" / "out"                               # CSV / PNG outputs
IMAGES = SAMPLE / "images" / "image_train"
QUICK_HELP = "small sizes, seconds to a minute: the same table on less data (what CI runs)"


# -- arguments --------------------------------------------------------------------------------------
def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the module docstring's first line, with `--quick`."""
    ap = argparse.ArgumentParser(description=(doc or "").strip().split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=QUICK_HELP)
    return ap


def parse(ap: argparse.ArgumentParser, quick: dict, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `argv`; with --quick, `quick` replaces the defaults (options given explicitly still win)."""
    args = ap.parse_args(argv)
    if args.quick:
        ap.set_defaults(**quick)
        args = ap.parse_args(argv)
    return args


# -- timing and summaries ---------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> float:
    """Seconds `fn()` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def p50_p95(values: Sequence[float]) -> tuple[float, float]:
    return statistics.median(values), pct(values, 95)


def table(title: str, header: list[str], rows: list[list]) -> None:
    """Print `rows` under `header` in left-aligned columns, after a blank line and `title`."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def rss_mb() -> float:
    """This process's resident memory in MiB (/proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- workspaces -------------------------------------------------------------------------------------
def sample_template(per_category: int | None = None, *, rebuild: bool = False) -> Path:
    """The sample (`per_category` products per category, None: all ~1,950) scored by a version
    trained by the current code; built once per code fingerprint under /tmp/labeler-bench."""
    from labeler.templates import sample_template as build
    return build(SAMPLE, per_category, cache=CACHE, rebuild=rebuild)


def newest_sample_template(per_category: int | None = None) -> Path | None:
    """The newest sample template built, whatever code version built it (no retraining)."""
    suffix = "full" if per_category is None else str(per_category)
    built = sorted((p for p in CACHE.glob(f"sample-ws-*-{suffix}") if (p / "READY").exists()),
                   key=lambda p: p.stat().st_mtime)
    return built[-1] if built else None


def grow_catalog(ws, n_products: int) -> None:
    """Grow the workspace's catalog to `n_products`: each real product and its predictions copied
    under fresh ids (`<id>~<k>`), as many times as needed. The texts repeat: only the cost of
    serving a catalog that size is measured, so copies are honest stand-ins."""
    real = ws.count_products()
    product_cols = "title, description, image_path, image_sha1, source_label, batch_id, source_row, imported_at"
    pred_cols = "model_version, top5, probs, voters, top1, top1_prob, margin, entropy, disagreement, created_at"

    def grow(conn) -> None:
        for k in range(1, -(-(n_products - real) // real) + 1):
            n = min(real, n_products - real * k)
            conn.execute(f"INSERT INTO products (id, {product_cols}) SELECT id || '~' || ?, {product_cols} "
                         "FROM products WHERE instr(id, '~') = 0 ORDER BY rowid LIMIT ?", (k, n))
            conn.execute(f"INSERT INTO predictions (product_id, {pred_cols}) SELECT p.id, {pred_cols} "
                         "FROM products p JOIN predictions r ON r.product_id = substr(p.id, 1, instr(p.id, '~') - 1) "
                         "WHERE p.id LIKE '%~' || ?", (k,))
    ws.write(grow)


# -- the sample, for the image benches and the experiments -----------------------------------------
def load_sample(sample_dir: Path = SAMPLE) -> pd.DataFrame:
    """Every product of the sample with a title: id, title, description, image_path, label."""
    return sample_products(sample_dir, None).rename(columns={"source_label": "label"})


def image_files(n: int | None = None) -> list[Path]:
    """The sample's product photos, in name order (the first `n`)."""
    files = sorted(IMAGES.glob("image_*_product_*.jpg"))
    return files[:n] if n else files


def held_out_split(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Index, pd.Index]:
    """(X, Y of the sample's products with a designation, the index of those with an image, the
    stratified quarter of them held out): the split every image F1 of the benches is scored on."""
    from sklearn.model_selection import train_test_split

    x = pd.read_csv(SAMPLE / "X_train_update.csv", index_col=0)
    y = pd.read_csv(SAMPLE / "Y_train_CVw08PX.csv", index_col=0)
    x = x[x["designation"].fillna("").str.strip() != ""]
    y = y.loc[x.index]
    with_image = {p.name.split("_product_")[1][:-4] for p in image_files()}
    imaged = x.index[x["productid"].astype(str).isin(with_image)]
    _, test = train_test_split(imaged, test_size=0.25, stratify=y.loc[imaged, "prdtypecode"], random_state=seed)
    return x, y, imaged, test


def split_workspace(workdir: Path, seed: int = 0):
    """(workspace with the sample imported, a stratified quarter of the imaged products
    unlabelled; {held-out product id: true code})."""
    from labeler.importer import import_challenge
    from store import Workspace

    x, y, _, test = held_out_split(seed)
    train = x.index.difference(test)
    truth = {str(x.loc[i, "productid"]): int(y.loc[i, "prdtypecode"]) for i in test}
    ws_dir = workdir / f"ws-seed{seed}"
    fresh = not (ws_dir / "workspace.db").exists()
    ws = Workspace(ws_dir)
    share_features(ws, workdir)
    if fresh or ws.count_products() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        x.loc[train].to_csv(workdir / "X_train.csv")
        y.loc[train].to_csv(workdir / "Y_train.csv")
        x.loc[test].to_csv(workdir / "X_test.csv")
        import_challenge(ws, workdir / "X_train.csv", workdir / "Y_train.csv", IMAGES)
        import_challenge(ws, workdir / "X_test.csv", None, IMAGES)
    return ws, truth


def share_features(ws, workdir: Path) -> None:
    """Features are a pure function of (image bytes, backbone recipe): a split of another seed
    reuses the ones its sibling workspaces already computed instead of extracting them again."""
    import sqlite3
    for other in sorted(workdir.glob("ws-seed*/workspace.db")):
        if other.parent.resolve() == ws.root.resolve():
            continue
        con = sqlite3.connect(ws.root / "workspace.db", timeout=30)   # ATTACH cannot run inside ws.write's transaction
        try:
            con.execute("ATTACH DATABASE ? AS other", (str(other),))
            con.execute("INSERT OR IGNORE INTO image_features SELECT * FROM other.image_features")
            con.commit()
        finally:
            con.close()


def image_features(df: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Backbone features of `df`'s images by models.image's default voters, cached in a bench-only
    feature store (/tmp/labeler-bench/al-features): ({voter: (n, dim), zeros without image},
    (n,) has image, voter labels)."""
    import logging

    import torch

    from labeler import taxonomy
    from models.image import DEFAULT_VOTERS, ImageEnsemble
    from store.features import WorkspaceFeatures
    from store.workspace import Workspace
    torch.set_num_threads(2)
    store = Workspace(CACHE / "al-features")
    ens = ImageEnsemble(voters=DEFAULT_VOTERS, device="cpu", codes=taxonomy.codes())
    t = time.perf_counter()
    rows = np.flatnonzero(df["image_path"].notna().to_numpy())
    part, part_ok, _ = ens.product_features(df.iloc[rows], feature_store=WorkspaceFeatures(store))
    store.close()
    ok = np.zeros(len(df), bool)
    ok[rows] = part_ok
    feats = {}
    for name, v in part.items():
        feats[name] = np.zeros((len(df), v.shape[1]), dtype=np.float32)
        feats[name][rows] = v
    logging.getLogger(__name__).info("image features for %d products with an image in %.1f s (cache %s)",
                                     ok.sum(), time.perf_counter() - t, CACHE / "al-features")
    return feats, ok, [s.label for s in DEFAULT_VOTERS]
