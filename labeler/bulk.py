"""Bulk decisions an admin takes back as one: auto-accept of confident predictions, batch undo.

Every product the live model version puts at or above the auto-accept threshold (fused top-1
probability) and that nobody has decided yet gets one ordinary, append-only decision row with
action 'auto_accept', the version, the model's top-5 and the batch it belongs to; the batch row
(`decision_batches`) keeps who ran it, the version and the threshold. The label rule
(`current_labels`), the review queue and the stats count an auto-accept as an accept.
`undo_batch` appends one undo row per decision of the batch still in effect, so a batch is
taken back in one step and the log still shows both.

Left out on purpose, and counted in the result: products another reviewer holds right now (a
reservation: they are looking at it), and products whose imported label differs from the
model's top-1 (accepting would overwrite a human label without anyone looking).

The threshold: the live version's own when it stores one (the guaranteed threshold of the
honest validation loop, metrics["auto_accept"]["threshold"], or a plain
metrics["auto_accept_threshold"]), else `Settings.auto_accept_threshold`; `threshold=`
overrides both. No Gradio here; the CLI (`auto-accept`, `undo-batch`) and the app call these.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable
from datetime import datetime, timezone

from labeler.config import Settings
from store import batches as batch_store, decisions, reservations
from store.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)
VERSION_METRIC = "auto_accept_threshold"
CHUNK = 2000          # products per write transaction (~1-2 s of holding the write lock)


class BulkError(WorkspaceError):
    """A bulk action cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str          # 'given', 'version <id>' or 'settings'


