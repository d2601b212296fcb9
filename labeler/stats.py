"""Review statistics for the stats tab: pure reads of the workspace, returned as dicts/DataFrames.

Only *effective* decisions count (not undone; see the `effective_decisions` view). The model's
top-1 is the one the reviewer was shown (`decisions.shown_top5`), not today's prediction, so the
acceptance rate measures the model version the reviewer actually judged.

Every count the tab shows is defined once, in `COUNTS` (what `progress` returns), and the other
tables agree with it: the per-reviewer `decisions` add up to `decisions`, the acceptance rate is
over the `labels` made while a model top-1 was shown.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from labeler import taxonomy
from labeler.config import Settings
from labeler.queue import needed_reviews
from store import catalog, decisions
from store.workspace import Workspace

log = logging.getLogger(__name__)
IDLE_GAP_S = 300.0   # a pause longer than this between two decisions is a break, not work

# What each number of `progress` means: the Stats tab's labels and their one definition.
COUNTS = {
    "products": "products in the workspace",
    "reviewed": "products with a category from a reviewer (an accept, correct or bulk auto-accept standing)",
    "done": "reviewed products with every review they need (overlap products need two reviewers)",
    "remaining": "products the queues still offer (products - done)",
    "decisions": "decisions standing: accepts, corrections, bulk auto-accepts and skips not undone",
    "labels": "decisions standing that give a category (accepts, corrections, bulk auto-accepts)",
    "auto_accepts": "of the labels, those a bulk auto-accept batch gave",
    "skips": "decisions standing that skip",
    "undos": "decisions taken back with undo",
    "reviewers": "reviewers with a decision standing",
}


def _labelled(ws: Workspace) -> pd.DataFrame:
    """Effective accept/correct decisions with the model top-1 that was shown."""
    rows = decisions.reviewed_labels(ws)
    df = pd.DataFrame(rows, columns=["id", "product_id", "reviewer", "action", "category", "model_version",
                                     "shown_top5", "created_at"])
    df["model_top1"] = [json.loads(s)[0][0] if s else None for s in df["shown_top5"]]
    return df


def progress(ws: Workspace, settings: Settings = Settings()) -> dict:
    """The counts of `COUNTS`, each as defined there (overlap products need two reviewers)."""
    n_products = ws.count_products()
    deciders: dict[str, set[str]] = {}
    for pid, reviewer in decisions.label_deciders(ws):
        deciders.setdefault(pid, set()).add(reviewer)
    done = sum(1 for pid, who in deciders.items()
               if len(who) >= needed_reviews(pid, settings.overlap_share, settings.seed))
    standing = decisions.standing_by_action(ws)
    labels = standing.get("accept", 0) + standing.get("correct", 0) + standing.get("auto_accept", 0)
    return {"products": n_products, "reviewed": len(deciders), "done": done, "remaining": n_products - done,
            "decisions": labels + standing.get("skip", 0), "labels": labels, "skips": standing.get("skip", 0),
            "auto_accepts": standing.get("auto_accept", 0),
            "undos": decisions.undo_count(ws), "reviewers": decisions.reviewer_count(ws)}


def reviewer_rates(ws: Workspace, *, idle_gap_s: float = IDLE_GAP_S) -> pd.DataFrame:
    """Decisions per hour per reviewer, over *active* time (`decisions` as in COUNTS: standing).

    Active time adds the gaps between a reviewer's consecutive decisions, leaving out gaps longer
    than `idle_gap_s` (breaks); the first decision of each sitting adds its own lead time.
    """
    rows = decisions.timeline(ws)
    cols = ["reviewer", "decisions", "active_min", "per_hour", "median_lead_s", "last_at"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    df["t"] = pd.to_datetime(df["created_at"], utc=True, format="ISO8601")
    out = []
    for reviewer, g in df.groupby("reviewer", sort=True):
        gaps = g["t"].diff().dt.total_seconds().to_numpy()[1:]
        lead = g["lead_time_ms"].astype("float64") / 1000.0
        starts = np.r_[True, gaps > idle_gap_s]
        active = float(gaps[gaps <= idle_gap_s].sum()) + float(np.nansum(lead.to_numpy()[starts]))
        n = len(g)
        out.append({"reviewer": reviewer, "decisions": n, "active_min": round(active / 60, 2),
                    "per_hour": round(n / (active / 3600), 1) if active > 0 else None,
                    "median_lead_s": None if lead.isna().all() else round(float(lead.median()), 2),
                    "last_at": g["created_at"].iloc[-1]})
    return pd.DataFrame(out, columns=cols)


def acceptance(ws: Workspace) -> dict:
    """How often the shown model top-1 became the reviewer's label (precision as reviewers see it).

    `n`: the `labels` (COUNTS) made while a model top-1 was shown; `without_prediction`: the rest.

    Per category: grouped by the model's top-1, i.e. "when the model says c, reviewers agree x%".
    Decisions made without a model prediction are left out.
    """
    labelled = _labelled(ws)
    df = labelled.dropna(subset=["model_top1"])
    cols = ["code", "name", "shown", "accepted", "rate"]
    without = int(len(labelled) - len(df))
    if df.empty:
        return {"n": 0, "accepted": 0, "rate": None, "without_prediction": without,
                "per_category": pd.DataFrame(columns=cols)}
    df["hit"] = df["category"].astype(int) == df["model_top1"].astype(int)
    per = (df.groupby(df["model_top1"].astype(int))["hit"].agg(["count", "sum"]).reset_index()
           .rename(columns={"model_top1": "code", "count": "shown", "sum": "accepted"}))
    tax = taxonomy.of(ws)
    per["name"] = per["code"].map(tax.name)
    per["rate"] = (per["accepted"] / per["shown"]).round(3)
    per = per.sort_values("code").reset_index(drop=True)
    per["code"] = per["code"].map(tax.code_value)        # the code as the workspace writes it
    return {"n": int(len(df)), "accepted": int(df["hit"].sum()), "rate": round(float(df["hit"].mean()), 4),
            "without_prediction": without, "per_category": per[cols]}


def confusion(ws: Workspace) -> pd.DataFrame:
    """(k, k) counts: rows = model top-1 shown, columns = reviewer's category, indexed by category
    key in taxonomy order (then any key an older decision holds that the taxonomy no longer has)."""
    codes = taxonomy.of(ws).keys()
    df = _labelled(ws).dropna(subset=["model_top1"])
    seen = set(df["model_top1"].astype(int)) | set(df["category"].astype(int))
    codes = codes + sorted(seen - set(codes))
    m = np.zeros((len(codes), len(codes)), dtype=np.int64)
    index = {c: i for i, c in enumerate(codes)}
    for a, b in zip(df["model_top1"].astype(int), df["category"].astype(int)):
        m[index[a], index[b]] += 1
    return pd.DataFrame(m, index=pd.Index(codes, name="model"), columns=pd.Index(codes, name="reviewer"))


def agreement(ws: Workspace) -> dict:
    """Cohen's kappa between overlapping reviewers.

    For every product decided by two or more reviewers, the first two reviewers' latest labels
    form a pair (rater A = who decided first). Pairs from different reviewer couples are pooled,
    the usual choice when reviewers rotate; `pairs` keeps who was who.
    """
    latest: dict[str, dict[str, list[int]]] = {}      # product -> reviewer -> [first id, latest category]
    for r in decisions.reviewed_labels(ws):
        seen = latest.setdefault(r["product_id"], {}).setdefault(r["reviewer"], [r["id"], r["category"]])
        seen[1] = r["category"]
    pairs = []
    for pid, by_reviewer in latest.items():
        if len(by_reviewer) < 2:
            continue
        (ra, (_, ca)), (rb, (_, cb)) = sorted(by_reviewer.items(), key=lambda kv: kv[1][0])[:2]
        pairs.append({"product_id": pid, "reviewer_a": ra, "category_a": int(ca),
                      "reviewer_b": rb, "category_b": int(cb)})
    table = pd.DataFrame(pairs, columns=["product_id", "reviewer_a", "category_a", "reviewer_b", "category_b"])
    if table.empty:
        return {"n_products": 0, "observed_agreement": None, "kappa": None, "pairs": table}
    observed = float((table["category_a"] == table["category_b"]).mean())
    if len(set(table["category_a"]) | set(table["category_b"])) < 2:
        kappa = None   # one category only: chance agreement is 1, kappa undefined
    else:
        kappa = round(float(cohen_kappa_score(table["category_a"], table["category_b"])), 4)
    return {"n_products": int(len(table)), "observed_agreement": round(observed, 4), "kappa": kappa, "pairs": table}


def model_summary(ws: Workspace) -> dict:
    """The live model version with its metrics (None when nothing is trained yet)."""
    live = ws.live_version()
    if live is None:
        return {"live": None, "versions": 0}
    v = ws.model_version(live)
    return {"live": live, "created_at": v["created_at"], "metrics": v["metrics"], "n_train": v["n_train"],
            "n_decisions": v["n_decisions"], "parent": v["parent"], "notes": v["notes"],
            "versions": catalog.count_versions(ws)}


def summary(ws: Workspace, settings: Settings = Settings()) -> dict:
    """Everything the stats tab shows, in one call."""
    return {"progress": progress(ws, settings), "rates": reviewer_rates(ws), "acceptance": acceptance(ws),
            "confusion": confusion(ws), "agreement": agreement(ws), "model": model_summary(ws)}
