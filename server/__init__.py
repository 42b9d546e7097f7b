"""Homeboard: a Raspberry Pi wall dashboard server."""

__version__ = "0.1.0"
