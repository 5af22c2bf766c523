"""Genesys: a coding assistant that gets better from its own use."""

__version__ = "0.1.0"
