"""The ``agent-messaging`` command line (typer + rich): an optional layer over the library.

Nothing in the library imports it. :data:`app` is the typer application;
:func:`main` is the console-script entry point.
"""

from .app import app, main

__all__ = ["app", "main"]
