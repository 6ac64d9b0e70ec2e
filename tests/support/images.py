"""A real image for tests: a 1x1 PNG (what a model API would accept), as bytes and base64."""

from __future__ import annotations

import base64
import struct
import zlib


def png_bytes(rgb: tuple[int, int, int] = (0, 255, 0)) -> bytes:
    """A valid 1x1 PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + bytes(rgb))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def png_b64(rgb: tuple[int, int, int] = (0, 255, 0)) -> str:
    """The PNG as base64 text."""
    return base64.b64encode(png_bytes(rgb)).decode()


def data_url(rgb: tuple[int, int, int] = (0, 255, 0)) -> str:
    """The PNG as a data: URL."""
    return "data:image/png;base64," + png_b64(rgb)
