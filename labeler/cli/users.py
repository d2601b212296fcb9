"""CLI commands for the reviewers of the app: `users add`, `users list` (the --auth file).

    python -m labeler users add alice --role admin --auth reviewers.txt     # asks for the password
    echo "$PW" | python -m labeler users add bob --role annotator --auth reviewers.txt --password-stdin

The password is read without echo (or one line from stdin for scripts) and stored as a salted
scrypt hash; the file is created with mode 600. See `labeler.auth` for the format and the roles.
"""
from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from labeler import auth
from labeler.console import FILE, user_errors

AUTH_OPTION = click.option("--auth", "auth_file", type=FILE, default=Path("reviewers.txt"), show_default=True,
                           help="The auth file launch.py reads with --auth.")


@click.group()
def users() -> None:
    """Reviewers who may log in to the app, their role (admin or annotator) and hashed password."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(auth.ROLES), required=True,
              help="admin: retrain, make a version live, settings, bulk actions; annotator: review only.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin (scripts).")
@AUTH_OPTION
@user_errors
def add(name: str, role: str, password_stdin: bool, auth_file: Path) -> None:
    """Add NAME to the auth file with ROLE, or set a new role and password for an existing NAME.

    The password is asked twice without echo (or read from stdin with --password-stdin) and
    stored as a salted scrypt hash; the file is created readable by you only (mode 600).
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Again: ") != password:
            raise click.ClickException("the two passwords differ; nothing was written")
    if auth_file.exists():
        auth.read_auth_file(auth_file)     # a damaged file is reported, not rewritten
    replaced = auth.add_user(auth_file, name, role, password)
    click.echo(f"{'Updated' if replaced else 'Added'} {name.strip()} ({role}) in {auth_file}; "
               f"start the app with `python launch.py --auth {auth_file}`.")
    for line in auth.file_warnings(auth_file, auth.read_auth_file(auth_file)):
        click.echo(f"Warning: {line}", err=True)


@users.command("list")
@AUTH_OPTION
@user_errors
def list_(auth_file: Path) -> None:
    """List the reviewers of the auth file with their role (passwords are never printed)."""
    found = auth.read_auth_file(auth_file)
    for u in found:
        click.echo(f"{u.name}\t{u.role}" + ("\t(clear-text password: run `users add` again to hash it)"
                                              if u.plain else ""))
    for line in auth.file_warnings(auth_file, found):
        click.echo(f"Warning: {line}", err=True)
