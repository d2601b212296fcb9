"""Catalog import on the real Rakuten sample and on small broken files written by the tests."""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from labeler import importer
from labeler.importer import CatalogError, import_challenge, import_plain_csv, read_challenge
from store import Workspace

X_NAME, Y_NAME = "X_train_update.csv", "Y_train_CVw08PX.csv"


# -- the real sample --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_ws(sample_dir: Path, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("sample") / "ws")
    report = import_challenge(ws, sample_dir / X_NAME, sample_dir / Y_NAME, sample_dir / "images" / "image_train")
    yield ws, report
    ws.close()


def test_sample_counts(sample_ws, sample_dir):
    ws, report = sample_ws
    x = pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False)
    photo_only = int((x["designation"].str.strip() == "").sum())
    assert report.n_rows == len(x) == 1949
    assert photo_only > 0               # no designation, no description, a photo: imported all the same
    assert report.imported == ws.count_products() == len(x)
    assert report.skipped_by_reason() == {}
    assert report.already_present == 0
    stored = ws.query("SELECT row, field, reason FROM import_problems WHERE batch_id = ?", (report.batch_id,))
    assert stored == []
    assert ws.scalar("SELECT n_imported FROM import_batches WHERE id = ?", (report.batch_id,)) == report.imported


def test_sample_labels_joined_by_index(sample_ws, sample_dir):
    ws, _ = sample_ws
    x = pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False)
    y = pd.read_csv(sample_dir / Y_NAME, index_col=0)
    by_pid = dict(zip(x["productid"], y.loc[x.index.astype(int), "prdtypecode"]))
    row_of = dict(zip(x["productid"], x.index))
    rows = ws.products()
    assert all(r["source_label"] == by_pid[r["id"]] for r in rows)
    assert all(r["source_row"] == row_of[r["id"]] for r in rows)
    assert ws.current_labels() == {r["id"]: by_pid[r["id"]] for r in rows}


def test_sample_images_found(sample_ws, sample_dir):
    ws, report = sample_ws
    folder = sample_dir / "images" / "image_train"
    x = pd.read_csv(sample_dir / X_NAME, index_col=0, dtype=str, keep_default_na=False)
    kept = x                                   # the products with only a photo too
    expected = {pid for pid, iid in zip(kept["productid"], kept["imageid"])
                if (folder / f"image_{iid}_product_{pid}.jpg").exists()}
    with_image = ws.query("SELECT id, image_path, image_sha1 FROM products WHERE image_path IS NOT NULL")
    assert {r["id"] for r in with_image} == expected and len(expected) > 400
    assert report.with_image == len(expected) and report.without_image == report.imported - len(expected)
    for r in with_image[:20]:
        path = Path(r["image_path"])
        assert path.is_absolute() and path.parent == folder.resolve()
        assert r["image_sha1"] == hashlib.sha1(path.read_bytes()).hexdigest()


def test_sample_reimport_adds_nothing(sample_ws, sample_dir):
    ws, first = sample_ws
    before = ws.products()
    again = import_challenge(ws, sample_dir / X_NAME, sample_dir / Y_NAME, sample_dir / "images" / "image_train")
    assert again.imported == 0 and again.already_present == first.imported
    assert again.previous_batch == first.batch_id and again.fingerprint == first.fingerprint
    assert ws.products() == before
    assert ws.scalar("SELECT count(*) FROM import_batches") == 2


# -- small files written by the tests ---------------------------------------------------------
def jpeg(path: Path, color=(200, 30, 30)) -> Path:
    Image.new("RGB", (32, 32), color).save(path, "JPEG")
    return path


def write_csv(path: Path, header: list[str], rows: list[list], encoding: str = "utf-8") -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


X_HEADER = ["", "designation", "description", "productid", "imageid"]


@pytest.fixture
def catalog(tmp_path: Path):
    """Five good products (two with images) in the challenge layout."""
    images = tmp_path / "images"
    images.mkdir()
    jpeg(images / "image_11_product_101.jpg")
    jpeg(images / "image_12_product_102.jpg", (20, 90, 200))
    x = write_csv(tmp_path / "X.csv", X_HEADER, [
        [0, "Piscine tubulaire ronde", "<b>Pompe</b> incluse", "101", "11"],
        [1, "Peluche ours brun", "", "102", "12"],
        [2, "Cahier grands carreaux", "96 pages", "103", "13"],
        [5, "Drone quadricoptère", "", "104", "14"],
        [7, "Miel de lavande", "Pot 500 g", "105", "15"],
    ])
    y = write_csv(tmp_path / "Y.csv", ["", "prdtypecode"], [[0, 2583], [1, 1280], [2, 2522], [5, 1300], [7, 1940]])
    return x, y, images


