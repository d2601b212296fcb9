"""A workspace's own taxonomy: the Taxonomy object, its CSV/JSON files, its table in a real
SQLite workspace, and the rule that a category something uses cannot be removed."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from labeler import taxonomy
from labeler.taxonomy import TaxonomyError
from store import Workspace
from store import taxonomy as stored

SHOP_CSV = """code,name,description,keywords,parent
toys,Jouets,Jeux et jouets pour enfants,poupée;ballon;peluche,
balls,Ballons,Ballons de sport et de plage,ballon;football,toys
garden,Jardin,Outils et mobilier de jardin,râteau;tondeuse,
kitchen,Cuisine,Ustensiles de cuisine,casserole;poêle,
lamps,Luminaires,Lampes et éclairage,lampe;ampoule,
"""


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def add_product(ws: Workspace, pid: str, label: int | None) -> None:
    def ins(conn):
        if conn.execute("SELECT count(*) FROM import_batches").fetchone()[0] == 0:
            conn.execute("INSERT INTO import_batches(source, fingerprint, started_at) VALUES ('t', 'f', 'now')")
        conn.execute("INSERT INTO products(id, title, description, source_label, batch_id, imported_at) "
                     "VALUES (?, ?, '', ?, 1, 'now')", (pid, f"Produit {pid}", label))
    ws.write(ins)


# -- the default ------------------------------------------------------------------------------
def test_default_is_the_rakuten_27_in_code_order_with_keys_equal_to_codes():
    rows = json.loads(taxonomy.TAXONOMY_PATH.read_text(encoding="utf-8"))
    tax = taxonomy.default()
    assert tax.keys() == sorted(int(r["code"]) for r in rows) and len(tax) == 27
    assert tax.numeric and tax.codes() == [str(k) for k in tax.keys()]
    assert tax[2583].name == next(r["name"] for r in rows if r["code"] == 2583)
    assert tax[2583].keywords and tax[2583].label == f"2583 · {tax[2583].name}"
    # the process-wide functions still answer for the default
    assert taxonomy.codes() == tax.keys() and taxonomy.name(2583) == tax.name(2583)
    assert taxonomy.is_known("2583") and taxonomy.is_known(2583) and not taxonomy.is_known(2584)


@pytest.mark.parametrize("value, key", [
    ("2583", 2583), (" 2583 ", 2583), (2583, 2583), (2583.0, 2583), ("2583.0", 2583),
    ("2583 · Piscine et accessoires", 2583), ("2584", None), ("", None), (None, None),
    (float("nan"), None), (2583.5, None), (True, None), ("piscine", None)])
def test_parse_normalises_what_a_user_types_into_a_key(value, key):
    assert taxonomy.default().parse(value) == key


def test_parse_takes_numpy_ints_from_arrays():
    np = pytest.importorskip("numpy")
    assert taxonomy.default().parse(np.int64(2583)) == 2583
    assert taxonomy.default().get(np.asarray([10, 40])[1]).code == "40"


# -- files ------------------------------------------------------------------------------------
def test_a_csv_taxonomy_has_text_codes_negative_keys_keywords_and_parents(tmp_path):
    tax = taxonomy.load(write(tmp_path, "shop.csv", SHOP_CSV))
    assert tax.codes() == ["toys", "balls", "garden", "kitchen", "lamps"]
    assert tax.keys() == [-1, -2, -3, -4, -5] and not tax.numeric
    assert tax.parse("balls") == -2 and tax.parse("BALLS") == -2 and tax.parse(-2) == -2
    assert tax.parse("balls · Ballons") == -2 and tax.parse("tennis") is None
    assert tax[-1].keywords == ("poupée", "ballon", "peluche") and tax[-2].parent == "toys"
    assert tax.parent_of(-2).code == "toys" and tax.parent_of(-1) is None
    assert tax.code(-3) == "garden" and tax.label(-3) == "garden · Jardin" and tax.name(-9) == "unknown category -9"
    assert tax.documents()[-4] == ("Cuisine", "Ustensiles de cuisine", ("casserole", "poêle"))


def test_a_json_taxonomy_takes_a_list_or_an_object_with_categories_and_number_codes(tmp_path):
    rows = [{"code": 7, "name": "Seven", "description": "s"}, {"code": "8", "name": "Eight", "keywords": ["x"]}]
    a = taxonomy.load(write(tmp_path, "a.json", json.dumps(rows)))
    b = taxonomy.load(write(tmp_path, "b.json", json.dumps({"categories": rows})))
    assert a.keys() == b.keys() == [7, 8] and a.numeric and a.codes() == ["7", "8"]
    mixed = taxonomy.loads(json.dumps(rows + [{"code": "misc", "name": "Misc"}]), fmt="json")
    assert mixed.keys() == [7, 8, -1] and mixed.parse("7") == 7 and mixed.parse("misc") == -1


@pytest.mark.parametrize("name, text, expected", [
    ("dup.csv", "code,name\ntoys,Toys\ngarden,Garden\ntoys,Again\n",
     "dup.csv row 4, field code: duplicate code 'toys' (first at row 2)"),
    ("empty_name.csv", "code,name,description\ntoys,  ,Things\n", "empty_name.csv row 2, field name: empty name"),
    ("parent.csv", "code,name,parent\ntoys,Toys,\nballs,Balls,sport\n",
     "parent.csv row 3, field parent: unknown parent 'sport'"),
    ("loop.csv", "code,name,parent\na,A,b\nb,B,a\n", "loop.csv: parents form a loop"),
    ("self.csv", "code,name,parent\na,A,a\n", "self.csv row 2, field parent: category 'a' is its own parent"),
    ("nocode.csv", "name,description\nToys,Things\n", "nocode.csv, header: column 'code' is missing"),
    ("typo.json", '[{"code": "a", "nam": "A"}]', "typo.json entry 1: unknown field 'nam'"),
    ("bad.json", '[{"code": "a", "name": "A"},\n {"code": "b" "name": "B"}]',
     "bad.json is not valid JSON (line 2 column"),
    ("scalar.json", '{"code": "a"}', "scalar.json: expected a JSON list of categories"),
    ("zeros.csv", "code,name\n007,Bond\n", "zeros.csv row 2, field code: code '007' is a number written with"),
    ("empty.json", "[]", "empty.json: no categories"),
    ("nothing.csv", "", "nothing.csv is empty"),
    ("wide.csv", "code,name\ntoys,Toys,extra\n", "wide.csv row 2: more values than the 2 columns"),
    ("float.json", '[{"code": 1.5, "name": "x"}]', "float.json entry 1, field code: 1.5 is not a whole number"),
    ("kw.json", '[{"code": "a", "name": "A", "keywords": [1]}]', "kw.json entry 1, field keywords"),
    ("dot.csv", "code,name\na · b,A\n", "dot.csv row 2, field code: code 'a · b' holds"),
])
def test_a_bad_taxonomy_file_is_one_line_naming_file_row_and_field(tmp_path, name, text, expected):
    with pytest.raises(TaxonomyError) as err:
        taxonomy.load(write(tmp_path, name, text))
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_files_that_are_not_taxonomies_are_refused_in_one_line(tmp_path):
    for path, expected in ((tmp_path / "missing.csv", "does not exist"),
                           (write(tmp_path, "t.txt", "code,name\n"), "expected a .json or .csv file"),
                           (write(tmp_path, "latin.csv", "code,name\nt,Cr\xe8me\n".encode("latin-1")), "is not UTF-8")):
        with pytest.raises(TaxonomyError, match=expected):
            taxonomy.load(path)


# -- a workspace ------------------------------------------------------------------------------
def test_sqlite_keeps_text_in_integer_columns_but_turns_number_text_into_numbers(tmp_path):
    # Why text codes get integer keys rather than being stored as text in the category columns:
    # INTEGER affinity keeps 'toys' as TEXT but reads '007' back as 7 and '1e3' as 1000.
    conn = sqlite3.connect(tmp_path / "a.db")
    conn.execute("CREATE TABLE t (category INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [("toys",), ("007",), ("1e3",), (-2,)])
    got = [r[0] for r in conn.execute("SELECT category FROM t ORDER BY rowid")]
    conn.close()
    assert got == ["toys", 7, 1000, -2]


def test_a_new_workspace_uses_the_default_until_a_taxonomy_is_set(workspace, tmp_path):
    assert taxonomy.of(workspace) is taxonomy.default() and stored.revision(workspace) is None
    change = taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "shop.csv", SHOP_CSV)))
    tax = taxonomy.of(workspace)
    assert tax.codes() == ["toys", "balls", "garden", "kitchen", "lamps"] and tax.keys() == [-1, -2, -3, -4, -5]
    assert set(change.added) == set(tax.codes()) and change.removed == tuple(taxonomy.default().codes())
    assert tax[-2].parent == "toys" and tax[-1].keywords == ("poupée", "ballon", "peluche")
    assert stored.source(workspace) == "shop.csv"
    # another connection (another process) reads the same
    again = Workspace(workspace.root)
    assert taxonomy.of(again) == tax
    again.close()


def test_adding_a_category_keeps_every_key_and_renames_apply(workspace, tmp_path):
    taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "shop.csv", SHOP_CSV)))
    add_product(workspace, "p1", -2)
    bigger = SHOP_CSV.replace("Ballons,", "Balles et ballons,") + "books,Livres,Livres neufs,,\n"
    change = taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "shop2.csv", bigger)))
    tax = taxonomy.of(workspace)
    assert change.added == ("books",) and change.removed == ()
    assert tax.keys() == [-1, -2, -3, -4, -5, -6] and tax.name(-2) == "Balles et ballons"


def test_removing_a_category_a_product_or_decision_holds_is_refused_and_writes_nothing(workspace, tmp_path):
    taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "shop.csv", SHOP_CSV)))
    add_product(workspace, "p1", -3)          # garden, imported label
    add_product(workspace, "p2", None)
    workspace.record_decision("p2", "alice", "correct", category=-5)     # lamps, a decision
    rev = stored.revision(workspace)
    no_garden = "\n".join(line for line in SHOP_CSV.splitlines() if not line.startswith("garden")) + "\n"
    with pytest.raises(TaxonomyError) as err:
        taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "no_garden.csv", no_garden)))
    assert str(err.value).startswith("no_garden.csv leaves out category garden · Jardin, which 1 products and "
                                     "0 decisions hold")
    no_lamps = "\n".join(line for line in SHOP_CSV.splitlines() if not line.startswith("lamps")) + "\n"
    with pytest.raises(TaxonomyError, match="lamps · Luminaires, which 0 products and 1 decisions hold"):
        taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "no_lamps.csv", no_lamps)))
    assert stored.revision(workspace) == rev and len(taxonomy.of(workspace)) == 5


def test_an_unused_category_can_be_removed_and_gets_its_key_back_when_added_again(workspace, tmp_path):
    taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "shop.csv", SHOP_CSV)))
    no_kitchen = "\n".join(line for line in SHOP_CSV.splitlines() if not line.startswith("kitchen")) + "\n"
    change = taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "less.csv", no_kitchen)))
    assert change.removed == ("kitchen",) and taxonomy.of(workspace).get(-4) is None
    assert [r["code"] for r in stored.retired(workspace)] == ["kitchen"]
    # a new code does not take the retired key; kitchen coming back does
    taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "more.csv", no_kitchen + "books,Livres,,,\n")))
    assert taxonomy.of(workspace).parse("books") == -6
    taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "back.csv", SHOP_CSV)))
    assert taxonomy.of(workspace).parse("kitchen") == -4 and taxonomy.of(workspace).get(-6) is None


def test_a_rakuten_workspace_cannot_switch_to_a_taxonomy_without_its_codes_but_can_extend_it(workspace, tmp_path):
    add_product(workspace, "p1", 2583)
    with pytest.raises(TaxonomyError, match=r"leaves out category 2583 · "):
        taxonomy.set_for(workspace, taxonomy.load(write(tmp_path, "shop.csv", SHOP_CSV)))
    assert taxonomy.of(workspace) is taxonomy.default()
    rows = taxonomy.default().to_rows() + [{"code": "toys", "name": "Jouets", "description": "Jeux"}]
    change = taxonomy.set_for(workspace, taxonomy.loads(json.dumps(rows), fmt="json", source="more.json"))
    tax = taxonomy.of(workspace)
    assert change.added == ("toys",) and len(tax) == 28 and tax.parse("toys") == -1 and tax.parse("2583") == 2583
    assert tax[2583].keywords == taxonomy.default()[2583].keywords


def test_a_version_records_the_keys_of_its_probability_columns(workspace):
    workspace.register_model_version("v1", "models/v1", make_live=False)
    assert stored.version_classes(workspace, "v1") is None       # trained before taxonomies: the default
    assert taxonomy.classes_of(workspace, "v1") == taxonomy.default().keys()
    stored.set_version_classes(workspace, "v1", [-3, -1, -2])
    assert stored.version_classes(workspace, "v1") == [-3, -1, -2]
    workspace.register_model_version("v2", "models/v2", make_live=False)
    stored.set_version_classes(workspace, "v2", [7, -1])
    assert taxonomy.classes_of(workspace, "v2") == [7, -1]


def test_import_file_says_what_changed_in_one_line(workspace, tmp_path):
    change = taxonomy.import_file(workspace, write(tmp_path, "shop.csv", SHOP_CSV))
    assert change.describe().startswith("taxonomy: 5 categories from shop.csv; added toys, balls, garden, kitchen, "
                                        "lamps; removed 10, 40, 50, 60, 1140, 1160, 1180, 1280, … (19 more)")
    assert taxonomy.import_file(workspace, tmp_path / "shop.csv").describe() == \
        "taxonomy: 5 categories from shop.csv; same codes as before"


def test_library_code_asks_the_workspace_for_its_taxonomy():
    """No module of the labeler, the models or the store reads the process-wide Rakuten functions
    (kept for scripts and older tests): each asks `taxonomy.of(ws)`, a version's classes or takes
    a Taxonomy; `taxonomy.default()` names the Rakuten default where one is meant."""
    import re
    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"\btaxonomy\.(codes|name|is_known|by_code|categories)\(|\bTAXONOMY_PATH\b")
    offenders = [f"{p.relative_to(root)}:{n}" for folder in ("labeler", "models", "store")
                 for p in sorted((root / folder).rglob("*.py")) if p.name != "taxonomy.py" or folder != "labeler"
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == [], offenders
