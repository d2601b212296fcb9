"""Command line: `python -m labeler <command>` (or the `labeler` console script).

This module only assembles the `main` group from the command modules, which never import it
(no cycles): catalog (import, export, backup), models (train, retrain, versions, rollback,
label-issues), predict (predict, evaluate, explain), bulk (auto-accept, undo-batch, batches),
users. Shared plumbing: `labeler.cli.common` and `labeler.console`. To add a command, write it
in the module of its area and add it below:

    @click.command()
    @workspace_option
    def mycommand(workspace: Path) -> None:
        ws = open_workspace(workspace)          # raises WorkspaceError if it does not exist
        with TqdmProgress("working") as bar:    # the library's (fraction, description) callback
            ...
"""
from __future__ import annotations

import click

from labeler.cli import adjudicate, bulk, catalog, engines, models, predict, users


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Human-in-the-loop labeling of Rakuten France product categories.

    Typical session: import a catalog, train, then review in the app (launch.py); evaluate and
    export whenever needed. Every command takes --workspace DIR (default ./workspace), except
    `users`, which edits the app's --auth file.
    """


for command in (catalog.import_, models.train, predict.predict, predict.evaluate, catalog.export, catalog.backup,
                predict.explain, models.retrain, models.versions, models.rollback, models.label_issues,
                users.users, bulk.auto_accept_cmd, bulk.undo_batch_cmd, bulk.batches_cmd):
    main.add_command(command)
main.add_command(predict.explain, "heatmap")      # the command's earlier name
main.add_command(adjudicate.adjudicate)           # adjudicate list / rule (labeler/cli/adjudicate.py)
main.add_command(engines.score)                   # --engine local|ray on train, retrain, predict too
