"""What the app says in pop-ups (`gr.Info`, `gr.Warning`, `gr.Error`): one door, escaped, logged.

Gradio renders a toast's message as HTML, and these messages carry product ids, reviewer names,
version names and upload paths that anyone could have typed: every message leaves through here,
html-escaped, so markup in them shows as text. A user error (a name not typed, a product held by
another reviewer) is one line in the server console, never a traceback: tracebacks are for bugs.
"""
from __future__ import annotations

import html
import logging

import gradio as gr

log = logging.getLogger("labeler.app")


def safe(message: object) -> str:
    """The message as HTML text: `<img src=x>` arrives as `&lt;img src=x&gt;`. Quotes stay as
    they are (the toast puts the message in an element, never in an attribute)."""
    return html.escape(str(message), quote=False)


def one_line(message: object) -> str:
    """The message on one console line (a newline typed into a name cannot forge log lines)."""
    return " ".join(str(message).split())


def info(message: object) -> None:
    gr.Info(safe(message))


def warning(message: object) -> None:
    log.info("warning shown: %s", one_line(message))
    gr.Warning(safe(message))


def error(message: object) -> gr.Error:
    """The exception to raise for something the user must fix: `raise messages.error(...) from exc`.

    Logged here in one line; Gradio is told not to print its traceback."""
    log.warning("user error: %s", one_line(message))
    return gr.Error(safe(message), print_exception=False)
