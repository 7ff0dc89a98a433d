"""A lean writer of uncompressed grayscale TIFF pages: :class:`TiffPages`.

The walkers write a sequence as files of one frame each by default, so the cost of a
file's header is paid once per frame. tifffile spends about 0.3 ms of Python per page
on it (tag objects, seeks, several small writes), which is 15 % of writing a 2048x2048
uint16 frame into the page cache and most of writing a small one. This module writes
the same pages (the tags tifffile writes for ``photometric="minisblack"`` and
``metadata=None``, uncompressed, one strip) with one ``writev`` each: the IFD, its
values and the pixels straight from the frame's buffer.

Each page is a block of IFD, tag values and padding, followed by the pixels, aligned
to 16 bytes; every block is linked from the one before (the header's pointer for the
first). A frame of more than two dimensions becomes one page per 2-D plane, as
tifffile writes it, the description on the first. Frames this module cannot write
(:func:`can_write` is False: bool, complex, fewer than two dimensions, empty) are
left to tifffile by :class:`~walkers.writers.TiffWriter`. Reading is tifffile's.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from walkers.base import StorageError

#: Value of the Software tag of the pages written here.
SOFTWARE = b"concert-tango walkers"
_ALIGN = 16
#: Most buffers one writev takes.
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16
_SHORT, _LONG, _RATIONAL, _ASCII, _LONG8 = 3, 4, 5, 2, 16
_SIZES = {_SHORT: 2, _LONG: 4, _RATIONAL: 8, _ASCII: 1, _LONG8: 8}
_FORMATS = {_SHORT: "H", _LONG: "I", _RATIONAL: "II", _LONG8: "Q"}
#: SampleFormat per dtype kind.
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
_ITEMSIZES = {"u": (1, 2, 4, 8), "i": (1, 2, 4, 8), "f": (2, 4, 8)}


def can_write(array: np.ndarray) -> bool:
    """Whether :class:`TiffPages` writes ``array`` (integers or floats, at least two
    dimensions, not empty)."""
    kind, itemsize = array.dtype.kind, array.dtype.itemsize
    return (
        itemsize in _ITEMSIZES.get(kind, ())
        and array.ndim >= 2
        and array.size > 0
    )


class _Layout:
    """Sizes and packing of classic TIFF or BigTIFF."""

    def __init__(self, bigtiff: bool) -> None:
        self.bigtiff = bigtiff
        self.header_size = 16 if bigtiff else 8
        self.count = "Q" if bigtiff else "H"  # entries of an IFD
        self.entry = "HHQ" if bigtiff else "HHI"  # tag, type, count
        self.offset = "Q" if bigtiff else "I"
        self.offset_type = _LONG8 if bigtiff else _LONG
        self.value_size = 8 if bigtiff else 4  # value field of an entry, next-IFD pointer
        self.ifd_fixed = (8 if bigtiff else 2) + self.value_size  # count and pointer
        self.entry_size = 20 if bigtiff else 12
        self.limit = 2**64 - 1 if bigtiff else 2**32 - 1

    def header(self, first_ifd: int) -> bytes:
        if self.bigtiff:
            return struct.pack("<2sHHHQ", b"II", 43, 8, 0, first_ifd)
        return struct.pack("<2sHI", b"II", 42, first_ifd)


class TiffPages:
    """Writes pages to a new file ``path`` (created or truncated), classic TIFF or, with
    ``bigtiff``, BigTIFF. :meth:`append` adds the pages of a frame, :meth:`close` ends
    the file. Offsets beyond classic TIFF's 4 GiB raise :class:`StorageError` before
    anything of the frame is written."""

    #: Most bytes one system call is given (Linux writes at most 0x7ffff000 at once).
    max_write = 0x7FFFF000

    def __init__(self, path: str, bigtiff: bool = False) -> None:
        self._layout = _Layout(bigtiff)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self._end = 0  # bytes in the file
        self._link: int | None = None  # where the last page's next-IFD pointer is
        self.pages = 0

    def append(self, array: np.ndarray, description: str = "") -> int:
        """Write the planes of ``array`` as pages, ``description`` (ASCII) on the first;
        return the number of pixel bytes written."""
        if self._fd is None:
            raise StorageError("the TIFF file is closed")
        if not can_write(array):
            raise StorageError(
                f"a frame of dtype {array.dtype} and shape {array.shape} cannot be a page of "
                "this TIFF file (integer or float frames of two or more dimensions only)"
            )
        little = array.dtype.newbyteorder("<")
        if array.dtype != little:
            array = array.astype(little)
        planes = np.ascontiguousarray(array).reshape(-1, *array.shape[-2:])
        text = description.encode("ascii")
        layout = self._layout
        # The frame's pages are laid out first, linked to each other, then written
        # together: a frame refused for its size leaves nothing of it in the file.
        pieces: list[Any] = [] if self._end else [layout.header(layout.header_size)]
        pack_offset = struct.Struct("<" + layout.offset).pack
        end = self._end or layout.header_size
        first = end
        last: tuple[bytearray, int, int] | None = None  # block, its offset, its pointer's
        for number, plane in enumerate(planes):
            block, data_offset, pointer = self._block(plane, text if number == 0 else b"", end)
            if last is not None:  # the previous plane's page points to this one
                last[0][last[2]:last[2] + layout.value_size] = pack_offset(end)
            pieces += [block, memoryview(plane.reshape(-1).view(np.uint8))]
            last = (block, end, pointer)
            end = data_offset + plane.nbytes
        if end > layout.limit:
            raise StorageError(
                f"the TIFF file would grow beyond {layout.limit} bytes: write BigTIFF "
                "(a larger bytes_per_file or bigtiff_threshold)"
            )
        self._write_all(pieces)
        if self._link is not None:  # the file's last page points to the frame's first
            os.pwrite(self._fd, pack_offset(first), self._link)
        assert last is not None
        self._end, self._link = end, last[1] + last[2]
        self.pages += len(planes)
        return planes.nbytes

    def _block(
        self, plane: np.ndarray, description: bytes, start: int
    ) -> tuple[bytearray, int, int]:
        """The IFD of ``plane`` at ``start`` with its values: ``(bytes up to the pixels,
        offset of the pixels in the file, offset of the next-IFD pointer in the block)``."""
        layout = self._layout
        height, width = plane.shape
        dtype = plane.dtype
        entries: list[tuple[int, int, int, Any]] = [
            (256, _LONG, 1, width),
            (257, _LONG, 1, height),
            (258, _SHORT, 1, dtype.itemsize * 8),
            (259, _SHORT, 1, 1),  # no compression
            (262, _SHORT, 1, 1),  # min is black
        ]
        if description:
            entries.append((270, _ASCII, len(description) + 1, description + b"\0"))
        entries += [
            (273, layout.offset_type, 1, None),  # StripOffsets: set below
            (277, _SHORT, 1, 1),
            (278, _LONG, 1, height),
            (279, layout.offset_type, 1, plane.nbytes),
            (282, _RATIONAL, 1, (1, 1)),
            (283, _RATIONAL, 1, (1, 1)),
            (296, _SHORT, 1, 1),  # no resolution unit
            (305, _ASCII, len(SOFTWARE) + 1, SOFTWARE + b"\0"),
            (339, _SHORT, 1, _SAMPLE_FORMAT[dtype.kind]),
        ]
        ifd_end = start + layout.ifd_fixed + len(entries) * layout.entry_size
        # values too long for their entry go after the IFD, each at an even offset
        extra = bytearray()
        placed: dict[int, int] = {}
        for tag, kind, count, value in entries:
            if value is None or _SIZES[kind] * count <= layout.value_size:
                continue
            placed[tag] = ifd_end + len(extra)
            extra += value if kind == _ASCII else struct.pack("<" + _FORMATS[kind], *value)
            if len(extra) % 2:
                extra += b"\0"
        data_offset = -(-(ifd_end + len(extra)) // _ALIGN) * _ALIGN
        extra += bytes(data_offset - ifd_end - len(extra))
        ifd = bytearray(struct.pack("<" + layout.count, len(entries)))
        for tag, kind, count, value in entries:
            if tag == 273:
                value = data_offset
            if tag in placed:
                field = struct.pack("<" + layout.offset, placed[tag])
            elif kind == _ASCII:
                field = value
            elif kind == _RATIONAL:
                field = struct.pack("<II", *value)
            else:
                field = struct.pack("<" + _FORMATS[kind], value)
            ifd += struct.pack("<" + layout.entry, tag, kind, count)
            ifd += field.ljust(layout.value_size, b"\0")
        pointer = len(ifd)
        ifd += bytes(layout.value_size)  # no next IFD (yet)
        return ifd + extra, data_offset, pointer

    def _write_all(self, pieces: list[Any]) -> None:
        """Write ``pieces`` at the end of the file, resuming after partial writes."""
        views = [memoryview(piece).cast("B") for piece in pieces]
        while views:
            batch = views[:_IOV_MAX]
            if sum(len(view) for view in batch) <= self.max_write:
                written = os.writev(self._fd, batch)
            else:
                written = os.write(self._fd, views[0][: self.max_write])
            while views and written >= len(views[0]):
                written -= len(views.pop(0))
            if views:
                views[0] = views[0][written:]

    def close(self) -> None:
        """Close the file (it is complete after every :meth:`append`)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> TiffPages:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["SOFTWARE", "TiffPages", "can_write"]
