"""The image-feature cache rows: one float32 vector per (image content sha1, backbone recipe key).

`WorkspaceFeatures` is the workspace's `image_features` table behind `models.features.FeatureCache`
(get / cached / put), so the models read and keep features without knowing the store.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

CHUNK = 500   # sha1s per IN (...) query, under SQLite's bound-parameter limit


class WorkspaceFeatures:
    """The workspace's `image_features` table (sha1, backbone, dim, vector float32 blob)."""

    def __init__(self, ws: Any):
        self.ws = ws

    def get(self, sha1s: Sequence[str], key: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        wanted = sorted({s for s in sha1s if s})
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start:start + CHUNK]
            rows = self.ws.conn.execute(
                f"SELECT sha1, dim, vector FROM image_features WHERE backbone = ? AND sha1 IN "
                f"({','.join('?' * len(part))})", [key, *part]).fetchall()
            for sha1, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    out[sha1] = vec
        return out

    def cached(self, sha1s: Sequence[str], key: str) -> set[str]:
        """Which of these images have features under `key`, without reading the vectors."""
        out: set[str] = set()
        wanted = sorted({s for s in sha1s if s})
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start:start + CHUNK]
            out.update(r[0] for r in self.ws.conn.execute(
                f"SELECT sha1 FROM image_features WHERE backbone = ? AND sha1 IN ({','.join('?' * len(part))})",
                [key, *part]))
        return out

    def put(self, items: Iterable[tuple[str, np.ndarray]], key: str) -> None:
        values = [(s, key, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for s, v in items]
        if values and not getattr(self.ws, "read_only", False):   # a read-only workspace: computed, not kept
            self.ws.write(lambda c: c.executemany(
                "INSERT OR REPLACE INTO image_features (sha1, backbone, dim, vector) VALUES (?,?,?,?)", values))


def feature_cache(store: Any) -> Any:
    """A workspace as a feature cache; a cache (or None) as it is."""
    if store is None or hasattr(store, "put"):
        return store
    return WorkspaceFeatures(store)
