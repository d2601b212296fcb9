"""Trained workspaces cached under /tmp across runs, keyed by a fingerprint of the code and data
that shape them, and copied per use.

Training the image ensemble takes minutes on a 2-core CPU, so the tests, the benches and the docs'
screenshots build each template once per code version: the key hashes the source files the
building modules import (listed by a fresh interpreter), the taxonomy, extra files and the
sample's CSVs; any change there builds a new template. A copy is self-contained: its model
versions' paths point into it.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from labeler.samples import ROOT, SAMPLE, build_workspace

CACHE = Path(tempfile.gettempdir()) / "labeler-test-templates"
PER_CATEGORY = 12
IMAGES = 36          # products keeping their image; fewer images = a cheaper image ensemble to train
# the modules whose code shapes a template (training and what it pickles); their imports follow
SHAPED_BY = ("labeler.training", "models.image", "models.fusion", "labeler.samples")
LIST_SOURCES = ("import sys, {modules}\n"
                "for m in list(sys.modules.values()):\n"
                "    f = getattr(m, '__file__', None)\n"
                "    if f and f.startswith({root!r}): print(f)")


@functools.lru_cache(maxsize=None)
def fingerprint(sample_dir: Path | None, modules: tuple[str, ...] = SHAPED_BY, extra: tuple[str, ...] = ()) -> str:
    """Hash of the source files `modules` import (listed by a fresh interpreter run in the project
    folder, so the answer does not depend on what this process imported), the taxonomy, `extra`
    files and the sample. Computed once per process: code edited meanwhile does not switch templates."""
    code = LIST_SOURCES.format(modules=", ".join(modules), root=str(ROOT))
    files = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=ROOT).stdout.split()
    h = hashlib.sha1(f"per_category={PER_CATEGORY} images={IMAGES}".encode())
    for f in sorted(set(files)) + [str(ROOT / "assets" / "taxonomy.json")] + [str(ROOT / e) for e in extra]:
        h.update(Path(f).relative_to(ROOT).as_posix().encode())
        h.update(Path(f).read_bytes())
    for f in sorted(sample_dir.glob("*.csv")) if sample_dir else ():
        h.update(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}".encode())
    return h.hexdigest()[:16]


def cached(name: str, key: str, build_fn: Callable[[Path], object], *, cache: Path = CACHE) -> Path:
    """cache/<name>-<key>, made by `build_fn(path)` on first use (one builder at a time, across
    processes); templates of other keys unused for an hour are removed."""
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / f"{name}-{key}"
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "READY").exists():
            shutil.rmtree(root, ignore_errors=True)   # a build interrupted half-way
            build_fn(root)
            (root / "READY").write_text("ok\n")
            for old in cache.glob(f"{name}-*"):
                if old != root and time.time() - old.stat().st_mtime > 3600:
                    shutil.rmtree(old, ignore_errors=True)
    return root


def copy_template(src: Path, dest: Path) -> Path:
    """An independent copy of the workspace `src` at `dest`, its model-version paths pointing into it."""
    from store.seed import repoint_model_paths
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("READY"))
    repoint_model_paths(dest / "workspace.db", src, dest)
    return dest


def _build_app_workspace(root: Path, sample_dir: Path) -> None:
    """324 products (12 per category), 36 of them with their real image: the image ensemble is
    trained (above train_version's 30-image minimum) but stays cheap."""
    import labeler.samples as samples
    from labeler.training import train_version
    from store.seed import checkpoint_and_close
    from store.workspace import Workspace

    products = samples.sample_products(sample_dir, PER_CATEGORY)
    with_image = products.index[products["image_path"].notna()]
    products.loc[products.index.difference(with_image[:IMAGES]), "image_path"] = None
    ws = Workspace(root)
    samples.insert_products(ws, products)
    train_version(ws, evaluate=False, notes="app test fixture")
    checkpoint_and_close(ws)


def app_template(sample_dir: Path = SAMPLE) -> Path:
    """The cached app workspace (324 products, 36 images, text model + image ensemble + fusion)."""
    return cached("app-ws", fingerprint(sample_dir), lambda root: _build_app_workspace(root, sample_dir))


def app_workspace(sample_dir: Path, dest: Path) -> Path:
    """A fresh, independent copy of the app template at `dest`."""
    return copy_template(app_template(sample_dir), dest)


def sample_template(sample_dir: Path = SAMPLE, per_category: int | None = None, *, cache: Path = CACHE,
                    rebuild: bool = False) -> Path:
    """The sample (`per_category` per category, None: all of it) scored by a version of the current
    code: the benches' workspace, cached per code fingerprint."""
    key = fingerprint(sample_dir) + ("-full" if per_category is None else f"-{per_category}")
    name = "sample-ws"
    if rebuild:
        shutil.rmtree(cache / f"{name}-{key}", ignore_errors=True)

    def build(root: Path) -> None:
        print(f"building a workspace of {sample_dir} ({per_category or 'every'} product(s) per category; "
              "training, once per code version) ...", flush=True)
        build_workspace(root, sample_dir, per_category)
    return cached(name, key, build, cache=cache)


def demo_workspace(dest: Path, prepare: Callable[[Path], object], shaped_by: tuple[str, ...] = ("launch",)) -> Path:
    """A copy of an empty workspace after `prepare(root)` loaded the demo catalog into it (launch.py's
    `prepare_workspace`: import + training the text model and image ensemble, minutes on 2 cores,
    so cached per fingerprint of the code, `shaped_by` included). What it printed is kept in
    prepare.log."""
    def build(root: Path) -> None:
        from store.seed import checkpoint_and_close
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ws = prepare(root)
        checkpoint_and_close(ws)
        (root / "prepare.log").write_text(out.getvalue(), encoding="utf-8")

    key = fingerprint(None, SHAPED_BY + ("labeler.demo",) + shaped_by, ("assets/demo/catalog.csv",))
    return copy_template(cached("demo-ws", key, build), dest)
