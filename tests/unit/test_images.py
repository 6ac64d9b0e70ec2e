"""Images: the limits and checks every request's images go through (domain), the URL fetcher
(a real local HTTP server), and the slots that keep an image's place in the prompt."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clinvk.adapters.http.images import ImageSlots
from clinvk.adapters.image_fetch import UrlImageFetcher
from clinvk.domain.config import ServerConfig
from clinvk.domain.errors import InvalidRequest, TooLarge
from clinvk.domain.images import resolve, sniff
from clinvk.domain.models import ImageInput
from tests.fakes import FakeImageFetcher
from tests.support.images import data_url, png_b64, png_bytes

pytestmark = pytest.mark.anyio

LIMITS = ServerConfig(max_images=2, max_image_bytes=200)
FETCHING = ServerConfig(max_images=2, max_image_bytes=200, fetch_remote_images=True)


@pytest.mark.parametrize(
    ("data", "media_type"),
    [(png_bytes(), "image/png"), (b"\xff\xd8\xff\xe0jfif", "image/jpeg"),
     (b"GIF87a....", "image/gif"), (b"GIF89a....", "image/gif"),
     (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"), (b"%PDF-1.4", None), (b"", None)],
)
def test_sniff_reads_the_type_from_the_bytes(data, media_type):
    """PNG, JPEG, GIF and WebP are told by their first bytes; anything else is None."""
    assert sniff(data) == media_type


async def test_resolve_takes_inline_images_and_reads_their_type():
    """Inline images pass with the type their bytes have (over a declared one)."""
    out = await resolve([ImageInput(data=png_bytes()),
                         ImageInput(media_type="image/jpeg", data=png_bytes())], LIMITS, None)
    assert [im.media_type for im in out] == ["image/png", "image/png"]


@pytest.mark.parametrize(
    ("images", "error", "field"),
    [([ImageInput(data=png_bytes())] * 3, InvalidRequest, "images"),
     ([ImageInput(data=png_bytes() + b"\x00" * 200)], TooLarge, "images.0"),
     ([ImageInput(data=b"%PDF-1.4")], InvalidRequest, "images.0"),
     ([ImageInput()], InvalidRequest, "images.0"),
     ([ImageInput(url="https://example.com/a.png")], InvalidRequest, "images.0"),
     ([ImageInput(url="file:///etc/passwd")], InvalidRequest, "images.0"),
     ([ImageInput(data=png_bytes(), url="https://example.com/a.png")], InvalidRequest,
      "images.0")],
)
async def test_resolve_refuses_what_cannot_go(images, error, field):
    """Too many, too large, not an image, empty, remote while fetching is off, another
    scheme, or both data and url: refused, naming the field."""
    with pytest.raises(error) as info:
        await resolve(images, LIMITS, FakeImageFetcher(png_bytes()))
    assert info.value.field == field


async def test_resolve_fetches_remote_images_only_when_allowed():
    """With fetching on, a URL is fetched through the port and checked like inline data."""
    fetcher = FakeImageFetcher(png_bytes())
    out = await resolve([ImageInput(url="https://example.com/a.png")], FETCHING, fetcher)
    assert out == (ImageInput(media_type="image/png", data=png_bytes()),)
    assert fetcher.urls == ["https://example.com/a.png"]
    with pytest.raises(InvalidRequest, match="server.fetch_remote_images"):
        await resolve([ImageInput(url="https://example.com/a.png")], LIMITS, fetcher)
    assert fetcher.urls == ["https://example.com/a.png"]


# -- the URL fetcher, against a real local server ---------------------------------------------


@pytest.fixture
def image_server() -> Iterator[str]:
    """A local HTTP server: /ok.png (a PNG), /big.png (over 200 bytes), /missing (404)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            body = {"/ok.png": png_bytes(), "/big.png": png_bytes() + b"\x00" * 500}.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_url_fetcher_downloads_an_image(image_server):
    """The fetcher returns the bytes and their type."""
    image = await UrlImageFetcher().fetch(image_server + "/ok.png", max_bytes=200)
    assert image == ImageInput(media_type="image/png", data=png_bytes())


async def test_url_fetcher_stops_at_the_size_limit(image_server):
    """A download over the limit is a TooLarge (413), read no further than the limit."""
    with pytest.raises(TooLarge):
        await UrlImageFetcher().fetch(image_server + "/big.png", max_bytes=200)


async def test_url_fetcher_reports_a_failed_download(image_server):
    """A 404 (or an unreachable host) is a 400 saying the image could not be fetched."""
    with pytest.raises(InvalidRequest, match="could not be fetched"):
        await UrlImageFetcher().fetch(image_server + "/missing", max_bytes=200)


# -- slots ------------------------------------------------------------------------------------


def test_slots_number_the_images_the_prompt_keeps_in_order():
    """Only images whose token is in the final prompt go to the run, numbered by where they
    appear; an image named twice is sent once."""
    slots = ImageSlots(ServerConfig())
    dropped = slots.url(data_url((1, 1, 1)), "a")
    first = slots.base64("image/png", png_b64((2, 2, 2)), "b")
    second = slots.url(data_url((3, 3, 3)), "c")
    assert dropped != first != second
    prompt, images = slots.finish(f"see {second} and {first}, again {second}")
    assert prompt == "see [image 1] and [image 2], again [image 1]"
    assert [im.data for im in images] == [png_bytes((3, 3, 3)), png_bytes((2, 2, 2))]


def test_slots_leave_text_that_only_looks_like_a_token():
    """A client's own text shaped like a token is not an image (the token holds a random
    nonce)."""
    slots = ImageSlots(ServerConfig())
    slots.url(data_url(), "a")
    prompt, images = slots.finish("<clinvk-image-000000000000-0>")
    assert prompt == "<clinvk-image-000000000000-0>" and images == []


async def test_a_failed_fetch_names_the_image(image_server):
    """A remote image that cannot be had, or is too large, is refused naming `images.N`."""
    images = [ImageInput(url=image_server + "/ok.png"), ImageInput(url=image_server + "/x")]
    with pytest.raises(InvalidRequest, match="could not be fetched") as info:
        await resolve(images, FETCHING, UrlImageFetcher())
    assert info.value.field == "images.1"
    with pytest.raises(TooLarge) as too_big:
        await resolve([ImageInput(url=image_server + "/big.png")], FETCHING, UrlImageFetcher())
    assert too_big.value.field == "images.0"
