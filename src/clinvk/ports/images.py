"""Port: downloading an image a request names by URL."""

from __future__ import annotations

from typing import Protocol

from clinvk.domain.models import ImageInput


class ImageFetcher(Protocol):
    """Fetches a remote (http/https) image."""

    async def fetch(self, url: str, *, max_bytes: int) -> ImageInput:
        """The image at `url`; raise InvalidRequest when it cannot be had, TooLarge when it
        is over `max_bytes`."""
        ...
