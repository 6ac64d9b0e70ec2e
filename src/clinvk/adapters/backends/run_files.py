"""The files one run hands its CLI (images, an output schema): written into a private
per-run folder (0700, each file 0600) and removed with it when the run ends, however it
ends."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from clinvk.domain.images import EXTENSIONS
from clinvk.domain.models import RunSpec

_encode = msgspec.json.Encoder().encode


class RunFiles(msgspec.Struct, frozen=True, kw_only=True):
    """Paths of one run's files; empty when the run has none."""

    folder: str | None = None
    #: One path per image of the spec, in order.
    images: tuple[str, ...] = ()
    #: The spec's output schema as a JSON file.
    output_schema: str | None = None


NO_FILES = RunFiles()


def needs_files(spec: RunSpec) -> bool:
    """Whether the run has files to hand over."""
    return bool(spec.images) or spec.output_schema is not None


def _name(i: int, media_type: str | None) -> str:
    return f"image-{i + 1}{EXTENSIONS.get(media_type or '', '.img')}"


def placeholders(spec: RunSpec) -> RunFiles:
    """The files as they would be named, without writing anything (dry runs)."""
    if not needs_files(spec):
        return NO_FILES
    folder = "<run-folder>"
    return RunFiles(
        folder=folder,
        images=tuple(f"{folder}/{_name(i, im.media_type)}" for i, im in enumerate(spec.images)),
        output_schema=f"{folder}/schema.json" if spec.output_schema is not None else None,
    )


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@contextmanager
def run_files(spec: RunSpec, *, parent: str | None = None) -> Iterator[RunFiles]:
    """Write the spec's files into a fresh private folder; remove it on exit."""
    if not needs_files(spec):
        yield NO_FILES
        return
    folder = tempfile.mkdtemp(prefix="clinvk-run-", dir=parent)  # mode 0700
    try:
        images = []
        for i, image in enumerate(spec.images):
            path = os.path.join(folder, _name(i, image.media_type))
            _write(path, image.data)
            images.append(path)
        schema = None
        if spec.output_schema is not None:
            schema = os.path.join(folder, "schema.json")
            _write(schema, _encode(spec.output_schema))
        yield RunFiles(folder=folder, images=tuple(images), output_schema=schema)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
