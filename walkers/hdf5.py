"""The :class:`HDF5Walker`: groups of one HDF5 file, one chunked dataset per sequence."""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
from collections.abc import AsyncIterable, Coroutine, Iterable, Mapping
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from walkers.base import (
    DatasetExistsError,
    LoggingHandlerCloser,
    PathError,
    StorageError,
    Walker,
    attach_handler,
    open_log_file,
)
from walkers.storage import create_directory
from walkers.writers import metadata_of, write_sequence

#: Suffix of the string dataset holding the per-frame metadata (JSON) of a sequence.
METADATA_SUFFIX = "_metadata"


def compression_options(compression: Any) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords for ``compression``: ``None``, ``"gzip"``
    (optionally ``"gzip:LEVEL"``), ``"lzf"``, ``"lz4"``, ``"bitshuffle"`` (with LZ4),
    ``"zstd"``, ``"blosc"``, an hdf5plugin filter object or a mapping of keywords."""
    if compression is None:
        return {}
    if isinstance(compression, Mapping):
        return dict(compression)
    if not isinstance(compression, str):
        return {"compression": compression}  # an hdf5plugin filter
    name, _, level = compression.lower().partition(":")
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": int(level or 4)}
    if name == "lzf":
        return {"compression": "lzf"}
    plugins = {
        "lz4": hdf5plugin.LZ4,
        "bitshuffle": hdf5plugin.Bitshuffle,
        "zstd": hdf5plugin.Zstd,
        "blosc": hdf5plugin.Blosc,
    }
    if name not in plugins:
        raise ValueError(
            f"unknown compression {compression!r}; use one of gzip, lzf, {', '.join(plugins)}"
        )
    return {"compression": plugins[name]()}


def _attribute(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) and not isinstance(value, np.generic):
        return value
    return json.dumps(value, default=str)


#: Frames whose metadata strings are buffered and then written as one block (also the
#: chunk size of the metadata dataset): a variable-length string write costs ~0.2 ms
#: mostly per call, so one per frame was most of the walker's own per-frame time.
METADATA_BLOCK = 256
#: Frames the data set is first sized for; it doubles whenever it is full.
_INITIAL_CAPACITY = 16


class _Sequence:
    """Writes one sequence to ``group/name`` (synchronous, runs in the writer thread).

    Data go to temporary datasets, renamed to ``name`` and ``name_metadata`` on
    success and deleted on failure. A frame without compression goes to disk in one
    ``write_direct_chunk`` of its own buffer (no copy, no GIL held); the metadata
    strings are written in blocks of :data:`METADATA_BLOCK` and at :meth:`close`.
    """

    def __init__(self, group: h5py.Group, name: str, options: dict[str, Any],
                 file: h5py.File | None = None) -> None:
        self.group = group
        self.file = file  # closed at the end instead of flushed, if given
        self.name = name
        self.options = options
        self.temporary = f".{name}.part"
        self.meta_temporary = f".{name}{METADATA_SUFFIX}.part"
        self.data: h5py.Dataset | None = None
        self.meta: h5py.Dataset | None = None
        self.count = 0
        self.capacity = 0
        self.constant: dict[str, Any] | None = None
        self._direct = not options
        self._frame: tuple[tuple[int, ...], np.dtype] | None = None
        self._zeros: tuple[int, ...] = ()
        self._pending: list[str] = []  # JSON metadata of the last frames, not in meta yet
        self._meta_count = 0  # strings in meta

    def _create(self, array: np.ndarray) -> None:
        for name in (self.temporary, self.meta_temporary):
            if name in self.group:
                del self.group[name]  # left over by a crash: never published
        self.data = self.group.create_dataset(
            self.temporary,
            shape=(0, *array.shape),
            maxshape=(None, *array.shape),
            chunks=(1, *array.shape) if array.size else None,
            dtype=array.dtype,
            **self.options,
        )
        self.meta = self.group.create_dataset(
            self.meta_temporary,
            shape=(0,),
            maxshape=(None,),
            chunks=(METADATA_BLOCK,),
            dtype=h5py.string_dtype(),
        )
        self._direct = self._direct and array.size > 0
        self._frame = (array.shape, array.dtype)
        self._zeros = (0,) * array.ndim

    def write(self, image: Any) -> int:
        array = np.ascontiguousarray(image)  # a received frame is contiguous: no copy
        if self.data is None:
            self._create(array)
        data = self.data
        assert data is not None and self._frame is not None
        if array.shape != self._frame[0] or array.dtype != self._frame[1]:
            raise StorageError(
                f"frame {self.count} is {array.dtype} {array.shape}, the sequence "
                f"{self.name!r} holds {data.dtype} {data.shape[1:]}"
            )
        if self.count >= self.capacity:
            self.capacity = max(_INITIAL_CAPACITY, 2 * self.capacity)
            data.resize(self.capacity, axis=0)
        if self._direct:
            data.id.write_direct_chunk((self.count, *self._zeros), array.data)
        else:
            data[self.count] = array
        metadata = metadata_of(image)
        self._pending.append(json.dumps(metadata, default=str))
        if self.constant is None:
            self.constant = metadata
        elif self.constant:
            self.constant = {
                key: value
                for key, value in self.constant.items()
                if key in metadata and metadata[key] == value
            }
        self.count += 1
        if len(self._pending) >= METADATA_BLOCK:
            self._flush_metadata()
        return array.nbytes

    def _flush_metadata(self) -> None:
        """Append the buffered metadata strings to the metadata dataset."""
        if not self._pending:
            return
        assert self.meta is not None
        start, stop = self._meta_count, self._meta_count + len(self._pending)
        self.meta.resize(stop, axis=0)
        self.meta[start:stop] = np.array(self._pending, dtype=object)
        self._meta_count = stop
        self._pending = []

    def close(self) -> None:
        if self.data is None:  # no frame: nothing to publish
            if self.file is not None:
                self.file.close()
            return
        if self.name in self.group or self.name + METADATA_SUFFIX in self.group:
            self.abort()
            raise DatasetExistsError(f"{self.name!r} appeared while it was being written")
        self._flush_metadata()
        self.data.resize(self.count, axis=0)
        self.data.attrs["metadata_dataset"] = self.name + METADATA_SUFFIX
        for key, value in (self.constant or {}).items():
            self.data.attrs[key] = _attribute(value)
        self.group.move(self.temporary, self.name)
        self.group.move(self.meta_temporary, self.name + METADATA_SUFFIX)
        self._end()

    def abort(self) -> None:
        self._pending = []
        if not self.group:
            return  # the file is closed already
        for name in (self.temporary, self.meta_temporary):
            if name in self.group:
                del self.group[name]
        self._end()

    def _end(self) -> None:
        """Flush the file, or close it if this sequence owns it (in the writer thread:
        the owner needs no thread hand-over of its own for it)."""
        if self.file is None:
            self.group.file.flush()
        else:
            self.file.close()


class HDF5Walker(Walker):
    """Moves through the groups of the HDF5 file ``root_file`` (created if missing)
    and writes each sequence as one dataset, chunked by frame and resizable along
    the frames, optionally compressed (see :func:`compression_options`).

    The metadata of every frame are kept as JSON strings in the dataset
    ``<name>_metadata`` aligned with the frames; metadata equal in all frames are
    also attributes of the data set. :meth:`log_to_json` stores its payload as an
    attribute of the current group. Call :meth:`close` when done.
    """

    async def __ainit__(
        self, root_file: str, dsetname: str = "frames", compression: Any = None,
        close_after_sequence: bool = False,
    ) -> None:
        await super().__ainit__("/", dsetname)
        self.filename = os.path.abspath(root_file)
        self.options = compression_options(compression)
        #: True: the file is closed as soon as a sequence has been written (or aborted),
        #: for a file that holds one sequence.
        self.close_after_sequence = close_after_sequence
        #: Whether opening created the file (it did not exist before).
        self.created = False
        self.file: h5py.File = await asyncio.to_thread(self._open)

    def _open(self) -> h5py.File:
        """Create the missing directories and open (or create) the file; one thread
        hand-over for all of it, as a remote walker opens a file per sequence."""
        create_directory(os.path.dirname(self.filename))
        self.created = not os.path.lexists(self.filename)
        return h5py.File(self.filename, "a")

    def _path(self, *names: str) -> str:
        return posixpath.join(self._current, *names)

    async def _descend(self, name: str) -> None:
        path = self._path(name)
        await asyncio.to_thread(self.file.require_group, path)
        self._current = path

    async def _ascend(self) -> None:
        self._current = posixpath.dirname(self._current) or "/"

    async def exists(self, *paths: str) -> bool:
        """Whether ``paths`` joined below the current group exist in the file."""
        path = self._path(*paths)
        return await asyncio.to_thread(lambda: path in self.file)

    async def _create_writer(
        self, producer: AsyncIterable[Any] | Iterable[Any], dsetname: str
    ) -> Coroutine[Any, Any, int]:
        if not dsetname or "/" in dsetname or "\0" in dsetname or dsetname in (".", ".."):
            raise PathError(f"invalid data set name {dsetname!r}")
        if self._current == "/":  # the file's root group: no lookup to make
            group: h5py.Group = self.file
        else:
            group = await asyncio.to_thread(self.file.require_group, self._current)
        if dsetname in group or dsetname + METADATA_SUFFIX in group:
            raise DatasetExistsError(
                f"data set {dsetname!r} exists already in {self.filename}:{self._current}; "
                "refusing to overwrite it"
            )
        sink = _Sequence(group, dsetname, self.options,
                         file=self.file if self.close_after_sequence else None)

        async def write() -> int:
            count = await write_sequence(producer, sink, on_written=self._count)
            self.sequences_written += 1
            return count

        return write()

    async def log_to_json(self, payload: Any, filename: str = "experiment.json") -> None:
        """Store ``payload`` (JSON text) as attribute ``filename`` of the current group."""
        text = payload if isinstance(payload, str) else json.dumps(payload)
        path = self._current

        def store() -> None:
            self.file.require_group(path).attrs[filename] = text
            self.file.flush()

        await asyncio.to_thread(store)

    async def register_logger(
        self, logger_name: str, log_level: int, file_name: str
    ) -> LoggingHandlerCloser:
        """Append the records of ``logger_name`` to ``file_name`` next to the HDF5 file."""
        if "/" in file_name or not file_name:
            raise PathError(f"invalid log file name {file_name!r}")
        path = os.path.join(os.path.dirname(self.filename), file_name)
        handler = await open_log_file(path, log_level)
        return attach_handler(logger_name, handler, log_level)

    async def close(self) -> None:
        """Close the file (nothing to do if it is closed already)."""
        if self.file.id.valid:
            await asyncio.to_thread(self.file.close)


def read_hdf5(filename: str, path: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Read the sequence at ``path`` of an HDF5 file written by :class:`HDF5Walker`:
    the frames and the list of their metadata."""
    with h5py.File(filename, "r") as file:
        data = file[path][()]
        meta_path = path + METADATA_SUFFIX
        metadata = (
            [json.loads(text) for text in file[meta_path].asstr()[()]] if meta_path in file else []
        )
    return data, metadata


__all__ = ["METADATA_BLOCK", "METADATA_SUFFIX", "HDF5Walker", "compression_options", "read_hdf5"]
