"""Interop with other labeling tools: Label Studio JSON tasks (both ways) and Parquet.

* `export_labelstudio`: one Label Studio task per product. `data` holds `product_id`, `title`
  ('' for a product with only a photo or a description), `text` (title and description, what a
  Text tag shows; '' for a photo-only product) and `image` (the stored path; serve it
  through Label Studio's local-files storage). `predictions` holds the live model's fused top-5,
  one prediction per candidate, best first, each a `choices` result with its probability as
  `score` (Label Studio pre-selects the first and sorts tasks by score). `annotations` holds each
  reviewer's label in effect (their latest accept / correct / auto-accept not undone), with
  `completed_by` = the reviewer's name. A matching labeling config (Text + Image + one Choice
  per category of the workspace's taxonomy) is written next to it. Choice values are the category
  labels, "2583 · <name>" ("toys · <name>" in a taxonomy of text codes).
* `import_labelstudio`: every `choices` annotation becomes an ordinary append-only decision by
  its annotator (accept when it is the live model's top-1, else correct), `via='labelstudio'`,
  all in one batch (`python -m labeler undo-batch` takes an import back). Re-importing the same
  file adds nothing; an annotation equal to the annotator's label already in effect is counted
  as already present. Bad tasks are named one line each (task id, what is wrong, the fix) and
  the good ones imported.
* `export_parquet`: one row per product: ids, texts, image path, imported and current label (its
  key, code and name),
  every decision (list of structs, undone ones flagged) and the live model's top-5; pandas and
  pyarrow (hence Hugging Face `datasets`) read it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from labeler import taxonomy
from labeler.taxonomy import Taxonomy
from store import imports, predictions
from store import labels as label_store
from store.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)
FROM_NAME = "category"      # the Choices tag's name in the config we write
TO_NAME = "text"            # the Text tag it labels
LABEL_ACTIONS = ("accept", "correct", "auto_accept")


class InteropError(WorkspaceError):
    """A file cannot be read or written as asked; the message names the file and the fix."""


def choice_value(code: int, tax: Taxonomy) -> str:
    """The Label Studio choice of a category key: 'code · name'."""
    return tax[code].label


def parse_choice(value: object, tax: Taxonomy) -> int | None:
    """A category key from a choice value: '2583 · Piscine', '2583', 'toys', or the category's name."""
    key = tax.parse(value)
    if key is not None:
        return key
    lowered = str(value).strip().lower()
    for cat in tax:
        if cat.name.lower() == lowered or cat.label.lower() == lowered:
            return cat.key
    return None


# -- export: Label Studio --------------------------------------------------------------------------
def labelstudio_config(tax: Taxonomy) -> str:
    """The labeling config the exported tasks are made for (paste it in the project's settings)."""
    choices = "\n".join(f"    <Choice value={quoteattr(c.label)}/>" for c in tax)
    return (f'<View>\n  <Header value="$title"/>\n  <Image name="image" value="$image"/>\n'
            f'  <Text name="{TO_NAME}" value="$text"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="false">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def _choices_result(code: int, tax: Taxonomy, score: float | None = None) -> dict:
    item: dict[str, Any] = {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                            "value": {"choices": [choice_value(code, tax)]}}
    if score is not None:
        item["score"] = round(float(score), 6)
    return item


def _labels_in_effect(ws: Workspace) -> dict[str, list[dict]]:
    """product -> each reviewer's latest effective label decision, oldest first."""
    rows = label_store.latest_label_decisions(ws)
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["product_id"], []).append(r)
    return out


def _live_predictions(ws: Workspace) -> tuple[str | None, dict[str, list]]:
    version = ws.live_version()
    if version is None:
        return None, {}
    return version, predictions.top5_by_product(ws, version)


def labelstudio_tasks(ws: Workspace) -> list[dict]:
    """Every product as a Label Studio task (see the module doc), in import order."""
    version, preds = _live_predictions(ws)
    labels = _labels_in_effect(ws)
    tax = taxonomy.of(ws)
    tasks = []
    for n, p in enumerate(ws.products(), 1):
        text = "\n\n".join(part for part in (p["title"], p["description"]) if part)   # either may be empty
        data: dict[str, Any] = {"product_id": p["id"], "title": p["title"], "text": text}
        if p["image_path"]:
            data["image"] = p["image_path"]
        task: dict[str, Any] = {"id": n, "data": data, "predictions": [], "annotations": []}
        for code, prob in preds.get(p["id"], []):
            task["predictions"].append({"model_version": version, "score": round(float(prob), 6),
                                        "result": [_choices_result(int(code), tax, prob)]})
        for d in labels.get(p["id"], []):
            task["annotations"].append({
                "id": d["id"], "completed_by": d["reviewer"], "result": [_choices_result(int(d["category"]), tax)],
                "was_cancelled": False, "ground_truth": False, "created_at": d["created_at"],
                "lead_time": None if d["lead_time_ms"] is None else d["lead_time_ms"] / 1000.0})
        tasks.append(task)
    return tasks


