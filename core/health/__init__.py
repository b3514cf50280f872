"""Signals about the data itself, read from what snapshots record (no repository access here)."""
