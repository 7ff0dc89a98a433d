"""Module-level storage helpers: directories, data set names, reading and writing files."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tifffile

from concert_core.helpers import ImageWithMetadata


def _mode(rights: str | int) -> int:
    if isinstance(rights, int):
        return rights
    return int(rights, 8)


def create_directory(directory: str, rights: str | int = "750") -> None:
    """Create ``directory`` and every missing parent with ``rights`` (octal string like
    ``"750"`` for user, group, others; not reduced by the umask)."""
    mode = _mode(rights)
    missing = []
    path = os.path.abspath(directory)
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            continue
        os.chmod(path, mode)


def split_dsetformat(dsetname: str) -> str:
    """The data set name of a file name template: the part before its format field,
    without trailing separators (``"frame_{:>06}.tif"`` -> ``"frame"``); a name
    without format field loses its extension (``"stack.tif"`` -> ``"stack"``)."""
    if "{" in dsetname:
        return dsetname.split("{", 1)[0].rstrip("_-. ") or dsetname.split("{", 1)[0]
    return os.path.splitext(dsetname)[0]


def _page_metadata(page: Any) -> dict[str, Any]:
    description = getattr(page, "description", "") or ""
    if description.startswith("{"):
        try:
            value = json.loads(description)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def read_tiff(file_name: str) -> ImageWithMetadata:
    """Read a TIFF file: one page gives the 2D image with its metadata, several pages
    the stack with ``metadata["pages"]``, the list of the pages' metadata."""
    with tifffile.TiffFile(file_name) as tiff:
        pages = list(tiff.pages)
        if len(pages) == 1:
            return ImageWithMetadata(pages[0].asarray(), _page_metadata(pages[0]))
        stack = np.stack([page.asarray() for page in pages])
        return ImageWithMetadata(stack, {"pages": [_page_metadata(page) for page in pages]})


def read_image(filename: str) -> ImageWithMetadata:
    """Read an image, the format chosen by the extension (TIFF, ``.npy``)."""
    extension = os.path.splitext(filename)[1].lower()
    if extension in (".tif", ".tiff"):
        return read_tiff(filename)
    if extension == ".npy":
        return ImageWithMetadata(np.load(filename, allow_pickle=False))
    raise ValueError(f"unsupported image format {extension!r} of {filename}")


def write_tiff(file_name: str, data: Any) -> str:
    """Write ``data`` (a frame or a stack of pages) as one TIFF file, its metadata as
    JSON in the description; written under a temporary name, renamed when complete.
    Returns ``file_name``."""
    from walkers.writers import TiffWriter

    writer = TiffWriter(file_name, bytes_per_file=np.asarray(data).nbytes)
    try:
        writer.write(data)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return file_name


__all__ = ["create_directory", "read_image", "read_tiff", "split_dsetformat", "write_tiff"]
