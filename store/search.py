"""Full-text search over product titles and descriptions (`products_fts`, FTS5, m031)."""
from __future__ import annotations

import numpy as np

from store._conn import Db, conn_of


def matching_rowids(db: Db, match: str) -> np.ndarray:
    """Product rowids (the key `store.catalog.browse_rows` gives) matching an FTS5 expression."""
    return np.fromiter((r[0] for r in conn_of(db).execute(
        "SELECT rowid FROM products_fts WHERE products_fts MATCH ?", (match,))), np.int64)
