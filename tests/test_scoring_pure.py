"""Scoring is a pure function of (model bundle, product): a product's probabilities are the same,
to 1e-9, alone or inside batches of 1, 7, 150 and 500 real sample products, for the text model and
the fused output of a really trained version (text + image ensemble + fusion). On main the text
model refitted itself whenever a call brought 100+ unseen products, so batches of 150 and 500
moved every product's probabilities.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app_workspace import app_workspace
from review_workspace import sample_products

BATCHES = (1, 7, 150, 500)
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def trained(sample_dir, tmp_path_factory):
    from labeler.training import live_bundle, products_frame
    from store.workspace import Workspace
    ws = Workspace(app_workspace(sample_dir, tmp_path_factory.mktemp("pure") / "ws"))
    bundle = live_bundle(ws)
    assert bundle.image is not None and bundle.fusion is not None, "the fixture version must fuse text and image"
    yield ws, bundle, products_frame(ws)
    ws.close()


def _others(sample_dir: Path, workspace_products: pd.DataFrame, n: int) -> pd.DataFrame:
    """n other real products: the workspace's (their images' features are cached), then sample
    products the version never saw, text only (so no image is featurised during the test)."""
    unseen = sample_products(sample_dir, per_category=None)
    unseen = unseen[~unseen["id"].isin(set(workspace_products["id"]))].assign(image_path=None, image_sha1=None)
    pool = pd.concat([workspace_products, unseen[workspace_products.columns.intersection(unseen.columns)]],
                     ignore_index=True)
    return pool.iloc[:n].reset_index(drop=True)


@pytest.mark.parametrize("probe_row", [0, 1])
def test_a_product_scores_the_same_alone_and_in_any_batch(trained, sample_dir, probe_row):
    from store.features import WorkspaceFeatures
    ws, bundle, products = trained
    with_image = products[products["image_path"].notna()].reset_index(drop=True)
    probe = with_image.iloc[[probe_row]].reset_index(drop=True)   # a product with a (cached) image: fused != text
    cache = WorkspaceFeatures(ws)
    alone = bundle.predict(probe, feature_store=cache)
    assert alone["has_image"][0] and not np.allclose(alone["fused"][0], alone["text"][0])
    others = _others(sample_dir, products[products["id"] != probe["id"][0]], max(BATCHES))
    for size in BATCHES:
        for at in sorted({0, size // 2, size - 1}):       # first, middle and last of the batch
            rest = others.iloc[:size - 1]
            batch = pd.concat([rest.iloc[:at], probe, rest.iloc[at:]], ignore_index=True)
            out = bundle.predict(batch, feature_store=cache)
            for part in ("text", "fused"):
                gap = np.abs(out[part][at] - alone[part][0]).max()
                assert gap < TOLERANCE, f"{part} of a product at {at} in a batch of {size}: differs by {gap:.2e}"


def test_adapt_is_the_one_batch_dependent_mode(trained, sample_dir):
    """`adapt=True` (predict --adapt) refits the text model with a batch's unseen texts: a batch of
    150 unseen products moves the probe; a single product alone is not refitted (under 100 new)."""
    ws, bundle, products = trained
    probe = products.iloc[[0]].reset_index(drop=True)
    unseen = _others(sample_dir, products, len(products) + 149).iloc[len(products):]
    batch = pd.concat([probe, unseen], ignore_index=True)
    plain = bundle.predict(probe)["text"][0]
    assert np.abs(bundle.predict(probe, adapt=True)["text"][0] - plain).max() < TOLERANCE
    assert np.abs(bundle.predict(batch, adapt=True)["text"][0] - plain).max() > 1e-6
