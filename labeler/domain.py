"""The bottom of `labeler`: types the services and interfaces share, importing no service.

It re-exports the one `Progress` type (defined in `models.progress`, below every layer that
reports progress) so labeler code does not define its own.
"""
from __future__ import annotations

from models.progress import Progress, scaled, silent

__all__ = ["Progress", "scaled", "silent"]
