"""Start the review app on a workspace.

    python launch.py --workspace workspace [--host 127.0.0.1] [--port 7860] [--share] [--auth reviewers.txt]

An empty workspace gets the project's demo catalog (81 products, a first model trained on them)
unless --no-demo is given. --share asks Gradio for a temporary public link; where that is not
possible (no route to Gradio's relay) it says so in one line and the local URL keeps working.

--auth FILE turns on login; reviewers are then known by their login name. Make the file with

    python -m labeler users add alice --role admin --auth reviewers.txt       # asks the password
    python -m labeler users add bob --role annotator --auth reviewers.txt

which stores salted scrypt hashes (file mode 600). Admins retrain and change the live version;
annotators review. An older `name:password` file still loads, its reviewers as annotators, with
a one-line warning (see `labeler.auth`). After 5 wrong passwords for a name or from an address
within 5 minutes, logins are refused for 30 s, doubling at each new lock-out.

Without --auth the app is for the one person at this machine (every right) on a loopback host.
With --share or a non-loopback --host and no --auth it runs as a demo: review and try-it work,
retraining and changing the live version are refused; one line at start says so. One line also
warns when the auth file is readable by other users of the machine.

Only each product's own image is served (by product id); no folder is ever shared.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from pathlib import Path

import click

from labeler.auth import Access, AuthFileError, file_warnings, read_auth_file  # noqa: F401 (re-exported)
from labeler.console import FILE, TqdmProgress, workspace_option
from labeler.config import Settings
from store.workspace import Workspace

log = logging.getLogger("launch")


def prepare_workspace(path: Path, *, demo: bool) -> Workspace:
    """Open (or create) the workspace; an empty one gets the demo catalog and a first model."""
    ws = Workspace(path)
    if ws.count_products() == 0:
        if not demo:
            click.echo(f"Workspace {ws.root.resolve()} has no products (--no-demo): import a catalog with "
                       f"`python -m labeler import --workspace {path} ...`; the app shows an empty queue meanwhile.")
        else:
            from labeler.demo import ensure_demo
            click.echo(f"Workspace {ws.root.resolve()} is empty: loading the demo catalog and training a first "
                       "model (pass --no-demo to skip).")
            with TqdmProgress("demo catalog") as bar:
                ensure_demo(ws, progress=bar)
    elif ws.live_version() is None:
        click.echo(f"No model trained yet: the queue is in import order. Train one with "
                   f"`python -m labeler train --workspace {path}`.")
    return ws


def share_link(demo) -> None:
    """Ask Gradio for a public link; one line either way, the local server keeps running."""
    from gradio import networking
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            url = networking.setup_tunnel(local_host=demo.server_name, local_port=demo.server_port,
                                          share_token=demo.share_token,
                                          share_server_address=None, share_server_tls_certificate=None)
        demo.share_url = url
        click.echo(f"Public link (temporary): {url}")
    except Exception as exc:  # noqa: BLE001 - no relay here is an expected situation, not a crash
        demo.share = False
        reason = " ".join(str(exc).split()) or type(exc).__name__
        click.echo(f"No public link: Gradio's share relay is unreachable ({reason[:160]}); "
                   f"the local URL keeps working.")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@workspace_option
@click.option("--host", default=Settings.host, show_default=True,
              help="Interface to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=Settings.port, show_default=True, type=click.IntRange(1, 65535))
@click.option("--share", is_flag=True, help="Also ask Gradio for a temporary public link.")
@click.option("--auth", "auth_file", type=FILE,
              help="Reviewers, roles and password hashes (`python -m labeler users add NAME --role ROLE`).")
@click.option("--no-demo", is_flag=True, help="Do not load the demo catalog into an empty workspace.")
def main(workspace: Path, host: str, port: int, share: bool, auth_file: Path | None, no_demo: bool) -> None:
    """Start the review app on WORKSPACE and print where it is served."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = read_auth_file(auth_file) if auth_file else None
    for line in file_warnings(auth_file, auth) if auth_file else ():
        click.echo(f"Warning: {line}")
    access = Access.for_launch(auth, host=host, share=share)
    ws = prepare_workspace(workspace, demo=not no_demo)   # a first demo training gets every core
    try:
        import torch
        # heatmaps run beside the server: leave a core to the requests on a small machine
        torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) - 1)))
    except ImportError:
        pass
    from labeler.app import build_app, serve
    settings = Settings(workspace=workspace, host=host, port=port)
    demo = build_app(ws, settings)
    try:
        serve(demo, access=access, server_name=host, server_port=port, auth=auth, prevent_thread_lock=True,
              quiet=True, auth_message="Log in with your reviewer name and password." if auth else None)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port} ({exc}); pick another --port") from None
    live = ws.live_version() or "none"
    click.echo(f"Workspace: {ws.root.resolve()} ({ws.count_products():,} products, live model {live})")
    admins = sum(u.role == "admin" for u in auth or ())
    click.echo(f"Review app: {demo.local_url}" + (f"  ({len(auth)} reviewers, {admins} admin, login required)"
                                                  if auth else ""))
    if access.demo:
        click.echo(access.demo_line())
    if share:
        share_link(demo)
    click.echo("Press Ctrl+C to stop.")
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()


if __name__ == "__main__":
    main()
