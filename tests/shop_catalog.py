"""A shop's folder as a new user lays it out: a plain CSV catalog with its product images beside
it, the auth file and the workspace in the same folder, a private sub-folder, and symlinks to
secrets elsewhere. Real sample products, imported by the real importer, with two really trained
(text-only, seconds) model versions: the first live, the second ready.
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from labeler.samples import sample_products

ADMIN, ADMIN_PW = "ada", "ada-long-passphrase"
ANNOTATOR, ANNOTATOR_PW = "nina", "nina-long-passphrase"


@dataclass
class Shop:
    folder: Path
    workspace: Path
    auth_file: Path
    image_ids: list[str]         # products whose image sits beside catalog.csv
    secrets: dict[str, Path]     # what must never be served, by what it is
    versions: list[str]          # [live, ready]


def make_shop(sample_dir: Path, root: Path, *, per_category: int = 3, images: int = 3, train: bool = True) -> Shop:
    from labeler.auth import add_user
    from labeler.importer import import_plain_csv
    from store.workspace import Workspace

    folder = root / "shop"
    folder.mkdir(parents=True)
    products = sample_products(sample_dir, per_category)
    with_image = products.index[products["image_path"].notna()][:images]
    rows, image_ids = [], []
    for i, r in products.iterrows():
        image = ""
        if i in with_image:
            image = Path(r.image_path).name
            shutil.copy(r.image_path, folder / image)
            image_ids.append(r.id)
        rows.append({"id": r.id, "title": r.title, "description": r.description, "image": image,
                     "label": int(r.source_label)})
    with open(folder / "catalog.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "title", "description", "image", "label"])
        writer.writeheader()
        writer.writerows(rows)
    auth_file = folder / "reviewers.txt"
    add_user(auth_file, ADMIN, "admin", ADMIN_PW)
    add_user(auth_file, ANNOTATOR, "annotator", ANNOTATOR_PW)
    private = folder / "private"
    private.mkdir()
    (private / "notes.txt").write_text("SECRET-IN-SUBFOLDER\n", encoding="utf-8")
    outside = root / "home" / ".ssh"
    outside.mkdir(parents=True)
    (outside / "id_rsa").write_text("SECRET-PRIVATE-KEY\n", encoding="utf-8")
    (folder / "ssh").symlink_to(outside, target_is_directory=True)        # a folder link to a secret
    (folder / "cover.jpg").symlink_to(outside / "id_rsa")                 # an image-looking link to one

    ws = Workspace(folder / "workspace")
    report = import_plain_csv(ws, folder / "catalog.csv")
    assert report.imported == len(rows) and report.with_image == len(image_ids), report
    versions = []
    if train:
        from labeler.training import train_version
        versions.append(train_version(ws, evaluate=False, notes="shop v1")["id"])
        versions.append(train_version(ws, evaluate=False, notes="shop v2", make_live=False)["id"])
    ws.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ws.close()
    secrets = {"auth file": auth_file, "workspace db": folder / "workspace" / "workspace.db",
               "catalog": folder / "catalog.csv", "sub-folder file": private / "notes.txt",
               "folder symlink": folder / "ssh" / "id_rsa", "file symlink": folder / "cover.jpg"}
    return Shop(folder, folder / "workspace", auth_file, image_ids, secrets, versions)
