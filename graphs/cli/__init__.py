"""The `sopgraph` command line, a leaf package over the library: it imports graphs/, evals/ and below, and
nothing imports it back. `main` is the console script; commands live in app.py (runs and the graph-independent
ones), company.py, groupchat.py and evals*.py; common.py holds `fail()` and the shared options."""

from sopgraph.graphs.cli.app import app, main

__all__ = ["app", "main"]
