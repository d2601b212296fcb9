"""The app tests' workspace: 324 real sample products (12 per category), 36 of them with their real
image, and a really trained model version (text model + image ensemble + fusion, exactly as
`train_version` makes it: 36 labelled images are above its 30-image minimum).

Training the image ensemble on this 2-core CPU takes minutes, so the template is cached under
/tmp across test runs, keyed by a fingerprint of the code and data that shape it (store, models,
taxonomy, the sample's files); any change there builds a new one. Each test gets its own copy,
whose model-version paths are pointed at the copy so it is self-contained.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(tempfile.gettempdir()) / "labeler-test-templates"
PER_CATEGORY = 12
IMAGES = 36          # products keeping their image; fewer images = a cheaper image ensemble to train
# the modules whose code shapes the template (training and what it pickles); their imports follow
SHAPED_BY = ("labeler.training", "models.image", "models.fusion", "review_workspace")
LIST_SOURCES = ("import sys; sys.path[:0] = {paths!r}; import {modules}\n"
                "for m in list(sys.modules.values()):\n"
                "    f = getattr(m, '__file__', None)\n"
                "    if f and f.startswith({root!r}): print(f)")


@functools.lru_cache(maxsize=None)
def fingerprint(sample_dir: Path | None, modules: tuple[str, ...] = SHAPED_BY, extra: tuple[str, ...] = ()) -> str:
    """Hash of the source files `modules` import (listed by a fresh interpreter, so the answer
    does not depend on what this process imported), the taxonomy, `extra` files and the sample.
    Computed once per test session: code edited during a run does not switch templates."""
    code = LIST_SOURCES.format(modules=", ".join(modules), paths=[str(ROOT), str(ROOT / "tests")], root=str(ROOT))
    files = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=ROOT).stdout.split()
    h = hashlib.sha1(f"per_category={PER_CATEGORY} images={IMAGES}".encode())
    for f in sorted(set(files)) + [str(ROOT / "assets" / "taxonomy.json")] + [str(ROOT / e) for e in extra]:
        h.update(Path(f).relative_to(ROOT).as_posix().encode())
        h.update(Path(f).read_bytes())
    for f in sorted(sample_dir.glob("*.csv")) if sample_dir else ():
        h.update(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}".encode())
    return h.hexdigest()[:16]


def build(root: Path, sample_dir: Path) -> None:
    from labeler.training import train_version
    from review_workspace import insert_products, sample_products
    from store.workspace import Workspace

    products = sample_products(sample_dir, PER_CATEGORY)
    with_image = products.index[products["image_path"].notna()]
    products.loc[products.index.difference(with_image[:IMAGES]), "image_path"] = None
    ws = Workspace(root)
    insert_products(ws, products)
    train_version(ws, evaluate=False, notes="app test fixture")
    ws.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ws.close()


def cached(name: str, key: str, build_fn, *, cache: Path = CACHE) -> Path:
    """cache/<name>-<key>, made by `build_fn(path)` on first use (one builder at a time)."""
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / f"{name}-{key}"
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)              # one builder at a time, across processes
        if not (root / "READY").exists():
            shutil.rmtree(root, ignore_errors=True)   # a build interrupted half-way
            build_fn(root)
            (root / "READY").write_text("ok\n")
            for old in cache.glob(f"{name}-*"):        # templates of older code, unused for an hour
                if old != root and time.time() - old.stat().st_mtime > 3600:
                    shutil.rmtree(old, ignore_errors=True)
    return root


def template(sample_dir: Path) -> Path:
    """The cached template for the current code and sample, built on first use."""
    return cached("app-ws", fingerprint(sample_dir), lambda root: build(root, sample_dir))


def copy_template(src: Path, dest: Path) -> Path:
    """An independent copy whose model-version paths point into the copy."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("READY"))
    with contextlib.closing(sqlite3.connect(dest / "workspace.db")) as conn:
        with conn:
            conn.execute("UPDATE model_versions SET path = replace(path, ?, ?)", (str(src), str(dest)))
    return dest


def app_workspace(sample_dir: Path, dest: Path) -> Path:
    """A fresh, independent copy of the template at `dest`."""
    return copy_template(template(sample_dir), dest)


def demo_workspace(dest: Path) -> Path:
    """A copy of an empty workspace after `launch.prepare_workspace` loaded the demo catalog into it
    (import + training the text model and image ensemble: minutes on 2 cores, so cached under
    /tmp per code fingerprint). What it printed is kept in prepare.log."""
    def build(root: Path) -> None:
        from launch import prepare_workspace
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ws = prepare_workspace(root, demo=True)
        ws.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ws.close()
        (root / "prepare.log").write_text(out.getvalue(), encoding="utf-8")

    key = fingerprint(None, SHAPED_BY + ("labeler.demo", "launch"), ("assets/demo/catalog.csv",))
    return copy_template(cached("demo-ws", key, build), dest)
