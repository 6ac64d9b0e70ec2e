"""Images in chat requests (an Anthropic `image` block, an OpenAI `image_url` or
`input_image` part), shared by the dialects.

Each image becomes a slot: a token placed in the message text where the image was. Once
the prompt is rendered (and, for a continued session, cut down to the new turns), `finish`
keeps the images whose token made it into the prompt, in the order they appear, and writes
`[image N]` in place of each token, N counting from 1 in the list the CLI is given.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from clinvk.domain.config import ServerConfig
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.images import (
    EXTENSIONS,
    check_count,
    placeholder,
    remote_refused,
    sniff,
    too_large,
)
from clinvk.domain.models import ImageInput

#: A slot's token in the message text: the request's nonce and the slot's index (one
#: pattern for every request: compiling one per request cost more than the rest of it).
_TOKEN = re.compile(r"<clinvk-image-([0-9a-f]+)-(\d+)>")
_SUPPORTED = "PNG, JPEG, GIF or WebP (image/png, image/jpeg, image/gif, image/webp)"


class ImageSlots:
    """The images of one request, in the order their messages name them."""

    def __init__(self, server: ServerConfig) -> None:
        self._server = server
        self._nonce = secrets.token_hex(6)
        self._images: list[ImageInput] = []

    def __len__(self) -> int:
        return len(self._images)

    def _slot(self, image: ImageInput, where: str) -> str:
        self._images.append(image)
        check_count(len(self._images), self._server, where)
        return f"<clinvk-image-{self._nonce}-{len(self._images) - 1}>"

    def base64(self, media_type: str | None, data: str | None, where: str) -> str:
        """A slot for a base64 image; its text token."""
        if media_type not in EXTENSIONS:
            raise InvalidRequest(
                f"{where}: image media type {media_type!r} is not supported; send {_SUPPORTED}",
                field=where,
            )
        raw = self._decode(data, where)
        # What the bytes are wins over what the request said (the CLIs go by the file).
        actual = sniff(raw)
        if actual is None:
            raise InvalidRequest(
                f"{where}: the data is not a PNG, JPEG, GIF or WebP image", field=where
            )
        return self._slot(ImageInput(media_type=actual, data=raw), where)

    def url(self, url: str, where: str) -> str:
        """A slot for an image URL: a `data:` URL, or http(s) (fetched by the service when
        `server.fetch_remote_images` is on, else refused here)."""
        if url.startswith("data:"):
            header, sep, payload = url[5:].partition(",")
            media_type, *params = header.split(";")
            if not sep or "base64" not in params:
                raise InvalidRequest(
                    f"{where}: a data: URL image must be base64 (data:image/png;base64,...)",
                    field=where,
                )
            return self.base64(media_type.strip().lower() or None, payload, where)
        if url.startswith(("http://", "https://")):
            if not self._server.fetch_remote_images:
                raise remote_refused(where)
            return self._slot(ImageInput(url=url), where)
        raise InvalidRequest(
            f"{where}: an image URL must be a data: URL or an http(s) URL", field=where
        )

    def _decode(self, data: str | None, where: str) -> bytes:
        text = (data or "").strip()
        limit = self._server.max_image_bytes
        # Refuse before decoding: base64 holds 3 bytes per 4 characters.
        estimate = len(text) * 3 // 4
        if estimate > limit + 2:
            raise too_large(where, estimate, limit)
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):  # ValueError: non-ASCII "base64"
            raise InvalidRequest(f"{where}: image data is not valid base64", field=where) from None
        if not raw:
            raise InvalidRequest(f"{where}: the image is empty", field=where)
        if len(raw) > limit:
            raise too_large(where, len(raw), limit)
        return raw

    def finish(self, prompt: str) -> tuple[str, list[ImageInput]]:
        """The prompt with `[image N]` for each token, and the images it names, in order."""
        if not self._images:
            return prompt, []
        used: list[ImageInput] = []
        numbers: dict[int, int] = {}

        def number(match: re.Match[str]) -> str:
            if match.group(1) != self._nonce:
                return match.group(0)
            index = int(match.group(2))
            if index not in numbers:
                numbers[index] = len(used)
                used.append(self._images[index])
            return placeholder(numbers[index])

        return _TOKEN.sub(number, prompt), used

