"""The Axisor Backup engine. Never imports textual, app or screens."""

__version__ = "0.1.0"
