"""Images given with a prompt: the limits every request obeys, and what each one is."""

from __future__ import annotations

import msgspec

from clinvk.domain.config import ServerConfig
from clinvk.domain.errors import InvalidRequest, TooLarge
from clinvk.domain.models import ImageInput
from clinvk.ports.images import ImageFetcher

#: File name extension per media type (gemini tells an image from a file by its name).
EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
}

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff(data: bytes) -> str | None:
    """The media type the bytes start like, or None."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def placeholder(index: int) -> str:
    """How the prompt text refers to the image at `index` (0-based) of the request."""
    return f"[image {index + 1}]"


def remote_refused(where: str) -> InvalidRequest:
    """The refusal of an http(s) image while `server.fetch_remote_images` is off."""
    return InvalidRequest(
        f"{where}: remote image URLs are not fetched (server.fetch_remote_images is off); "
        "send the image inline as base64 (a data: URL)",
        field=where,
    )


def too_large(where: str, size: int, limit: int) -> TooLarge:
    """The refusal of an image over `server.max_image_bytes`."""
    return TooLarge(
        f"{where}: image is {size} bytes, over the limit of {limit} "
        "(server.max_image_bytes)",
        field=where,
    )


def check_count(count: int, server: ServerConfig, where: str = "images") -> None:
    """Refuse more images than `server.max_images`."""
    if count > server.max_images:
        raise InvalidRequest(
            f"{where}: {count} images, more than the {server.max_images} allowed "
            "(server.max_images)",
            field=where,
        )


async def resolve(
    images: list[ImageInput], server: ServerConfig, fetcher: ImageFetcher | None
) -> tuple[ImageInput, ...]:
    """The request's images checked against the limits, remote ones downloaded, each with
    its media type; InvalidRequest / TooLarge naming `images.N` otherwise."""
    check_count(len(images), server)
    out: list[ImageInput] = []
    for i, image in enumerate(images):
        where = f"images.{i}"
        if image.url is not None:
            if image.data:
                raise InvalidRequest(f"{where}: give either data or url, not both", field=where)
            if not image.url.startswith(("http://", "https://")):
                raise InvalidRequest(f"{where}.url: only http(s) URLs are fetched", field=where)
            if not server.fetch_remote_images or fetcher is None:
                raise remote_refused(where)
            try:
                image = await fetcher.fetch(image.url, max_bytes=server.max_image_bytes)
            except InvalidRequest as exc:  # TooLarge stays TooLarge
                raise type(exc)(f"{where}: {exc.message}", field=where) from None
        if not image.data:
            raise InvalidRequest(f"{where}: the image is empty", field=where)
        if len(image.data) > server.max_image_bytes:
            raise too_large(where, len(image.data), server.max_image_bytes)
        # What the bytes are wins over what the request said (the CLIs go by the file).
        media_type = sniff(image.data)
        if media_type is None:
            raise InvalidRequest(f"{where}: not a PNG, JPEG, GIF or WebP image", field=where)
        out.append(msgspec.structs.replace(image, media_type=media_type, url=None))
    return tuple(out)
