"""Adjudication on real workspaces (the sample's products in a real SQLite file, real decision rows):
disputes with each reviewer's choice and comment, the admin's ruling final for the label rule,
Cohen's kappa per reviewer pair, and the CLI's one-line refusals."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from review_workspace import copy_workspace  # noqa: E402

from labeler import adjudication  # noqa: E402
from labeler.auth import add_user  # noqa: E402
from labeler.cli import main  # noqa: E402
from store.labels import resolve_labels  # noqa: E402
from store.workspace import Workspace  # noqa: E402

A, B, C = 2583, 1560, 40       # three real categories


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def ws(sample_dir, tmp_path):
    w = Workspace(copy_workspace(sample_dir, tmp_path / "ws", train=False))
    yield w
    w.close()


def _vote(ws: Workspace, pid: str, who: str, code: int, comment: str = "") -> dict:
    return ws.record_decision(pid, who, "correct", category=code, comment=comment)


def test_cohen_kappa_by_hand_and_against_sklearn():
    # p_o = 3/4; p_e = .5*.25 + .5*.75 = .5; kappa = (.75 - .5) / .5
    assert adjudication.cohen_kappa([1, 1, 2, 2], [1, 2, 2, 2]) == pytest.approx(0.5)
    assert adjudication.cohen_kappa([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert adjudication.cohen_kappa([5, 5], [5, 5]) is None            # one category: undefined, not perfect
    from sklearn.metrics import cohen_kappa_score
    rng = random.Random(3)
    x = [rng.choice([A, B, C]) for _ in range(60)]
    y = [v if rng.random() < 0.7 else rng.choice([A, B, C]) for v in x]
    assert adjudication.cohen_kappa(x, y) == pytest.approx(cohen_kappa_score(x, y))


def test_disputes_show_each_reviewers_effective_choice_and_comment(ws):
    p1, p2, p3, p4 = [p["id"] for p in ws.products()[:4]]
    _vote(ws, p1, "ann", A, "looks like a pool")
    _vote(ws, p1, "bob", B, "it is a chair")
    _vote(ws, p2, "ann", A)
    _vote(ws, p2, "bob", A)                                   # agreement: not a dispute
    _vote(ws, p3, "ann", A)
    wrong = _vote(ws, p3, "bob", B)
    ws.record_decision(p3, "bob", "undo", undoes=wrong["id"])  # bob took it back: no dispute left
    _vote(ws, p4, "ann", A)
    _vote(ws, p4, "ann", B)                                   # one reviewer changing their mind

    found, n_ruled = adjudication.disputes(ws)
    assert [d.product_id for d in found] == [p1] and n_ruled == 0
    d = found[0]
    assert {(v.reviewer, v.category, v.comment) for v in d.votes} == {
        ("ann", A, "looks like a pool"), ("bob", B, "it is a chair")}
    assert d.categories == sorted([A, B]) and d.ruling is None


def test_a_ruling_is_final_for_the_label_rule_and_undoable(ws):
    pid = ws.products()[0]["id"]
    _vote(ws, pid, "ann", A)
    _vote(ws, pid, "bob", A)
    _vote(ws, pid, "cid", B)
    assert resolve_labels(ws)[pid] == A                       # majority before any ruling

    row = adjudication.rule(ws, "root", pid, str(B), comment="the photo shows a chair")
    assert (row["via"], row["category"], row["reviewer"]) == ("adjudication", B, "root")
    _vote(ws, pid, "dan", A)                                  # a later vote does not overturn it
    assert resolve_labels(ws)[pid] == B == ws.current_labels()[pid]
    assert resolve_labels(ws, ids=[pid]) == {pid: B}
    found, n_ruled = adjudication.disputes(ws)
    assert found == [] and n_ruled == 1
    ruled, _ = adjudication.disputes(ws, include_ruled=True)
    assert ruled[0].ruling.category == B and "root" not in {v.reviewer for v in ruled[0].votes}

    ws.record_decision(pid, "root", "undo", undoes=row["id"])  # the ruling taken back: majority again
    assert resolve_labels(ws)[pid] == A


def test_kappa_per_reviewer_pair_from_decisions(ws):
    ids = [p["id"] for p in ws.products()[:8]]
    ann = [A, A, B, B, C, C, A, B]
    bob = [A, B, B, B, C, A, A, B]
    for pid, a, b in zip(ids, ann, bob):
        _vote(ws, pid, "ann", a)
        _vote(ws, pid, "bob", b)
    _vote(ws, ids[0], "cid", A)                               # cid shares one product with each
    adjudication.rule(ws, "root", ids[1], A)                   # rulings are not a reviewer's vote
    pairs = {(p.a, p.b): p for p in adjudication.pair_agreements(ws)}
    assert set(pairs) == {("ann", "bob"), ("ann", "cid"), ("bob", "cid")}
    ab = pairs[("ann", "bob")]
    assert ab.n == 8 and ab.agreement == pytest.approx(6 / 8)
    assert ab.kappa == pytest.approx(adjudication.cohen_kappa(ann, bob))
    assert pairs[("ann", "cid")].kappa is None                # one shared product, one category


def test_cli_lists_disputes_and_rules_and_refuses_bad_input_in_one_line(ws, tmp_path):
    pid = ws.products()[0]["id"]
    _vote(ws, pid, "ann", A, "pool")
    _vote(ws, pid, "bob", B, "chair")
    root = ws.root
    out = cli("adjudicate", "list", "--workspace", root)
    assert out.exit_code == 0, out.output
    assert pid in out.output and '"pool"' in out.output and '"chair"' in out.output
    assert "ann / bob: n=1" in out.output and "kappa" in out.output

    n = len(ws.decisions())
    auth = tmp_path / "reviewers.txt"
    add_user(auth, "root", "admin", "pw-root-123")
    add_user(auth, "ann", "annotator", "pw-ann-1234")
    for args, needle in (
            (["nope-id", A, "--by", "root"], "no product 'nope-id'"),
            ([pid, "9999", "--by", "root"], "unknown category '9999'"),
            ([pid, A, "--by", "ann", "--auth", auth], "needs the admin role"),
            ([pid, A, "--by", "root", "--auth", tmp_path / "missing.txt"], "not found")):
        bad = cli("adjudicate", "rule", *args, "--workspace", root)
        assert bad.exit_code == 1, bad.output
        assert needle in bad.output and "Traceback" not in bad.output
        assert len(bad.output.strip().splitlines()) == 1, bad.output
    assert len(ws.decisions()) == n                           # nothing written by a refused ruling

    ok = cli("adjudicate", "rule", pid, str(B), "--by", "root",
             "--auth", auth, "--comment", "chair in the photo", "--workspace", root)
    assert ok.exit_code == 0, ok.output
    assert ws.current_labels()[pid] == B
    again = cli("adjudicate", "list", "--workspace", root)
    assert "No open disputes (1 already ruled" in again.output


def test_a_category_name_is_accepted_as_well_as_its_code(ws):
    from labeler import taxonomy
    pid = ws.products()[0]["id"]
    row = adjudication.rule(ws, "root", pid, taxonomy.name(C).upper())
    assert row["category"] == C
    with pytest.raises(adjudication.AdjudicationError, match="needs the admin's name"):
        adjudication.rule(ws, "  ", pid, C)


def test_the_current_labels_view_keeps_a_ruling_over_a_later_reviewers_decision(ws):
    from store.decisions import current_label
    from store.labels import label_table
    pid = ws.products()[0]["id"]
    _vote(ws, pid, "ann", A)
    ruling = adjudication.rule(ws, "root", pid, B, comment="the photo shows a chair")
    _vote(ws, pid, "bob", C)                                   # a later decision: not the label
    ws.record_decision(pid, "ann", "accept", category=A)       # nor another one
    assert label_table(ws)[pid] == (B, True) and current_label(ws, pid) == B == resolve_labels(ws)[pid]
    ws.record_decision(pid, "root", "undo", undoes=ruling["id"])   # taken back: ann A vs bob C, the latest wins
    assert label_table(ws)[pid] == (A, True) == (resolve_labels(ws)[pid], True)


def test_the_view_and_the_label_rule_agree_on_a_real_workspace(ws):
    """Majorities, ties, undos, auto-accepts, rulings and rulings undone over the sample's products."""
    from store.labels import label_table
    rng = random.Random(18)
    ids = [p["id"] for p in ws.products()]
    cats = [A, B, C, 10, 1280]
    rows = []
    for pid in rng.sample(ids, min(len(ids), 150)):
        for _ in range(rng.randint(1, 5)):
            who = rng.choice(["ann", "bob", "cid", "dan"])
            action = rng.choice(["correct", "correct", "accept", "auto_accept", "skip"])
            rows.append(ws.record_decision(pid, who, action, category=None if action == "skip" else rng.choice(cats)))
        if rng.random() < 0.3:
            rows.append(adjudication.rule(ws, "root", pid, rng.choice(cats)))
        if rng.random() < 0.3:
            rows.append(ws.record_decision(pid, rng.choice(["ann", "bob"]), "correct", category=rng.choice(cats)))
    for row in rng.sample(rows, len(rows) // 6):
        ws.record_decision(row["product_id"], row["reviewer"], "undo", undoes=row["id"])
    view = label_table(ws)
    labels, reviewed = resolve_labels(ws), resolve_labels(ws, reviewed_only=True)
    assert set(view) == set(ids)
    assert {p: c for p, (c, _) in view.items() if c is not None} == labels
    assert {p for p, (_, r) in view.items() if r} == set(reviewed)
    ruled = {r["product_id"] for r in ws.decisions() if r["via"] == "adjudication"}
    assert len(ruled) > 10 and len(reviewed) > 100            # the cases above did happen
