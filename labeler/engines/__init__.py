"""Where image features and scoring run: `local` (this process, the default) or `ray` (Ray Data
over a cluster's actors). Both give the same predictions; only where the work happens differs.

`engine(name, address)` checks the choice before any work starts; the Ray module is imported
only when `ray` is chosen, so the app and `--help` never import Ray.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from store.workspace import Workspace, WorkspaceError

NAMES = ("local", "ray")
Progress = Callable[[float, str], None]


class EngineError(WorkspaceError):
    """A user-facing engine problem (Ray missing, cluster unreachable, job failed): one line."""


def training_module() -> Any:
    """labeler.training, imported when an engine first needs it (it pulls in the models)."""
    from labeler import training
    return training


@dataclass(frozen=True)
class Engine:
    """name: 'local' or 'ray'; address: the Ray cluster ('host:port'; None = a local Ray started
    for this command, or RAY_ADDRESS)."""
    name: str = "local"
    address: str | None = None

    def _impl(self) -> Any:
        if self.name == "ray":
            from labeler.engines import ray as impl
        else:
            from labeler.engines import local as impl
        return impl

    def check(self) -> None:
        """Fail fast, before the command reads or writes anything."""
        self._impl().check(self.address)

    def featurise(self, ws: Workspace, *, progress: Progress | None = None) -> int:
        """Cache the image features every product needs under the workspace's voters."""
        return self._impl().featurise(ws, address=self.address, progress=progress)

    def score(self, ws: Workspace, bundle: Any, *, batch_size: int | None = None,
              progress: Progress | None = None) -> int:
        """Re-score with `bundle` every product without an out-of-fold prediction of it
        (batch_size: products per batch; None = the engine's own)."""
        return self._impl().score(ws, bundle, address=self.address, batch_size=batch_size, progress=progress)

    def predict(self, ws: Workspace, bundle: Any, chunks: Iterable[list], *, batch_size: int = 512,
                adapt: bool = False, spool: Path | None = None, progress: Progress | None = None
                ) -> Iterator[tuple[pd.DataFrame, dict]]:
        """(products_frame of a batch, bundle.predict of it) in the reader's order, `batch_size`
        products a batch whatever the size of the reader's chunks (lists of validated products),
        for products outside the workspace: the caller writes each batch out before the next
        is taken. spool: a folder the cluster's nodes can read, for the engines that send the
        products through files (Ray: beside the output file; default the system's temp folder)."""
        return self._impl().predict(ws, bundle, chunks, address=self.address, batch_size=batch_size, adapt=adapt,
                                    spool=spool, progress=progress)


def rebatched(chunks: Iterable[list[Any]], size: int) -> Iterator[list[Any]]:
    """The chunks' items in lists of `size` (the last shorter), in order."""
    held: list[Any] = []
    for chunk in chunks:
        held.extend(chunk)
        while len(held) >= size:
            yield held[:size]
            held = held[size:]
    if held:
        yield held


def product_batches(chunks: Iterable[list[Any]], size: int) -> Iterator[pd.DataFrame]:
    """A reader's chunks of validated products as `ModelBundle.predict` frames of `size` rows."""
    from labeler.importer import products_frame
    for batch in rebatched(chunks, size):
        yield products_frame(batch)
        del batch           # not held while the next chunk is read


def engine(name: str = "local", address: str | None = None) -> Engine:
    if name not in NAMES:
        raise EngineError(f"--engine {name!r}: expected one of {', '.join(NAMES)}")
    if address and name != "ray":
        raise EngineError(f"--ray-address {address} needs --engine ray")
    return Engine(name, address)
