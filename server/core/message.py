"""An update encoded once: its JSON and its RFC 6455 text frame, the same bytes for every client.

The hub builds one `Message` per change; server/web/wire.py writes its frame to each connection as is. Framing
is plain bytes (no Tornado here): only the writing goes past Tornado's API, and that stays in server/web/wire.py.
"""

from __future__ import annotations

from dataclasses import dataclass


def ws_text_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 1 << 16:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


@dataclass(frozen=True)
class Message:
    """An encoded message: the JSON text (for the write_message fallback) and its ready-made frame."""

    payload: bytes
    frame: bytes

    @classmethod
    def of(cls, payload: bytes) -> Message:
        return cls(payload, ws_text_frame(payload))
