"""sgcrawl: a concurrent, polite, crash-safe web crawler (scatter/gather)."""

__version__ = "0.1.0"
