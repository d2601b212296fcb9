"""The app tests' workspaces, from the package's cached templates (labeler/templates.py): the app
workspace (324 real sample products, 36 with their image, a really trained text model + image
ensemble + fusion) and the demo workspace launch.py makes of an empty folder. Each test gets its
own copy, whose model-version paths point into it.
"""
from __future__ import annotations

import functools
from pathlib import Path

from labeler import templates
from labeler.templates import app_workspace  # noqa: F401 - the app tests take it from here


def demo_workspace(dest: Path) -> Path:
    """A copy of what `launch.prepare_workspace` makes of an empty workspace (demo catalog, a first
    model), its console output in prepare.log."""
    from launch import prepare_workspace
    return templates.demo_workspace(dest, functools.partial(prepare_workspace, demo=True))
