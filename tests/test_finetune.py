"""Fine-tuning the last backbone stages (models/finetune.py) on real sample photos, on CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.backbones import load_backbone
from models.features import extract_features
from models.finetune import FinetuneConfig, augment, finetune_backbone, load_pixels, save_checkpoint


@pytest.fixture(scope="module")
def photos(sample_dir):
    import pandas as pd
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"]
    files = {p.name.split("_product_")[1][:-4]: str(p) for p in (sample_dir / "images" / "image_train").glob("*.jpg")}
    keep = x[x["productid"].astype(str).isin(files)].head(16)
    return [files[str(p)] for p in keep["productid"]], y.loc[keep.index].to_numpy()


def test_load_pixels_reports_bad_files_and_keeps_the_rest(photos, tmp_path):
    paths, _ = photos
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    pixels, ok, problems = load_pixels([paths[0], str(broken), None, paths[1]], 64)
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, 3, 64, 64)
    assert list(ok) == [0, 3] and "broken.jpg" in problems[1] and 2 in problems


def test_augment_keeps_shape_and_range():
    x = torch.rand((6, 3, 40, 40))
    out = augment(x, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6
    assert not torch.allclose(out, x)


def test_finetune_trains_only_the_last_stages_and_loads_back(photos, tmp_path):
    paths, y = photos
    pixels, ok, _ = load_pixels(paths, 64)
    stock = load_backbone("lite0", input_size=64, device="cpu")   # BatchNorm folded: compare features, not weights
    from models.backbones import build_model, get_spec
    before = build_model(get_spec("lite0")).state_dict()
    result = finetune_backbone("lite0", pixels, y[ok], input_size=64, device="cpu",
                               config=FinetuneConfig(stages=2, epochs=2, batch_size=8, probe_steps=20))
    after = result.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    n_stages = len(result.model.blocks)
    assert changed and all(k.startswith((f"blocks.{n_stages - 1}.", f"blocks.{n_stages - 2}.", "conv_head.", "bn2."))
                           for k in changed)
    assert torch.equal(before["conv_stem.weight"], after["conv_stem.weight"])
    assert np.isfinite(result.history).all() and len(result.history) == 2
    assert set(result.classes) == set(y[ok])
    source = save_checkpoint(result.model, tmp_path / "ft.pth")
    tuned = load_backbone("lite0", weights=source, input_size=64, device="cpu")
    assert tuned.feature_key != stock.feature_key       # its features are cached apart from the stock ones
    a = extract_features(stock, paths[:4]).vectors
    b = extract_features(tuned, paths[:4]).vectors
    assert not np.allclose(a, b, atol=1e-3)
