"""Import limits: long CSV fields, huge image files, and one image rule set shared with the model.

Real files written by the tests (a sparse 300 MB file, a padded JPEG, CSVs with 200 KB fields),
imported through the real CLI in a subprocess whose peak memory is measured.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from labeler import importer
from labeler.importer import import_challenge, import_plain_csv

ROOT = Path(__file__).resolve().parent.parent


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def jpeg(path: Path, side: int = 64) -> Path:
    Image.new("RGB", (side, side), (200, 40, 40)).save(path, "JPEG")
    return path


# -- long text ----------------------------------------------------------------------------------
def test_a_200_kb_description_is_imported_capped_and_the_cut_reported(workspace, tmp_path):
    long_description = "Très long descriptif. " * 9_500          # 209,000 characters, one CSV field
    x = write_csv(tmp_path / "X.csv", ["", "designation", "description", "productid", "imageid"], [
        [0, "Produit court", "ok", "101", "1"],
        [1, "Produit au long descriptif", long_description, "102", "2"],
        [2, "T" * 1_500, "", "103", "3"],
    ])
    report = import_challenge(workspace, x)
    assert report.imported == 3 and report.skipped == 0
    stored = workspace.product("102")["description"]
    assert len(stored) == importer.DESCRIPTION_MAX_CHARS and long_description.startswith(stored)
    assert len(workspace.product("103")["title"]) == importer.TITLE_MAX_CHARS
    cuts = {(p.line, p.field): p for p in report.problems if p.kind == importer.TEXT_TRUNCATED}
    assert set(cuts) == {(3, "description"), (4, "designation")}
    assert "209,000 characters, stored the first 20,000" in cuts[(3, "description")].message
    assert cuts[(3, "description")].action == "imported, truncated"


def test_cli_import_of_a_200_kb_field_prints_where_the_text_was_cut(tmp_path):
    catalog = write_csv(tmp_path / "catalog.csv", ["id", "title", "description"], [
        ["a1", "Lampe de bureau", "x" * 200_000],
        ["a2", "Chaise pliante", "bois"],
    ])
    run = subprocess.run([sys.executable, "-m", "labeler", "import", "--csv", str(catalog),
                          "--workspace", str(tmp_path / "ws")], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "text truncated (imported, truncated)  1" in run.stdout
    assert "catalog.csv line 2 [description]: product a1: description is 200,000 characters" in run.stdout
    assert "Traceback" not in run.stderr


# -- large image files, peak memory ---------------------------------------------------------------
def peak_rss_of_import(tmp_path: Path, catalog: Path, name: str) -> tuple[int, subprocess.CompletedProcess]:
    """Run the CLI import in a fresh child of a fresh interpreter: RUSAGE_CHILDREN then holds that
    one import's peak resident memory (bytes), whatever this test process did before."""
    probe = ("import json, resource, subprocess, sys\n"
             "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps({'rc': run.returncode, 'out': run.stdout, 'err': run.stderr,\n"
             "                  'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "labeler", "import", "--csv", str(catalog),
           "--workspace", str(tmp_path / name)]
    out = json.loads(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout)
    return out["maxrss_kb"] * 1024, subprocess.CompletedProcess(cmd, out["rc"], out["out"], out["err"])


def test_a_300_mb_image_file_is_refused_from_its_size_without_reading_it(tmp_path):
    big = jpeg(tmp_path / "huge.jpg")
    with big.open("r+b") as fh:                 # a valid JPEG header, then 300 MB (sparse on disk)
        fh.truncate(300 * 2**20)
    catalog = write_csv(tmp_path / "catalog.csv", ["id", "title", "image"], [["p1", "Affiche géante", "huge.jpg"]])
    peak, run = peak_rss_of_import(tmp_path, catalog, "ws")
    assert run.returncode == 0, run.stderr
    assert "image outside the limits (imported without image)  1" in run.stdout
    assert "is 300 MiB, over the 50 MiB file limit" in run.stdout
    print(f"peak RSS importing a 300 MiB image file: {peak / 2**20:.0f} MiB")
    assert peak < 150 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB while importing a 300 MiB image file"


