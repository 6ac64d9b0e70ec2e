"""UrlImageFetcher: the ImageFetcher port over the standard library's HTTP client."""

from __future__ import annotations

import urllib.error
import urllib.request

import anyio

from clinvk.domain.errors import InvalidRequest
from clinvk.domain.images import EXTENSIONS, sniff, too_large
from clinvk.domain.models import ImageInput

#: Seconds one download may take, connection included.
FETCH_TIMEOUT_SECS = 20.0


class UrlImageFetcher:
    """Downloads http(s) images in a worker thread, reading no more than the size limit."""

    def __init__(self, timeout_secs: float = FETCH_TIMEOUT_SECS) -> None:
        self._timeout = timeout_secs

    async def fetch(self, url: str, *, max_bytes: int) -> ImageInput:
        """The image at `url` (see the port)."""
        return await anyio.to_thread.run_sync(self._fetch, url, max_bytes, abandon_on_cancel=True)

    def _fetch(self, url: str, max_bytes: int) -> ImageInput:
        if not url.startswith(("http://", "https://")):
            raise InvalidRequest("image url: only http(s) URLs are fetched", field="images")
        request = urllib.request.Request(url, headers={"User-Agent": "clinvk"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                data = response.read(max_bytes + 1)
                declared = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the error response open
            raise InvalidRequest(
                f"image url {url!r} could not be fetched: HTTP {exc.code}", field="images"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise InvalidRequest(
                f"image url {url!r} could not be fetched: {getattr(exc, 'reason', exc)}",
                field="images",
            ) from None
        if len(data) > max_bytes:
            raise too_large("image url", len(data), max_bytes)
        media_type = declared if declared in EXTENSIONS else sniff(data)
        return ImageInput(media_type=media_type, data=data)  # type: ignore[arg-type]