def test_small_catalog_imports_with_descriptions_raw(workspace, catalog):
    x, y, images = catalog
    report = import_challenge(workspace, x, y, images)
    assert (report.imported, report.skipped, report.with_image, report.without_image) == (5, 0, 2, 3)
    p = workspace.product("101")
    assert p["description"] == "<b>Pompe</b> incluse" and p["source_label"] == 2583 and p["source_row"] == "0"
    assert workspace.product("104")["image_path"] is None


def problems_by_line(report) -> dict[int, importer.Problem]:
    return {p.line: p for p in report.problems}


def test_bad_rows_are_reported_skipped_and_the_rest_imported(workspace, tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    jpeg(images / "image_1_product_201.jpg")
    good = (images / "image_1_product_201.jpg").read_bytes()
    (images / "image_2_product_202.jpg").write_bytes(good[: len(good) // 2])       # truncated JPEG
    (images / "image_3_product_203.jpg").write_text("not an image at all")         # not an image
    x = write_csv(tmp_path / "X.csv", X_HEADER, [
        [0, "Produit correct avec image", "", "201", "1"],            # line 2
        [1, "Image tronquée", "", "202", "2"],                        # line 3: corrupt image, kept
        [2, "Pas une image", "", "203", "3"],                         # line 4: corrupt image, kept
        [3, "   ", "", "204", "4"],                                   # line 5: no text and no image
        [4, "Doublon", "", "201", "9"],                               # line 6: duplicate id
        [5, "Code inconnu", "", "206", "6"],                          # line 7: unknown category
        [6, "Sans étiquette", "", "207", "7"],                        # line 8: no Y row
        [8, "Produit sans image", "", "208", "8"],                    # line 9: no file: fine
    ])
    y = write_csv(tmp_path / "Y.csv", ["", "prdtypecode"],
                  [[0, 2583], [1, 1280], [2, 1280], [3, 10], [4, 10], [5, 9999], [8, 2522], [42, 10]])
    report = import_challenge(workspace, x, y, images)
    by_line = problems_by_line(report)
    assert by_line[5].kind == importer.NOTHING_TO_PREDICT and by_line[5].field == "designation"
    assert by_line[6].kind == importer.DUPLICATE_ID and "line 2" in by_line[6].message
    assert by_line[8].kind == importer.NO_LABEL_ROW and by_line[8].file == str(x)
    unknown = [p for p in report.problems if p.kind == importer.UNKNOWN_CATEGORY]
    assert len(unknown) == 1 and unknown[0].file == str(y) and "9999" in unknown[0].message and unknown[0].line == 7
    orphan = [p for p in report.problems if p.kind == importer.NO_LABEL_ROW and p.file == str(y)]
    assert len(orphan) == 1 and "index 42" in orphan[0].message and orphan[0].action == "ignored"
    corrupt = {p.line: p for p in report.problems if p.kind == importer.CORRUPT_IMAGE}
    assert set(corrupt) == {3, 4} and all(p.action == "imported without image" for p in corrupt.values())
    assert report.skipped_by_reason() == {importer.NOTHING_TO_PREDICT: 1, importer.DUPLICATE_ID: 1,
                                          importer.UNKNOWN_CATEGORY: 1, importer.NO_LABEL_ROW: 1}
    assert sorted(p["id"] for p in workspace.products()) == ["201", "202", "203", "208"]
    assert workspace.product("202")["image_path"] is None and workspace.product("203")["image_path"] is None
    assert workspace.product("201")["image_sha1"] == hashlib.sha1(good).hexdigest()
    stored = workspace.query("SELECT file, row, field, reason FROM import_problems")
    assert len(stored) == len(report.problems)
    line5 = [r for r in stored if r["row"] == "5"]
    assert len(line5) == 1 and line5[0]["file"] == str(x) and line5[0]["field"] == "designation"
    assert line5[0]["reason"].startswith(importer.NOTHING_TO_PREDICT)


def test_non_utf8_bytes_flag_only_their_rows(workspace, tmp_path):
    body = ("\ufeff,designation,description,productid,imageid\n"
            "0,Housse de coussin,,301,1\n").encode("utf-8")
    body += b"1,Th\xe9 vert menthe,,302,2\n"                    # Latin-1 byte in the title
    body += b"2,Lampe de chevet,abat-jour \xff,303,3\n"           # stray byte in the description
    body += "3,Bâche à bulles,,304,4\n".encode("utf-8")
    x = tmp_path / "X_latin.csv"
    x.write_bytes(body)
    report = import_challenge(workspace, x)
    bad = {p.line: p for p in report.problems}
    assert set(bad) == {3, 4} and all(p.kind == importer.NON_UTF8 for p in bad.values())
    assert bad[3].field == "designation" and "0xE9" in bad[3].message
    assert bad[4].field == "description" and "0xFF" in bad[4].message
    assert sorted(p["id"] for p in workspace.products()) == ["301", "304"]
    assert workspace.product("304")["title"] == "Bâche à bulles"


@pytest.mark.parametrize("header, missing", [
    (["", "designation", "productid", "imageid"], "description"),
    (["designation", "description", "productid", "imageid"], "<unnamed index>"),
    (["", "prdtypecode"], "designation"),
])
def test_wrong_columns_stop_the_import_with_one_clear_message(workspace, tmp_path, header, missing):
    x = write_csv(tmp_path / "X_bad.csv", header, [["0"] * len(header)])
    with pytest.raises(CatalogError) as err:
        import_challenge(workspace, x)
    message = str(err.value)
    assert "\n" not in message and str(x) in message and f"missing {missing}" in message
    assert "found columns [" in message and "expected [<unnamed index>, designation, description" in message
    assert workspace.count_products() == 0 and workspace.scalar("SELECT count(*) FROM import_batches") == 0


def test_wrong_label_columns_and_missing_files(workspace, catalog, tmp_path):
    x, _, images = catalog
    y = write_csv(tmp_path / "Y_bad.csv", ["", "category"], [[0, 10]])
    with pytest.raises(CatalogError, match=r"Y_bad.csv does not look like a Rakuten Y file: missing prdtypecode"):
        import_challenge(workspace, x, y)
    with pytest.raises(CatalogError, match="texts \\(X\\) file .*nope.csv not found"):
        import_challenge(workspace, tmp_path / "nope.csv")
    with pytest.raises(CatalogError, match="image folder .* not found"):
        import_challenge(workspace, x, images=tmp_path / "no-images")
    with pytest.raises(CatalogError, match="subfolders images do"):
        import_challenge(workspace, x, images=tmp_path)             # the parent of the image folder
    assert workspace.count_products() == 0


def test_labels_from_another_split_stop_the_import(workspace, catalog, tmp_path):
    x, _, _ = catalog
    y = write_csv(tmp_path / "Y_other.csv", ["", "prdtypecode"], [[100, 10], [101, 40]])
    with pytest.raises(CatalogError, match="no index of Y_other.csv matches X.csv"):
        import_challenge(workspace, x, y)
    assert workspace.count_products() == 0


def test_failed_and_partial_imports_never_change_what_is_stored(workspace, catalog, tmp_path):
    x, y, images = catalog
    import_challenge(workspace, x, y, images)
    workspace.record_decision("101", "ana", "correct", category=2582)
    before = workspace.products()
    labels_before = workspace.current_labels()

    # a failed import (wrong columns) writes nothing
    bad = write_csv(tmp_path / "X_wrong.csv", ["", "title", "productid"], [[9, "t", "999"]])
    with pytest.raises(CatalogError):
        import_challenge(workspace, bad)
    # a partial import: the same ids with other texts and labels, one bad row, one new product
    x2 = write_csv(tmp_path / "X2.csv", X_HEADER, [
        [0, "Titre modifié", "autre description", "101", "11"],
        [1, "", "", "110", "0"],
        [2, "Nouveau produit", "", "111", "0"],
    ])
    y2 = write_csv(tmp_path / "Y2.csv", ["", "prdtypecode"], [[0, 10], [1, 10], [2, 1560]])
    report = import_challenge(workspace, x2, y2, images)
    assert (report.imported, report.already_present, report.skipped) == (1, 1, 1)
    after = {p["id"]: p for p in workspace.products()}
    assert all(after[p["id"]] == p for p in before)
    assert workspace.current_labels() == {**labels_before, "111": 1560}
    assert workspace.current_labels()["101"] == 2582        # the reviewer's decision still wins


def test_interrupted_write_leaves_no_half_batch(workspace, catalog):
    x, y, images = catalog

    def interrupt(fraction: float, desc: str) -> None:
        if desc.startswith("writing"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_challenge(workspace, x, y, images, progress=interrupt)
    assert workspace.count_products() == 0
    assert workspace.scalar("SELECT count(*) FROM import_batches") == 0
    assert import_challenge(workspace, x, y, images).imported == 5


def test_parse_only_writes_nothing(workspace, catalog):
    x, y, images = catalog
    parsed = read_challenge(x, y, images)
    frame = parsed.frame()
    assert list(frame["id"]) == ["101", "102", "103", "104", "105"]
    assert list(frame["row"]) == ["0", "1", "2", "5", "7"]
    assert frame["image_path"].notna().sum() == 2
    assert workspace.count_products() == 0


def test_ragged_row_is_reported(workspace, tmp_path):
    x = tmp_path / "X.csv"
    x.write_text(",designation,description,productid,imageid\n0,Titre,,1,1\n1,Titre,en,trop,2,2\n", encoding="utf-8")
    report = import_challenge(workspace, x)
    assert report.imported == 1 and report.problems[0].kind == importer.BAD_FIELD_COUNT
    assert report.problems[0].line == 3


# -- the plain CSV ----------------------------------------------------------------------------
def test_plain_csv_with_relative_and_absolute_images(workspace, tmp_path):
    (tmp_path / "pics").mkdir()
    jpeg(tmp_path / "pics" / "a.jpg")
    absolute = jpeg(tmp_path / "b.jpg").resolve()
    (tmp_path / "pics" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    path = write_csv(tmp_path / "catalog.csv", ["id", "title", "description", "image", "label"], [
        ["p1", "Plaid polaire", "doux &amp; chaud<br>", "pics/a.jpg", "1920"],
        ["p2", "Banc de jardin", "", str(absolute), "2582"],
        ["p3", "Sans image ni label", "", "", ""],
        ["p4", "Image cassée", "", "pics/broken.jpg", "2060"],
        ["p5", "Image absente", "", "pics/missing.jpg", "2060"],
        ["p6", "Code faux", "", "", "abc"],
        ["p1", "Doublon", "", "", "1920"],
        ["", "Sans id", "", "", "10"],
    ])
    report = import_plain_csv(workspace, path)
    assert report.imported == 5
    assert report.skipped_by_reason() == {importer.UNKNOWN_CATEGORY: 1, importer.DUPLICATE_ID: 1,
                                          importer.EMPTY_ID: 1}
    assert report.other_problems() == {f"{importer.CORRUPT_IMAGE} (imported without image)": 1,
                                       f"{importer.MISSING_IMAGE} (imported without image)": 1}
    assert workspace.product("p1")["image_path"] == str((tmp_path / "pics" / "a.jpg").resolve())
    assert workspace.product("p1")["description"] == "doux &amp; chaud<br>"
    assert workspace.product("p2")["image_path"] == str(absolute)
    assert workspace.product("p3")["source_label"] is None and workspace.product("p4")["image_path"] is None
    assert import_plain_csv(workspace, path).imported == 0


def test_plain_csv_requires_id_and_title(workspace, tmp_path):
    path = write_csv(tmp_path / "catalog.csv", ["name", "label"], [["x", "10"]])
    with pytest.raises(CatalogError, match=r"missing id, title; found columns \[name, label\], expected \[id, title "
                                           r"\(optional: description, image, label\)\]"):
        import_plain_csv(workspace, path)


def test_reimport_checks_images_of_new_products_only(workspace, catalog):
    x, y, images = catalog
    import_challenge(workspace, x, y, images)
    (images / "image_11_product_101.jpg").write_bytes(b"broken since")     # product 101 is already stored
    again = import_challenge(workspace, x, y, images)
    assert again.imported == 0 and again.problems == []
    assert workspace.product("101")["image_path"] is not None
    fresh = Workspace(x.parent / "ws2")
    try:
        report = import_challenge(fresh, x, y, images)
        assert [p.kind for p in report.problems] == [importer.CORRUPT_IMAGE]
        assert fresh.product("101")["image_path"] is None
    finally:
        fresh.close()