@dataclass
class AutoAcceptResult:
    version: str
    threshold: Threshold
    accepted: list[tuple[str, int, float]] = field(default_factory=list)   # (product, category, top-1 prob)
    held: list[str] = field(default_factory=list)         # reserved by a reviewer right now: left alone
    decided_meanwhile: list[str] = field(default_factory=list)   # a reviewer decided it while the batch ran
    conflicts: list[str] = field(default_factory=list)    # imported label != model top-1: left for review
    batch_id: str | None = None                           # None for a dry run or when nothing qualified
    dry_run: bool = False

    def by_category(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for _, cat, _ in self.accepted:
            out[cat] = out.get(cat, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class UndoBatchResult:
    batch_id: str
    undo_batch_id: str | None
    undone: int
    already_undone: int


def threshold_for(ws: Workspace, version: str, given: float | None = None,
                  settings: Settings = Settings()) -> Threshold:
    """The threshold to use: given > the version's own > the setting.

    The version's own: its guaranteed threshold (metrics["auto_accept"]["threshold"], stored by
    the honest validation loop with its precision guarantee), or a plain
    metrics["auto_accept_threshold"]. A version whose calibration could guarantee no threshold
    auto-accepts nothing unless an admin gives one explicitly.
    """
    if given is not None:
        return Threshold(_check_threshold(given, "--threshold"), "given")
    metrics = ws.model_version(version)["metrics"]
    calibration = metrics.get("auto_accept")
    if isinstance(calibration, dict) and "threshold" in calibration:
        value = calibration["threshold"]
        if value is None:
            raise BulkError(f"version {version} guarantees no auto-accept threshold (its out-of-fold predictions "
                            f"cannot reach {calibration.get('target', 'the target')} precision); review by hand, "
                            "or give --threshold explicitly")
        return Threshold(_check_threshold(value, "stored threshold"), f"version {version}, guaranteed")
    metric = metrics.get(VERSION_METRIC)
    if isinstance(metric, (int, float)) and not isinstance(metric, bool) and 0 < float(metric) <= 1:
        return Threshold(float(metric), f"version {version}")
    return Threshold(float(settings.auto_accept_threshold), "settings")


def auto_accept(ws: Workspace, by: str, *, threshold: float | None = None, dry_run: bool = False,
                settings: Settings = Settings()) -> AutoAcceptResult:
    """Accept every undecided product at or above the threshold, as one batch (see the module doc).

    Written in transactions of CHUNK products (one batch id for all): one transaction for 88k
    products held the write lock for over a minute, longer than a reviewer's submit waits. Each
    chunk re-checks its products inside its own transaction, so a product a reviewer decided or
    reserved meanwhile is left out (`decided_meanwhile`, `held`). A dry run writes nothing.
    """
    by = (by or "").strip()
    if not by:
        raise BulkError("auto-accept needs the admin's name (--by NAME): it is stored as the decision's reviewer")
    version = ws.live_version()
    if version is None:
        raise BulkError("no live model version: train one first (`python -m labeler train`)")
    thr = threshold_for(ws, version, threshold, settings)

    def select(db: "Workspace | sqlite3.Connection") -> tuple[AutoAcceptResult, list[dict]]:
        result = AutoAcceptResult(version=version, threshold=thr, dry_run=dry_run)
        held = reservations.held(db, now=time.time())
        rows = batch_store.auto_accept_candidates(db, version, thr.value)
        chosen = []
        for r in rows:
            pid = r["product_id"]
            if pid in held:
                result.held.append(pid)
            elif r["source_label"] is not None and int(r["source_label"]) != int(r["top1"]):
                result.conflicts.append(pid)
            else:
                result.accepted.append((pid, int(r["top1"]), float(r["top1_prob"])))
                chosen.append(r)
        return result, chosen

    if dry_run:
        return select(ws)[0]

    result, chosen = select(ws)
    if not chosen:
        return result
    batch = _new_batch_id("aa")
    comment = f"auto-accept: fused top-1 >= {thr.value:g} ({thr.source})"
    accepted = {pid for pid, _, _ in result.accepted}

    def chunk_tx(rows: list[dict], first: bool) -> Callable[[sqlite3.Connection], None]:
        def tx(conn: sqlite3.Connection) -> None:
            # what changed since the selection: decided or reserved by a reviewer meanwhile
            ids = [r["product_id"] for r in rows]
            taken = batch_store.labelled(conn, ids)
            held = reservations.held(conn, now=time.time(), product_ids=ids)
            if first:
                batch_store.create(conn, batch, "auto_accept", by, model_version=version, threshold=thr.value,
                               note=f"threshold from {thr.source}")
            written = 0
            for r in rows:
                pid = r["product_id"]
                if pid in taken or pid in held:
                    (result.decided_meanwhile if pid in taken else result.held).append(pid)
                    accepted.discard(pid)
                    continue
                decisions.append(conn, pid, by, "auto_accept", category=int(r["top1"]), model_version=version,
                                 shown_top5=json.loads(r["top5"]), comment=comment,
                                 idempotency_key=f"{batch}:{pid}", batch_id=batch, via="auto_accept")
                written += 1
            batch_store.add_decisions(conn, batch, written)
        return tx

    for start in range(0, len(chosen), CHUNK):
        ws.write(chunk_tx(chosen[start:start + CHUNK], start == 0))
    result.accepted = [a for a in result.accepted if a[0] in accepted]
    result.batch_id = batch
    log.info("auto-accept batch %s: %d products at >= %.3f", batch, len(result.accepted), thr.value)
    return result


def undo_batch(ws: Workspace, batch_id: str, by: str) -> UndoBatchResult:
    """Append an undo row for every decision of the batch still in effect, as one new batch.

    Written in transactions of CHUNK undo rows, as `auto_accept` writes: each chunk skips what
    was undone meanwhile, so running it twice at once still undoes each decision once."""
    by = (by or "").strip()
    if not by:
        raise BulkError("undo-batch needs the admin's name (--by NAME): it is stored as the undo's reviewer")
    batch_id = (batch_id or "").strip()
    batch = batch_store.get(ws, batch_id)
    if batch is None:
        recent = batch_store.recent_ids(ws, 5)
        raise BulkError(f"unknown batch {batch_id!r}; recent batches: {', '.join(recent) or 'none'} "
                        "(`python -m labeler batches` lists them)")
    if batch["kind"] == "undo":
        raise BulkError(f"batch {batch_id} is itself an undo (of {batch['undoes_batch']}); "
                        "re-run the original bulk action instead of undoing an undo")
    ids = batch_store.decision_ids(ws, batch_id)
    undo_id = _new_batch_id("undo")
    done = {"undone": 0, "created": False}

    def chunk_tx(chunk: list[int]) -> Callable[[sqlite3.Connection], None]:
        def tx(c: sqlite3.Connection) -> None:
            live = batch_store.still_in_effect(c, chunk)
            if not live:
                return
            if not done["created"]:
                batch_store.create(c, undo_id, "undo", by, model_version=batch["model_version"], undoes_batch=batch_id)
            for r in live:
                decisions.append(c, r["product_id"], by, "undo", undoes=int(r["id"]), model_version=r["model_version"],
                                 idempotency_key=f"{undo_id}:{r['id']}", batch_id=undo_id, via="undo_batch")
            batch_store.add_decisions(c, undo_id, len(live))
            done["created"] = True
            done["undone"] += len(live)
        return tx

    for start in range(0, len(ids), CHUNK):
        ws.write(chunk_tx(ids[start:start + CHUNK]))
    n = done["undone"]
    return UndoBatchResult(batch_id, undo_id if done["created"] else None, n, len(ids) - n)


def batches(ws: Workspace, limit: int = 20) -> list[dict]:
    """Recent batches, newest first, with how many of their decisions are still in effect."""
    return batch_store.listing(ws, limit)


def _new_batch_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _check_threshold(value: float, what: str) -> float:
    value = float(value)
    if not 0 < value <= 1:
        raise BulkError(f"{what} {value} is not a probability in (0, 1]; e.g. 0.9")
    return value
