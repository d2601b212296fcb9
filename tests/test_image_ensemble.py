"""Image voters, soft vote, feature cache, fusion and bad-image fallbacks, on real sample images."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score

from labeler import taxonomy
from models.features import MAX_PIXELS, extract_features, open_image, ImageProblem
from store.features import WorkspaceFeatures
from models.fusion import Fusion
from models.image import (STUDY_VOTERS, ImageEnsemble, LogisticHead, MLPHead, VoterSpec, sharpen, soft_vote,
                          voters_from_config)

torch.set_num_threads(2)
CODES = taxonomy.codes()
SMALL = (  # the default voters' backbones and heads at a small resolution, to keep tests fast
    VoterSpec("lite0", "mlp", input_size=64, head_params=(("epochs", 20),)),
    VoterSpec("lite1", "xgboost", input_size=64, head_params=(("n_estimators", 20),)),
    VoterSpec("lite0", "logistic", input_size=64, name="lite0+logistic"),
)


@pytest.fixture(scope="module")
def sample_products(sample_dir) -> tuple[pd.DataFrame, np.ndarray]:
    """16 real products with an image, 4 per category for 4 categories."""
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"]
    paths = {p.name.split("_product_")[1][:-4]: p for p in (sample_dir / "images" / "image_train").glob("*.jpg")}
    x = x[x["productid"].astype(str).isin(paths)]
    cats = y.loc[x.index].value_counts().index[:4]
    rows = x[y.loc[x.index].isin(cats)].groupby(y.loc[x.index]).head(4)
    df = pd.DataFrame({"id": rows["productid"].astype(str), "title": rows["designation"],
                       "description": rows["description"].fillna(""),
                       "image_path": [str(paths[str(p)]) for p in rows["productid"]], "image_sha1": None})
    return df.reset_index(drop=True), y.loc[rows.index].to_numpy()


def test_sharpen_matches_hand_computation():
    p = np.array([[0.5, 0.3, 0.2], [0.0, 0.0, 0.0]])
    q = sharpen(p, 2)
    np.testing.assert_allclose(q[0], np.array([0.25, 0.09, 0.04]) / 0.38)
    assert (q[1] == 0).all()
    np.testing.assert_allclose(sharpen(p[:1], 1), p[:1])


def test_soft_vote_weights_and_sharpening():
    a = np.array([[0.6, 0.4]])
    b = np.array([[0.1, 0.9]])
    np.testing.assert_allclose(soft_vote([a, b], [3, 1], 1), [[0.475, 0.525]])
    sa, sb = sharpen(a, 3), sharpen(b, 3)
    np.testing.assert_allclose(soft_vote([a, b], [1, 1], 3), (sa + sb) / 2)
    with pytest.raises(ValueError, match="positive sum"):
        soft_vote([a, b], [0, 0], 1)


@pytest.mark.parametrize("head", [LogisticHead(C=0.1), MLPHead(epochs=10), MLPHead(epochs=10, n_members=3)])
def test_differentiable_heads_export_the_same_function_to_torch(head):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 12)).astype(np.float32)
    y = np.repeat([10, 40, 50], 20)
    head.fit(X + (y[:, None] == 40) * 2, y)
    with torch.inference_mode():
        torch_p = torch.softmax(head.to_torch()(torch.tensor(X)), 1).numpy()
    np.testing.assert_allclose(torch_p, head.predict_proba(X), atol=1e-5)


def test_a_bag_of_mlps_averages_its_members_and_reads_heads_saved_before_bagging():
    rng = np.random.default_rng(0)
    y = np.repeat([10, 40, 50], 20)
    X = (rng.normal(size=(60, 12)) + (y[:, None] == 40) * 1.5).astype(np.float32)
    bag = MLPHead(epochs=10, n_members=3).fit(X, y)
    singles = [MLPHead(epochs=10, random_state=m).fit(X, y).predict_proba(X) for m in range(3)]
    np.testing.assert_allclose(bag.predict_proba(X), np.mean(singles, axis=0), atol=1e-6)
    assert not np.allclose(singles[0], singles[1])           # the seeds do differ
    old = MLPHead(epochs=10).fit(X, y)
    old.module_ = old.members_[0]
    del old.members_                                          # as unpickled from an older version
    np.testing.assert_allclose(old.predict_proba(X), singles[0], atol=1e-6)


def test_study_voters_run_from_configuration_with_random_weights(sample_products):
    df, y = sample_products
    voters = tuple(VoterSpec(s.backbone, s.head, weights="random", input_size=64, name=s.label,
                             head_params=(("n_estimators", 10),) if s.head == "xgboost" else (("epochs", 5),)
                             if s.head == "mlp" else ()) for s in STUDY_VOTERS)
    ens = ImageEnsemble(voters=voters, codes=CODES).fit_products(df, y)
    out = ens.predict_products(df.head(4))
    assert set(out["voters"]) == {"dinov3+mlp", "resnet50+xgboost", "effnet_b0+linear"}
    assert out["image"].shape == (4, 27) and out["has_image"].all()
    np.testing.assert_allclose(out["image"].sum(1), 1, atol=1e-6)
    assert set(np.asarray(CODES)[out["image"].sum(0) > 0]) <= set(y)


def test_voters_from_config_validates_names():
    cfg = json.dumps([{"backbone": "lite0", "head": "mlp", "head_params": {"epochs": 3}}])
    assert voters_from_config(cfg)[0].head_params == (("epochs", 3),)
    assert voters_from_config(None)[0].backbone == "lite2"
    with pytest.raises(Exception, match="did you mean lite1"):
        voters_from_config(json.dumps([{"backbone": "lite11", "head": "mlp"}]))
    with pytest.raises(ValueError, match="unknown head"):
        voters_from_config(json.dumps([{"backbone": "lite0", "head": "svm"}]))
    assert voters_from_config(json.dumps([{"backbone": "lite0", "head": "mlp", "stages": 3}]))[0].stages == 3
    for bad in ({"backbone": "lite0", "head": "mlp", "stages": 9}, {"backbone": "dinov3_vits16", "head": "mlp", "stages": 2}):
        with pytest.raises(ValueError, match="stages"):
            voters_from_config(json.dumps([bad]))


def test_stage_features_are_the_averaged_outputs_of_the_last_block_stages(workspace, sample_products):
    """Computed by running the network stage by stage, independently of the forward hooks."""
    df, _ = sample_products
    ens = ImageEnsemble(voters=(VoterSpec("lite0", "logistic", input_size=64, stages=3),))
    bb = ens.backbone(ens.voters[0])
    paths = df["image_path"].head(3).tolist()
    got = extract_features(bb, paths, cache=WorkspaceFeatures(workspace), flip=False, stages=3, num_workers=0)
    plain = extract_features(bb, paths, cache=None, flip=False, num_workers=0)
    m = bb.model
    from models.features import decode_pixels
    size = bb.data_config["input_size"][-1]
    x = bb.normalise(torch.stack([decode_pixels(p, bb.pixel_transform(), 2 * size)[0] for p in paths]))
    with torch.inference_mode():
        h, outs = m.bn1(m.conv_stem(x)), []
        for stage in m.blocks:
            h = stage(h)
            outs.append(h.mean((2, 3)))
        pooled = m.forward_head(m.bn2(m.conv_head(h)), pre_logits=True)
    want = torch.cat([pooled, outs[-1], outs[-2], outs[-3]], 1).numpy()
    assert got.vectors.shape == (3, 1280 + 320 + 192 + 112)
    np.testing.assert_allclose(got.vectors, want, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got.vectors[:, :1280], plain.vectors, rtol=1e-5, atol=1e-6)
    rows = workspace.query("SELECT backbone, dim FROM image_features WHERE backbone LIKE '%+s3'")
    assert rows and rows[0] == {"backbone": "lite0@64+s3", "dim": 1904}


def test_features_are_cached_in_the_workspace(workspace, sample_products):
    df, _ = sample_products
    ens = ImageEnsemble(voters=SMALL)
    bb = ens.backbone(SMALL[0])
    paths = df["image_path"].head(5).tolist()
    first = extract_features(bb, paths, cache=WorkspaceFeatures(workspace), num_workers=1, batch_size=2)
    assert first.ok.all() and first.n_computed == 5
    rows = workspace.query("SELECT backbone, dim FROM image_features")
    assert len(rows) == 5 and rows[0] == {"backbone": "lite0@64+flip", "dim": 1280}
    again = extract_features(bb, paths, cache=WorkspaceFeatures(workspace))
    assert again.n_computed == 0
    np.testing.assert_array_equal(again.vectors, first.vectors)


def _bad_images(tmp_path, real: str) -> dict[str, str]:
    data = open(real, "rb").read()
    files = {"corrupt": tmp_path / "corrupt.jpg", "truncated": tmp_path / "truncated.jpg",
             "grayscale": tmp_path / "gray.png", "cmyk": tmp_path / "cmyk.jpg", "tiny": tmp_path / "tiny.png",
             "huge": tmp_path / "huge.png", "missing": tmp_path / "missing.jpg"}
    files["corrupt"].write_bytes(np.random.default_rng(0).bytes(5000))
    files["truncated"].write_bytes(data[: len(data) // 3])
    Image.open(real).convert("L").save(files["grayscale"])
    Image.open(real).convert("CMYK").save(files["cmyk"])
    Image.new("RGB", (8, 8), "red").save(files["tiny"])
    side = int(MAX_PIXELS ** 0.5) + 100
    Image.new("1", (side, side)).save(files["huge"])   # 1-bit: a few kB on disk, over the pixel limit
    return {k: str(v) for k, v in files.items()}


def test_bad_images_fall_back_to_text_with_a_warning(tmp_path, sample_products, caplog):
    df, y = sample_products
    bad = _bad_images(tmp_path, df["image_path"][0])
    ens = ImageEnsemble(voters=SMALL, codes=CODES).fit_products(df, y)   # columns: the taxonomy's 27
    probe = pd.DataFrame({"id": list(bad), "title": "x", "description": "", "image_path": list(bad.values())})
    with caplog.at_level("WARNING"):
        out = ens.predict_products(probe)
    usable = dict(zip(bad, out["has_image"]))
    assert usable == {"corrupt": False, "truncated": False, "grayscale": True, "cmyk": True, "tiny": False,
                      "huge": False, "missing": False}
    for name in ("corrupt", "truncated", "tiny", "huge", "missing"):
        assert bad[name] in out["problems"][name]
        assert bad[name] in caplog.text
        assert (out["image"][list(bad).index(name)] == 0).all()
    assert "not found" in out["problems"]["missing"] and "pixel limit" in out["problems"]["huge"]
    # through the fusion: the product keeps its text prediction, nothing raises
    text = np.tile(np.eye(27)[CODES.index(int(y[0]))] * 0.7 + 0.3 / 27, (len(bad), 1))
    fusion = Fusion(voter_names=[s.label for s in SMALL])
    fused = fusion.fuse(text, out["image"], out["has_image"], voters=out["voters"])
    broken = ~out["has_image"]
    np.testing.assert_allclose(fused[broken], text[broken])
    assert not np.allclose(fused[~broken], text[~broken])


def test_open_image_converts_modes(tmp_path, sample_products):
    df, _ = sample_products
    bad = _bad_images(tmp_path, df["image_path"][0])
    assert open_image(bad["cmyk"]).mode == "RGB" and open_image(bad["grayscale"]).mode == "RGB"
    with pytest.raises(ImageProblem, match="cannot be decoded"):
        open_image(bad["truncated"])


def test_fusion_learns_weights_on_oof_and_handles_missing_modalities():
    rng = np.random.default_rng(0)
    n, k = 400, 27
    y = rng.integers(0, k, n)
    onehot = np.eye(k)[y]
    noisy = lambda strength: (lambda z: z / z.sum(1, keepdims=True))(np.exp(strength * onehot + rng.normal(size=(n, k))))
    text, good, useless = noisy(2.0), noisy(2.0), noisy(0.0)
    fusion = Fusion(voter_names=["good", "useless"]).fit(text, {"good": good, "useless": useless}, y)
    p = fusion.params
    assert p.image_weight > 0.3 and p.vote_weights[0] > 2 * p.vote_weights[1]
    assert fusion.metrics["oof_fused_weighted_f1"] > max(fusion.metrics["oof_text_weighted_f1"],
                                                         fusion.metrics["oof_image_weighted_f1"])
    has_image = np.r_[np.ones(n - 10, bool), np.zeros(10, bool)]
    no_text = text.copy()
    no_text[:5] = 0
    fused = fusion.fuse(no_text, None, has_image, voters={"good": good, "useless": useless})
    np.testing.assert_allclose(fused[-10:], text[-10:])                 # no image: text only
    np.testing.assert_allclose(fused[:5], fusion.image_vote({"good": good[:5], "useless": useless[:5]}))  # no text
    np.testing.assert_allclose(fused.sum(1), 1)


def test_fusion_category_offsets_learn_the_imaged_products_mix():
    """Texts skewed to category 0 (the text model's prior), imaged products spread evenly: the
    per-category offsets learn the imaged mix on out-of-fold rows and win on fresh rows of it;
    imaged products that follow the texts' mix leave them small and the fused F1 about as is."""
    rng = np.random.default_rng(1)
    k = 27
    prior = np.r_[0.6, np.full(k - 1, 0.4 / (k - 1))]

    def rows(n: int, p: np.ndarray | None = None):
        y = rng.choice(k, n, p=p)                       # imaged products: every category alike unless p
        onehot = np.eye(k)[y]
        soft = lambda s: (lambda z: z / z.sum(1, keepdims=True))(np.exp(s * onehot + rng.normal(size=(n, k))))
        text = soft(1.2) * prior[None, :]               # a text model that learned the skewed prior
        return text / text.sum(1, keepdims=True), {"v": soft(0.8)}, y

    text, voters, y = rows(600)
    plain = Fusion(voter_names=["v"], offset_l2=None).fit(text, voters, y)
    offset = Fusion(voter_names=["v"]).fit(text, voters, y)
    d = np.asarray(offset.params.category_offsets)
    assert d.shape == (k,) and d[0] < d[1:].mean() - 0.5 and np.abs(d).max() <= 3.0
    def fused_f1(fusion: Fusion, text, voters, y) -> float:      # every product has an image
        return f1_score(y, fusion.fuse(text, None, np.ones(len(y), bool), voters=voters).argmax(1), average="weighted")

    fresh = rows(2000)
    assert fused_f1(offset, *fresh) > fused_f1(plain, *fresh) + 0.02
    assert offset.describe()["category_offsets"][0] == round(d[0], 3)
    # imaged products that follow the texts' mix: nothing to correct, the offsets stay small
    same = rows(600, p=prior)
    fresh_same = rows(2000, p=prior)
    with_d = Fusion(voter_names=["v"], text_prior=prior).fit(*same)
    without = Fusion(voter_names=["v"], text_prior=prior, offset_l2=None).fit(*same)
    assert np.abs(with_d.params.category_offsets).mean() < 0.5       # 0.25 here; skewed mix: |d_0| ~ 3
    assert fused_f1(with_d, *fresh_same) > fused_f1(without, *fresh_same) - 0.02   # -0.007 here
    # too few out-of-fold rows to learn 27 offsets (< 4 a category): the fusion fits none
    assert Fusion(voter_names=["v"]).fit(text[:100], {"v": voters["v"][:100]}, y[:100]).params.category_offsets == ()


@pytest.mark.parametrize("workers", [0, 3])
def test_decoding_on_the_device_path_matches_pil(tmp_path, sample_products, workers):
    """The GPU path (JPEG bytes batched through torchvision's decoder, resized as tensors) gives
    the PIL path's features, and sends every odd file (CMYK, truncated, missing...) through PIL
    with the same messages. torchvision decodes on CPU here, on CUDA where the backbone is."""
    from models.backbones import load_backbone
    df, _ = sample_products
    bad = _bad_images(tmp_path, df["image_path"][0])
    paths = list(df["image_path"][:8]) + list(bad.values()) + [None]
    bb = load_backbone("lite0", input_size=96, device="cpu")
    pil = extract_features(bb, paths, batch_size=5, num_workers=workers, decode_on_device=False)
    dev = extract_features(bb, paths, batch_size=5, num_workers=workers, decode_on_device=True)
    assert list(pil.ok) == list(dev.ok) and pil.problems == dev.problems and pil.ok.sum() == 10
    a, b = pil.vectors[pil.ok], dev.vectors[dev.ok]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999
