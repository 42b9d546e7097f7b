"""Homeboard: a Raspberry Pi wall dashboard server."""

from server import leanimports as _leanimports  # noqa: F401 - first: keeps unused optional imports out (memory)

__version__ = "0.1.0"
