"""SQLite workspace: one file per workspace, append-only decisions."""
from store.workspace import Workspace, WorkspaceError, open_workspace

__all__ = ["Workspace", "WorkspaceError", "open_workspace"]
