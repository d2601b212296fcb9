"""The CUDA paths (features, heatmaps, fine-tuning) agree with CPU. Skipped where no GPU is present:
CI has none; run on a lent GPU with `python -m pytest tests/test_cuda.py`."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def lite0_weights(tmp_path_factory) -> str:
    """One fixed set of lite0 weights (random, seeded) as a file, so CPU and CUDA load the same."""
    from models.backbones import build_model, get_spec
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "lite0.pth"
    torch.save(build_model(get_spec("lite0"), "random").state_dict(), path)
    return f"file:{path}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[list[str], np.ndarray]:
    """Twelve images of three visibly different kinds (stripes, discs, noise), labelled by kind."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("img")
    paths, labels = [], []
    yy, xx = np.mgrid[0:120, 0:120]
    for i in range(12):
        kind = i % 3
        if kind == 0:
            a = ((xx // (6 + i)) % 2 * 255)[..., None].repeat(3, 2)
        elif kind == 1:
            a = (((xx - 60) ** 2 + (yy - 60) ** 2 < (20 + 2 * i) ** 2) * 255)[..., None] * np.array([1, 0.3, 0.1])
        else:
            a = rng.integers(0, 255, (120, 120, 3))
        p = folder / f"p{i}.jpg"
        Image.fromarray(np.uint8(a)).save(p)
        paths.append(str(p))
        labels.append([10, 40, 50][kind])
    return paths, np.array(labels)


def test_features_on_cuda_match_cpu(lite0_weights, photos):
    from models.backbones import load_backbone
    from models.features import extract_features
    paths, _ = photos
    out = {}
    for dev in ("cpu", "cuda"):
        bb = load_backbone("lite0", weights=lite0_weights, input_size=96, device=dev)
        assert bb.device.type == dev
        batch = extract_features(bb, paths, batch_size=4, num_workers=2 if dev == "cuda" else 0)
        assert batch.ok.all()
        out[dev] = batch.vectors
    cos = (out["cpu"] * out["cuda"]).sum(1) / np.linalg.norm(out["cpu"], axis=1) / np.linalg.norm(out["cuda"], axis=1)
    # CUDA decodes the JPEGs with nvjpeg, whose IDCT differs from libjpeg's by a grey level here and
    # there: 0.995-1.0 measured on these sharp synthetic stripes and discs
    assert cos.min() > 0.99


def test_decoding_ahead_on_a_side_stream_gives_the_serial_features(lite0_weights, photos, monkeypatch):
    """The next batch decoded in a helper thread on its own CUDA stream: same features, same order,
    stage features included."""
    from models import features
    from models.backbones import load_backbone
    paths, _ = photos
    bb = load_backbone("lite0", weights=lite0_weights, input_size=96, device="cuda")
    out = {}
    for ahead in (3, 1, 0):
        monkeypatch.setattr(features, "COLLATE_AHEAD", ahead)
        got = features.extract_features(bb, paths + [paths[0] + ".missing"], batch_size=3, num_workers=2, stages=2)
        assert got.ok[:-1].all() and not got.ok[-1] and 12 in got.problems
        out[ahead] = got.vectors
    np.testing.assert_allclose(out[3], out[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-5, atol=1e-5)


def test_heatmaps_of_every_head_on_cuda(lite0_weights, photos):
    from models.explain import voter_heatmap
    from models.image import ImageEnsemble, VoterSpec
    paths, y = photos
    voters = tuple(VoterSpec("lite0", head, weights=lite0_weights, input_size=64, head_params=params)
                   for head, params in (("logistic", ()), ("mlp", (("epochs", 5),)), ("xgboost", (("n_estimators", 5),))))
    image = Image.open(paths[1]).convert("RGB")
    # full float32 convolutions on the GPU: TF32's ~1e-3 differences move a booster's split
    # thresholds, which is noise, not the device path this test checks
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    cams = {}
    cpu = ImageEnsemble(voters=voters, device="cpu")
    cpu.fit(cpu.product_features(_frame(paths))[0], y)
    gpu = copy.deepcopy(cpu)      # the same fitted heads: only the backbone's device differs
    gpu.device = "cuda"
    for dev, ens in (("cpu", cpu), ("cuda", gpu)):
        for spec in voters:
            cam, method, prob = voter_heatmap(ens, spec, image, 40)
            assert np.isfinite(cam).all() and 0 <= cam.min() and cam.max() <= 1 and 0 <= prob <= 1, (dev, spec)
            cams[dev, spec.head] = (cam, prob)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    for spec in voters:
        (a, pa), (b, pb) = cams["cpu", spec.head], cams["cuda", spec.head]
        assert abs(pa - pb) < 0.02, spec.head
        if a.std() > 0 and b.std() > 0:
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95, spec.head


def test_finetune_on_cuda(lite0_weights, photos, tmp_path):
    from models.backbones import load_backbone
    from models.finetune import FinetuneConfig, finetune_backbone, load_pixels, save_checkpoint
    paths, y = photos
    pixels, ok, problems = load_pixels(paths, 64)
    assert not problems
    result = finetune_backbone("lite0", pixels, y[ok], weights=lite0_weights, input_size=64, device="cuda",
                               config=FinetuneConfig(stages=2, epochs=3, batch_size=4, probe_steps=10))
    assert np.isfinite(result.history).all()
    assert next(result.model.parameters()).device.type == "cpu"
    source = save_checkpoint(result.model, tmp_path / "ft.pth")
    assert load_backbone("lite0", weights=source, input_size=64, device="cuda").device.type == "cuda"


def _frame(paths):
    import pandas as pd
    return pd.DataFrame({"id": [str(i) for i in range(len(paths))], "image_path": paths})
