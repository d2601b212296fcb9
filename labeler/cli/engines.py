"""`--engine local|ray` and `--ray-address` on `train`, `retrain`, `predict`, and the `score` command.

Registered in `labeler.cli` (`main.add_command(engines.score)`; importing this module adds the
options). The options are added to the existing command objects here (a click command's params
and callback can be extended), so the commands' own modules declare no engine options:

* train / retrain with `ray`: every product image's features are computed on the cluster and
  cached first; the fits (text, image heads, fusion) then run here, reading the cache.
* predict with `ray`: the X file is read a chunk at a time and spooled beside the output file a
  batch at a time (Parquet), each batch predicted by one of the cluster's actors, written out in
  the file's order (`predict.file_predictions` with the engine).
* score: re-scores the workspace with the live version (every product without an out-of-fold
  prediction of it), locally or on the cluster.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from labeler.cli import models as model_commands, predict as predict_commands
from labeler.cli.common import TqdmProgress, _table, open_workspace, user_errors, workspace_option
from labeler.engines import NAMES, Engine, engine as make_engine

ENGINE_HELP = ("Where image features and scoring run: local (this process) or ray (Ray Data actors on a "
               "cluster; pip install -r requirements-ray.txt).")
ADDRESS_HELP = "Ray cluster to use with --engine ray, HOST:PORT of its head (default: RAY_ADDRESS, else a local Ray)."


def engine_params() -> list[click.Option]:
    return [click.Option(["--engine"], type=click.Choice(NAMES), default="local", show_default=True, help=ENGINE_HELP),
            click.Option(["--ray-address"], default=None, metavar="ADDR", help=ADDRESS_HELP)]


def engine_options(fn: Callable) -> Callable:
    for param in reversed(engine_params()):
        fn = click.option(*param.opts, type=param.type, default=param.default, show_default=param.show_default,
                          metavar=param.metavar, help=param.help)(fn)
    return fn


def _checked(name: str, address: str | None) -> Engine:
    eng = make_engine(name, address)
    eng.check()
    return eng


def _featurise_first(eng: Engine, workspace: Path) -> None:
    """train / retrain on Ray: the image features are computed on the cluster before the fits."""
    ws = open_workspace(workspace)
    with TqdmProgress(f"image features ({eng.name})") as bar:
        n = eng.featurise(ws, progress=bar)
    click.echo(f"Image features computed on Ray: {n} new (cached in {ws.db_path.resolve()}, image_features)", err=True)


def _predict_on(eng: Engine, kwargs: dict[str, Any]) -> None:
    """`predict`'s body with the products predicted by the engine (same CSV as the local path),
    spooled beside the output file (where the cluster's nodes can read them: they read the
    workspace and the photos by path too), each batch written out as it comes back."""
    predict_commands.predict_file(**kwargs, engine=eng)


def add_engine(command: click.Command, before: Callable[[Engine, dict], bool]) -> None:
    """Give `command` the engine options; `before(engine, kwargs)` runs first and returns True
    when it did the command's whole job (the original body is then skipped)."""
    original = command.callback
    command.params.extend(engine_params())

    @functools.wraps(original)
    @user_errors
    def callback(*args: Any, engine: str = "local", ray_address: str | None = None, **kwargs: Any) -> Any:
        eng = _checked(engine, ray_address)
        if eng.name != "local" and before(eng, kwargs):
            return None
        return original(*args, **kwargs)

    command.callback = callback


add_engine(model_commands.train, lambda eng, kw: _featurise_first(eng, kw["workspace"]) or False)
add_engine(model_commands.retrain, lambda eng, kw: _featurise_first(eng, kw["workspace"]) or False)
add_engine(predict_commands.predict, lambda eng, kw: _predict_on(eng, kw) or True)


@click.command()
@workspace_option
@engine_options
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Products per batch (default: 2048 locally, 64 per Ray actor call).")
def score(workspace: Path, engine: str, ray_address: str | None, batch_size: int | None) -> None:
    """Re-score the workspace with the live version.

    Every product without an out-of-fold prediction of the live version (those a training stored
    for labelled products stay) is predicted by the model trained on all labels. With --engine
    ray the products go to the cluster's actors in chunks and the predictions enter the workspace
    in one transaction at the end: a failed job changes nothing. The live version does not move.
    """
    eng = _checked(engine, ray_address)
    ws = open_workspace(workspace)
    from labeler.training import live_bundle
    bundle = live_bundle(ws)
    with TqdmProgress(f"score ({bundle.version}, {eng.name})") as bar:
        n = eng.score(ws, bundle, batch_size=batch_size, progress=bar)
    click.echo("Scored:")
    click.echo(_table([("version", f"{bundle.version} (live, unchanged)"), ("engine", eng.name + (
        f" at {ray_address}" if ray_address else "")), ("products scored", n),
        ("recorded in", f"{ws.db_path.resolve()} (predictions)")]))
