"""CSV cells a spreadsheet would run as formulas are written with a leading single quote.

OWASP's rule for CSV injection: a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
return is a formula to Excel, LibreOffice and Google Sheets (`=HYPERLINK(...)`, `@SUM(...)`,
`-2+3+cmd|...`). Product ids and titles come from catalogs anyone may have written, so every
CSV this tool writes passes its text columns through `neutralise_frame`; numbers (category
codes, probabilities, an index) are written as numbers. JSON outputs are left exactly as stored.
`restore` undoes the quote when the tool reads its own CSV back (evaluate reads predict's).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """`'=1+1` for `=1+1`; anything not a formula-leading string unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def restore(value: Any) -> Any:
    """The inverse of `neutralise` for a cell read back from such a CSV."""
    if isinstance(value, str) and value.startswith("'") and value[1:2] and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text (object / string) columns are neutralised, cell by cell."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(neutralise)
    if out.index.dtype == object:
        out.index = out.index.map(neutralise)
    return out
