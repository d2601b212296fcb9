"""The embedded engine: features and scores computed in this process, as before engines existed.

No Ray import anywhere on this path."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from labeler.engines import Progress, product_batches, training_module
from store.workspace import Workspace


def check(address: str | None) -> None:
    """Nothing to reach."""


def featurise(ws: Workspace, *, address: str | None = None, progress: Progress | None = None) -> int:
    """Nothing ahead of time: training computes the features it lacks, in process, as it goes."""
    return 0


def score(ws: Workspace, bundle: Any, *, address: str | None = None, batch_size: int | None = None,
          progress: Progress | None = None) -> int:
    """`score_products` on the products without an out-of-fold prediction of this version, read,
    predicted and written one batch at a time."""
    size = {"batch_size": batch_size} if batch_size else {}
    return training_module().score_products(ws, bundle, progress=progress, **size)


def predict(ws: Workspace, bundle: Any, chunks: Iterable[list], *, address: str | None = None,
            batch_size: int = 512, adapt: bool = False, spool: Path | None = None,
            progress: Progress | None = None) -> Iterator[tuple[pd.DataFrame, dict]]:
    """Each batch predicted here as the reader hands its products over, before the next chunk is
    read (progress is the reader's: it knows how far into the file it is)."""
    from store.features import WorkspaceFeatures
    features = WorkspaceFeatures(ws)
    for part in product_batches(chunks, batch_size):
        yield part, bundle.predict(part, feature_store=features, adapt=adapt)
