"""The embedded engine: features and scores computed in this process, as before engines existed.

No Ray import anywhere on this path."""
from __future__ import annotations

from typing import Any, Iterator

import pandas as pd

from labeler.engines import Progress, training_module
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


def predict(ws: Workspace, bundle: Any, frame: pd.DataFrame, *, address: str | None = None, batch_size: int = 512,
            adapt: bool = False, progress: Progress | None = None) -> Iterator[tuple[pd.DataFrame, dict]]:
    """(part of frame, bundle.predict(part)) one batch at a time, in frame order."""
    from store.features import WorkspaceFeatures
    features = WorkspaceFeatures(ws)
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start:start + batch_size].reset_index(drop=True)
        yield part, bundle.predict(part, feature_store=features, adapt=adapt)
        if progress:
            progress(min(len(frame), start + batch_size) / len(frame), f"{start + len(part)}/{len(frame)} products")
