"""``python -m crawler`` runs the sgcrawl command line."""

from .cli import app

app()