def test_an_image_within_the_limit_is_hashed_and_decoded_without_holding_it_in_memory(tmp_path):
    small = jpeg(tmp_path / "small.jpg")
    padded = tmp_path / "padded.jpg"            # a real JPEG followed by 45 MiB after its end marker
    with padded.open("wb") as fh:
        fh.write(small.read_bytes())
        fh.write(b"\0" * (45 * 2**20))
    base_peak, base = peak_rss_of_import(
        tmp_path, write_csv(tmp_path / "a.csv", ["id", "title", "image"], [["p1", "Petit", "small.jpg"]]), "ws_a")
    peak, run = peak_rss_of_import(
        tmp_path, write_csv(tmp_path / "b.csv", ["id", "title", "image"], [["p1", "Rembourré", "padded.jpg"]]), "ws_b")
    assert base.returncode == 0 and run.returncode == 0, run.stderr
    from store import Workspace
    stored = Workspace(tmp_path / "ws_b").product("p1")
    assert stored["image_path"] == str(padded.resolve())
    assert stored["image_sha1"] == hashlib.sha1(padded.read_bytes()).hexdigest()
    print(f"peak RSS: {base_peak / 2**20:.0f} MiB with a 1 kB image, {peak / 2**20:.0f} MiB with a 45 MiB one")
    assert peak - base_peak < 20 * 2**20, (f"importing a 45 MiB image raised the peak RSS by "
                                           f"{(peak - base_peak) / 2**20:.0f} MiB")


# -- one rule set for the importer and the model's loader ------------------------------------------
@pytest.fixture
def image_files(tmp_path: Path, sample_dir: Path) -> dict[str, Path]:
    real = sorted((sample_dir / "images" / "image_train").glob("*.jpg"))[0]
    data = real.read_bytes()
    files = {name: tmp_path / f"{name}{ext}" for name, ext in [
        ("photo", ".jpg"), ("grey_png", ".png"), ("tiny", ".png"), ("huge_pixels", ".png"), ("truncated", ".jpg"),
        ("random_bytes", ".jpg"), ("over_file_limit", ".jpg"), ("other_format", ".ppm"), ("narrow", ".jpg")]}
    files["photo"].write_bytes(data)
    Image.open(real).convert("L").save(files["grey_png"])
    Image.new("RGB", (20, 20), "red").save(files["tiny"])
    Image.new("RGB", (400, 20), "red").save(files["narrow"], "JPEG")
    side = 8_100                                  # 65.6 Mpx, 1-bit: a few kB on disk
    Image.new("1", (side, side)).save(files["huge_pixels"])
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["random_bytes"].write_bytes(bytes(range(256)) * 20)
    files["over_file_limit"].write_bytes(data)
    with files["over_file_limit"].open("r+b") as fh:
        fh.truncate(60 * 2**20)
    Image.open(real).save(files["other_format"], "PPM")
    return files


def test_importer_and_model_loader_accept_and_refuse_the_same_files(image_files):
    from models.features import ImageProblem, open_image

    def loader_uses(path: Path) -> bool:
        try:
            open_image(path, draft_size=224)
            return True
        except ImageProblem:
            return False

    verdicts = {name: (importer.check_image(path)[0] is not None, loader_uses(path))
                for name, path in image_files.items()}
    assert {n for n, (imp, _) in verdicts.items() if imp} == {"photo", "grey_png"}
    disagree = {n: v for n, v in verdicts.items() if v[0] != v[1]}
    assert not disagree, f"importer vs loader: {disagree}"


def test_an_image_the_loader_would_drop_is_reported_at_import(workspace, tmp_path):
    Image.new("RGB", (20, 20), "red").save(tmp_path / "tiny.jpg", "JPEG")
    jpeg(tmp_path / "fine.jpg")
    catalog = write_csv(tmp_path / "catalog.csv", ["id", "title", "image"],
                        [["t1", "Timbre", "tiny.jpg"], ["t2", "Carte postale", "fine.jpg"]])
    report = import_plain_csv(workspace, catalog)
    assert report.with_image == 1 and workspace.product("t1")["image_path"] is None
    [problem] = report.problems
    assert (problem.line, problem.field, problem.kind) == (2, "image", importer.IMAGE_REFUSED)
    assert "20x20 pixels (minimum side 32)" in problem.message
