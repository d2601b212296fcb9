"""Application settings in one place, with defaults that run offline."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKSPACE = Path(os.environ.get("LABELER_WORKSPACE", "workspace"))


@dataclass(frozen=True)
class Settings:
    workspace: Path = DEFAULT_WORKSPACE
    auto_accept_threshold: float = 0.80   # the study's automation threshold on fused top-1
    reservation_ttl_s: int = 600          # an abandoned reservation frees itself after this
    overlap_share: float = 0.0            # share of products shown to a second reviewer
    top_k: int = 5
    host: str = "127.0.0.1"
    port: int = 7860
    seed: int = 0