def export_labelstudio(ws: Workspace, out: Path) -> dict[str, Any]:
    """Write `labelstudio_tasks.json` and `labelstudio_config.xml` into `out`; returns counts and paths."""
    tasks = labelstudio_tasks(ws)
    out.mkdir(parents=True, exist_ok=True)
    path, config = out / "labelstudio_tasks.json", out / "labelstudio_config.xml"
    path.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    config.write_text(labelstudio_config(taxonomy.of(ws)), encoding="utf-8")
    return {"tasks": path, "config": config, "n_tasks": len(tasks),
            "n_annotations": sum(len(t["annotations"]) for t in tasks),
            "n_with_predictions": sum(1 for t in tasks if t["predictions"])}


# -- import: Label Studio ---------------------------------------------------------------------------
@dataclass
class LabelStudioImport:
    source: Path
    n_tasks: int = 0
    imported: int = 0                 # decisions written
    already_present: int = 0          # the annotator's label was already in effect (or this file was imported)
    without_annotations: int = 0      # tasks nobody annotated (Label Studio exports them too)
    cancelled: int = 0                # skipped annotations (was_cancelled)
    batch_id: str | None = None
    problems: list[str] = field(default_factory=list)


def _annotator(value: object) -> str | None:
    if isinstance(value, dict):
        for key in ("email", "username", "first_name", "id"):
            if value.get(key) not in (None, ""):
                return str(value[key]).strip()
        return None
    if value is None or isinstance(value, bool) or str(value).strip() == "":
        return None
    return f"labelstudio-user-{value}" if isinstance(value, int) else str(value).strip()


def read_labelstudio(path: Path) -> list:
    """The tasks of a Label Studio JSON export; one-line InteropError when it is not one."""
    if not path.is_file():
        raise InteropError(f"{path}: file not found; give the JSON file exported from Label Studio "
                           "(Export > JSON)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InteropError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); export the project "
                           "from Label Studio as JSON") from None
    except json.JSONDecodeError as exc:
        raise InteropError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); export the "
                           "project from Label Studio as JSON (not CSV/TSV/JSON-MIN)") from None
    if isinstance(data, dict) and "data" in data:
        data = [data]
    if not isinstance(data, list):
        raise InteropError(f"{path}: expected a JSON list of tasks, found a JSON {type(data).__name__}; "
                           "export the project from Label Studio as JSON")
    return data


def import_labelstudio(ws: Workspace, path: Path) -> LabelStudioImport:
    """Turn the file's `choices` annotations into decisions by their annotators (see the module doc)."""
    tasks = read_labelstudio(path)
    report = LabelStudioImport(source=path, n_tasks=len(tasks))
    tax = taxonomy.of(ws)
    file_tag = hashlib.sha1(path.name.encode()).hexdigest()[:8]
    wanted: list[tuple[str, str, int, str, dict, str]] = []   # (created_at, product, category, annotator, ann, key)
    for pos, task in enumerate(tasks, 1):
        tid = task.get("id", f"#{pos}") if isinstance(task, dict) else f"#{pos}"
        where = f"{path.name}: task {tid}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            report.problems.append(f"{where}: no 'data' object; each task must be a JSON object with 'data'")
            continue
        pid = task["data"].get("product_id", task["data"].get("productid"))
        if pid in (None, ""):
            report.problems.append(f"{where}: data.product_id missing; tasks must carry the product id "
                                   "(export them with `python -m labeler export --format labelstudio`)")
            continue
        pid = str(pid).strip()
        annotations = task.get("annotations") or task.get("completions") or []
        if not annotations:
            report.without_annotations += 1
            continue
        if ws.product(pid) is None:
            report.problems.append(f"{where}: product {pid!r} is not in workspace {ws.root}; import the catalog "
                                   "first, then the annotations")
            continue
        for ann in annotations:
            aid = ann.get("id", "?") if isinstance(ann, dict) else "?"
            if not isinstance(ann, dict):
                report.problems.append(f"{where}: an annotation is not a JSON object")
                continue
            if ann.get("was_cancelled"):
                report.cancelled += 1
                continue
            choices = [r for r in ann.get("result") or [] if isinstance(r, dict) and r.get("type") == "choices"]
            values = [v for r in choices for v in ((r.get("value") or {}).get("choices") or [])]
            if not values:
                kinds = sorted({str(r.get("type")) for r in ann.get("result") or [] if isinstance(r, dict)})
                report.problems.append(f"{where}: annotation {aid} has no 'choices' result (found: "
                                       f"{', '.join(kinds) or 'an empty result'}); label it with a Choices tag")
                continue
            code = parse_choice(values[0], tax)
            if code is None:
                report.problems.append(f"{where}: annotation {aid} names unknown category {values[0]!r}; expected "
                                       f"one of the {len(tax)} categories, e.g. {choice_value(tax.keys()[0], tax)!r}")
                continue
            who = _annotator(ann.get("completed_by"))
            if who is None:
                report.problems.append(f"{where}: annotation {aid} has no completed_by; who annotated it "
                                       "is needed to record the decision")
                continue
            stamp = str(ann.get("created_at") or "")
            key = f"labelstudio:{file_tag}:{pid}:{who}:{aid}:{stamp}:{code}"
            wanted.append((stamp, pid, code, who, ann, key))
    wanted.sort(key=lambda w: w[0])
    if wanted:
        _write_decisions(ws, path, wanted, report)
    return report


