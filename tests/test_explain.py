"""Heatmaps per voter, and the whole path: import -> train_version (image + fusion) -> heatmap CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from labeler import taxonomy
from models.explain import explain_product, voter_heatmap, write_heatmaps

torch.set_num_threads(2)
VOTERS = [  # the default backbones and heads, at 96 px so the test stays fast; two read block stages too
    {"backbone": "lite2", "head": "mlp", "input_size": 96, "head_params": {"epochs": 20}},
    {"backbone": "lite1", "head": "xgboost", "input_size": 96, "head_params": {"n_estimators": 20}, "stages": 2},
    {"backbone": "lite0", "head": "logistic", "input_size": 96, "stages": 3},
]


@pytest.fixture(scope="module")
def trained(sample_dir, tmp_path_factory):
    """A workspace of 32 real imaged products (4 categories) + 12 without image, trained end to end."""
    from labeler.importer import import_challenge
    from labeler import training
    from store import Workspace

    tmp = tmp_path_factory.mktemp("explain")
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)
    imaged = {p.name.split("_product_")[1][:-4] for p in (sample_dir / "images" / "image_train").glob("*.jpg")}
    has = x["productid"].astype(str).isin(imaged) & (x["designation"].fillna("").str.strip() != "")
    cats = y.loc[has[has].index, "prdtypecode"].value_counts().index[:4]
    keep = y[has & y["prdtypecode"].isin(cats)].groupby("prdtypecode").head(8).index
    keep = keep.union(y[~has & y["prdtypecode"].isin(cats)].groupby("prdtypecode").head(3).index)
    x.loc[keep].to_csv(tmp / "X.csv")
    y.loc[keep].to_csv(tmp / "Y.csv")
    ws = Workspace(tmp / "ws")
    import_challenge(ws, tmp / "X.csv", tmp / "Y.csv", sample_dir / "images" / "image_train")
    ws.set_setting("image_voters", json.dumps(VOTERS))
    steps: list[tuple[float, str]] = []
    version = training.train_version(ws, evaluate=False, progress=lambda f, d: steps.append((f, d)))
    return ws, version, training.live_bundle(ws), steps


def _stage_width(steps: list[tuple[float, str]]) -> float:
    """How much of the bar feature extraction had: from its start to the out-of-fold stage."""
    start = next(f for f, d in steps if d.startswith("image features"))
    return next(f for f, d in steps if d.startswith("out-of-fold")) - start


def test_training_progress_follows_where_the_time_goes(trained):
    """Extracting features is most of a first training and nothing once they are cached: the
    bar gives that stage its share, always moves forward and ends at 100 %."""
    from labeler import training
    ws, _, _, cold = trained
    warm: list[tuple[float, str]] = []
    training.train_version(ws, evaluate=False, make_live=False, progress=lambda f, d: warm.append((f, d)))
    for steps in (cold, warm):
        fractions = [f for f, _ in steps]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert _stage_width(cold) > 0.3 and _stage_width(warm) == 0.0
    assert any(d.startswith("features lite2@96") for _, d in cold)


def test_progress_spans_are_proportional_to_expected_seconds():
    from labeler.training import progress_spans
    spans = progress_spans({"a": 1.0, "b": 0.0, "c": 3.0})
    assert spans == {"a": (0.0, 0.25), "b": (0.25, 0.25), "c": (0.25, 1.0)}
    assert progress_spans({"a": 0.0, "b": 0.0}) == {"a": (0.0, 0.5), "b": (0.5, 1.0)}


def test_train_version_fits_image_ensemble_and_fusion(trained):
    ws, version, bundle, _ = trained
    assert version["metrics"]["n_images"] == 32
    # the 12 products without a photo are not counted as image problems
    assert (version["metrics"]["n_without_image"], version["metrics"]["n_image_problems"]) == (12, 0)
    assert {"oof_text_weighted_f1", "oof_image_weighted_f1", "oof_fused_weighted_f1"} <= set(version["metrics"])
    fusion = version["config"]["fusion"]
    assert set(fusion["vote_weights"]) == {"lite2+mlp", "lite1+xgboost", "lite0+logistic"}
    assert bundle.image.describe()["vote_weights"] == pytest.approx(list(fusion["vote_weights"].values()), abs=1e-3)
    with_image = ws.query("SELECT id FROM products WHERE image_path IS NOT NULL LIMIT 1")[0]["id"]
    without = ws.query("SELECT id FROM products WHERE image_path IS NULL LIMIT 1")[0]["id"]
    assert {"image", "lite1+xgboost"} <= set(ws.prediction(with_image)["voters"])
    assert set(ws.prediction(without)["voters"]) == {"text"}      # text only, no crash
    assert ws.scalar("SELECT count(DISTINCT backbone) FROM image_features") == 3


def test_explain_product_one_overlay_per_voter(trained):
    ws, _, bundle, _ = trained
    product = ws.query("SELECT * FROM products WHERE image_path IS NOT NULL LIMIT 1")[0]
    category = int(product["source_label"])
    items = explain_product(bundle, product, category)
    assert len(items) == 3
    captions = [c for c, _ in items]
    assert "Grad-CAM" in captions[0] and "Ablation-CAM" in captions[1] and "XGBoost" in captions[1]
    assert all(str(category) in c for c in captions)
    assert all(isinstance(im, Image.Image) and im.size == (320, 320) for _, im in items)


def test_heatmaps_depend_on_the_category(trained):
    ws, _, bundle, _ = trained
    product = ws.query("SELECT * FROM products WHERE image_path IS NOT NULL LIMIT 1")[0]
    image = Image.open(product["image_path"]).convert("RGB")
    cats = [int(c) for c in bundle.image.heads_["lite0+logistic"].classes_[:2]]
    for spec in bundle.image.voters:
        a, method, _ = voter_heatmap(bundle.image, spec, image, cats[0])
        b, _, _ = voter_heatmap(bundle.image, spec, image, cats[1])
        assert a.shape == (320, 320) and 0 <= a.min() and a.max() <= 1
        assert not np.allclose(a, b), (spec.label, method)
    unseen = next(c for c in taxonomy.codes() if c not in set(bundle.image.heads_["lite2+mlp"].classes_))
    _, method, p = voter_heatmap(bundle.image, bundle.image.voters[0], image, unseen)
    assert method == "not trained on this category" and p == 0


def test_heatmap_cli_writes_one_png_per_voter(trained, tmp_path):
    from labeler.cli import main
    ws, _, _, _ = trained
    pid = ws.query("SELECT id FROM products WHERE image_path IS NOT NULL LIMIT 1")[0]["id"]
    result = CliRunner().invoke(main, ["heatmap", "--workspace", str(ws.root), "--product", pid, "--out",
                                       str(tmp_path / "heat")])
    assert result.exit_code == 0, result.output
    # stdout: one path a line (the text contributions CSV, its summary line, then one PNG per voter);
    # stderr carries the progress bars. `heatmap` is `explain` under its old name (issue 20).
    paths = [line for line in result.stdout.splitlines() if line.startswith("/")]
    pngs = [p for p in paths if p.endswith(".png")]
    assert len(pngs) == 3 and all(Image.open(p).size[0] == 320 for p in pngs)
    assert [p for p in paths if p.endswith("_text.csv")]
    no_image = ws.query("SELECT id FROM products WHERE image_path IS NULL LIMIT 1")[0]["id"]
    bad = CliRunner().invoke(main, ["heatmap", "--workspace", str(ws.root), "--product", no_image, "--out",
                                    str(tmp_path / "x")])
    # no photo: the text explanation is still written, the heatmaps say why there are none
    assert bad.exit_code == 0 and "no heatmaps" in bad.output and "Traceback" not in bad.output


def test_write_heatmaps_names_files(trained, tmp_path):
    ws, _, bundle, _ = trained
    product = ws.query("SELECT * FROM products WHERE image_path IS NOT NULL LIMIT 1")[0]
    paths = write_heatmaps(bundle, product, tmp_path, int(product["source_label"]))
    assert [p.name for p in paths] == [f"product_{product['id']}_{product['source_label']}_{v}.png"
                                       for v in ("lite2_mlp", "lite1_xgboost", "lite0_logistic")]


def test_pooled_ablation_cam_equals_pytorch_grad_cam(trained, sample_dir):
    """The one-call Ablation-CAM of the XGBoost voter gives pytorch-grad-cam's AblationCAM map."""
    import contextlib
    import io

    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from models.explain import _BoosterOnFeatureMap, ablation_cam_pooled
    from models.features import open_image, pooled_features

    _, _, bundle, _ = trained
    spec = next(s for s in bundle.image.voters if s.head == "xgboost")
    head, backbone = bundle.image.heads_[spec.label], bundle.image.backbone(spec)
    path = next((sample_dir / "images" / "image_train").glob("*.jpg"))
    x = backbone.transform()(open_image(path)).unsqueeze(0).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        feats, fmap = pooled_features(backbone.model, x, spec.stages)
    extra = feats[:, backbone.embed_dim:].numpy()      # the voter's stage features stay as they are
    assert spec.stages == 2 and extra.shape == (1, 320 + 192)
    wrapper = _BoosterOnFeatureMap(backbone.model, head, extra).eval()
    for k in range(2):
        fast, prob = ablation_cam_pooled(backbone.model, head, fmap, k, extra)
        with AblationCAM(model=wrapper, target_layers=[wrapper.fmap], batch_size=256) as cam, \
                contextlib.redirect_stderr(io.StringIO()):
            ref = cam(input_tensor=fmap.clone(), targets=[ClassifierOutputTarget(k)])[0]
        assert fast.shape == ref.shape and np.abs(fast - ref).max() < 1e-4
        assert 0 < prob < 1 and fast.max() == pytest.approx(1.0, abs=1e-4)


def test_png_captions_draw_accented_category_names_within_the_image():
    """'Articles bébé', 'Jeux de société': the caption font has the accents (not a missing-glyph box)."""
    from models.explain import caption_font, captioned

    font = caption_font()
    def glyph(ch: str) -> tuple:
        mask = font.getmask(ch)
        return mask.size, bytes(mask)

    assert all(glyph(ch) != glyph("\uffff") for ch in "éèàçô")     # PIL's default font fails this
    caption = "lite0+xgboost · Ablation-CAM (gradient-free: XGBoost has no gradients) · 1301 Articles bébé et jeux de bar · p=0.03"
    out = captioned(caption, Image.new("RGB", (320, 320), "gray"))
    assert out.width == 320 and out.height > 320 + 14 * 2      # wrapped on several lines under the overlay