def _write_decisions(ws: Workspace, path: Path, wanted: list, report: LabelStudioImport) -> None:
    from labeler.bulk import _new_batch_id
    version = ws.live_version()
    top1 = predictions.top1_by_product(ws, version) if version is not None else {}
    items = []
    for _, pid, code, who, ann, key in wanted:
        lead = ann.get("lead_time")
        items.append(imports.ImportedLabel(
            product_id=pid, reviewer=who, category=code, action="accept" if top1.get(pid) == code else "correct",
            model_version=version if pid in top1 else None,
            comment=f"Label Studio annotation {ann.get('id', '?')} ({path.name})",
            lead_time_ms=int(float(lead) * 1000) if isinstance(lead, (int, float)) else None, idempotency_key=key))
    batch = _new_batch_id("ls")
    written, already = imports.record_imported_labels(
        ws, items, batch_id=batch, kind="labelstudio", reviewer="labelstudio-import", model_version=version,
        note=f"from {path.name}", via="labelstudio")
    report.already_present += already
    report.imported = written
    if written:
        report.batch_id = batch


# -- export: Parquet --------------------------------------------------------------------------------
def export_parquet(ws: Workspace, out: Path) -> dict[str, Any]:
    """Write `catalog.parquet` into `out`: one row per product (see the module doc)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    version, preds = _live_predictions(ws)
    label_of = label_store.label_table(ws)
    decisions = label_store.decision_log(ws)
    products = ws.products()
    tax = taxonomy.of(ws)

    def top5(pid: str) -> list[dict]:
        return [{"category": int(c), "code": tax.code(c), "name": tax.name(c), "prob": float(p)}
                for c, p in preds.get(pid, [])]

    decision_type = pa.struct([("id", pa.int64()), ("reviewer", pa.string()), ("action", pa.string()),
                               ("category", pa.int64()), ("model_version", pa.string()), ("comment", pa.string()),
                               ("created_at", pa.string()), ("batch_id", pa.string()), ("via", pa.string()),
                               ("undone", pa.bool_())])
    top_type = pa.struct([("category", pa.int64()), ("code", pa.string()), ("name", pa.string()),
                          ("prob", pa.float64())])
    schema = pa.schema([("product_id", pa.string()), ("source_row", pa.string()), ("title", pa.string()),
                        ("description", pa.string()), ("image_path", pa.string()),
                        ("imported_label", pa.int64()), ("label", pa.int64()), ("label_code", pa.string()),
                        ("label_name", pa.string()),
                        ("reviewed", pa.bool_()), ("decisions", pa.list_(decision_type)),
                        ("model_version", pa.string()), ("top5", pa.list_(top_type))])
    columns: dict[str, list] = {name: [] for name in schema.names}
    for p in products:
        label, reviewed = label_of.get(p["id"], (None, False))
        row = {"product_id": p["id"], "source_row": p["source_row"], "title": p["title"],
               "description": p["description"], "image_path": p["image_path"],
               "imported_label": p["source_label"], "label": label,
               "label_code": None if label is None else tax.code(label),
               "label_name": None if label is None else tax.name(label), "reviewed": reviewed,
               "decisions": decisions.get(p["id"], []), "model_version": version if p["id"] in preds else None,
               "top5": top5(p["id"])}
        for k, v in row.items():
            columns[k].append(v)
    table = pa.Table.from_pydict(columns, schema=schema)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "catalog.parquet"
    pq.write_table(table, path)
    return {"path": path, "n_rows": table.num_rows, "n_decisions": sum(len(v) for v in decisions.values())}
