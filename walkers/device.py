"""The :class:`WalkerDevice`: a directory walker confined to a fixed root, as a concert
device. The ``ConcertWalker`` server publishes it through the generic bridge as the Tango
class ``DirectoryWalker`` (contract §8); :class:`walkers.remote.RemoteDirectoryWalker` is
its client.

Every name is checked before anything touches the disk: an empty name, a NUL, an absolute
path, a ``.``/``..`` component or a path that resolves (through symbolic links) outside
``root`` is refused with :class:`~walkers.base.PathError`, and nothing is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterable, Coroutine
from typing import Any, ClassVar

import pint

from concert_core.coroutines.base import background
from concert_core.dataplane import ImageReceiver, resolve_endpoint
from concert_core.devices.base import Device
from concert_core.errors import TransitionNotAllowed
from concert_core.parameter import Parameter, Quantity, Selection
from concert_core.quantities import q
from concert_core.state import State, check, transition
from walkers.base import PathError, Walker, open_log_file
from walkers.directory import DirectoryWalker
from walkers.hdf5 import HDF5Walker, compression_options
from walkers.storage import split_dsetformat

WRITER_CLASSES = ("TIFF", "HDF5")
#: Shortest interval between two announcements of the counters while writing (s).
_COUNTER_PERIOD = 0.2
_IDLE = check(source=["standby", "error"])


def _components(path: str) -> list[str]:
    """The components of a relative path; :class:`PathError` for anything suspicious."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise PathError(f"invalid name {path!r}: must be a non-empty string without NUL")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise PathError(f"invalid name {path!r}: absolute paths are not allowed")
    parts = path.replace("\\", "/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PathError(f"invalid name {path!r}: empty, '.' and '..' components are not allowed")
    return parts


class WalkerDevice(Device):
    """A directory walker below the fixed ``root`` that writes image streams it receives
    over the data plane (TIFF files or one HDF5 file per sequence).

    ``root`` is a Tango device property (``tango_properties``). With ``writer_class``
    HDF5 a sequence goes to ``<current>/<name>.h5``, dataset ``<name>``, where ``name`` is
    ``dsetname`` without its format field and extension (``frame_{:>06}.tif`` -> ``frame``).
    """

    tango_properties: ClassVar[dict[str, type]] = {"root": str}

    state = State(
        default="standby",
        help="standby: idle; running: writing a sequence; error: the last sequence failed "
        "(reason in Status; the next WriteSequence may start)",
    )
    current = Parameter(help="Current directory (absolute path on the server)")
    dsetname = Parameter(
        help="File name template of a sequence, e.g. frame_{:>06}.tif (HDF5: the data set "
        "name is its part before the format field)"
    )
    writer_class = Selection(WRITER_CLASSES, help="File format of sequences: TIFF or HDF5")
    bytes_per_file = Parameter(
        help="TIFF: bytes per multi-page file, 0 = one file per frame (BigTIFF when large)"
    )
    start_index = Parameter(help="TIFF: number of the first file of a sequence")
    compression = Parameter(help="HDF5 compression: '' (none), gzip, lzf, lz4, bitshuffle, zstd")
    stream_timeout = Quantity(
        q.s, lower=0.001 * q.s,
        help="A WriteSequence fails (DataPlaneTimeout) when no frame arrives for this long",
    )
    frames_received = Parameter(help="Frames received in the current (or last) sequence")
    frames_written = Parameter(help="Frames written in the current (or last) sequence")
    bytes_written = Parameter(help="Bytes written in the current (or last) sequence")
    write_rate = Quantity(
        q.MB / q.s, help="Write rate over the last second while writing, else the average "
        "of the last sequence"
    )
    errors = Parameter(help="Failed sequences plus malformed messages refused, since start")

    async def __ainit__(
        self,
        root: str = "",
        dsetname: str = "frame_{:>06}.tif",
        writer_class: str = "TIFF",
        start_index: int = 0,
        bytes_per_file: int = 0,
        compression: str = "",
        stream_timeout: pint.Quantity | str = "10 s",
        rights: str = "750",
    ) -> None:
        await super().__ainit__()
        if not root:
            raise ValueError("the walker needs a root directory (device property 'root')")
        root = os.path.expanduser(root)  # "~/data": the home of the user running the server
        if not os.path.isabs(root):
            raise PathError(f"root {root!r} must be an absolute path")
        self._walker = await DirectoryWalker(root=root, rights=rights)
        self._dsetname = ""
        self._writer_class = "TIFF"
        self._compression = ""
        await self._set_dsetname(dsetname)
        await self.set_writer_class(writer_class)
        await self._set_start_index(start_index)
        await self._set_bytes_per_file(bytes_per_file)
        await self._set_compression(compression)
        self._timeout = float(q.Quantity(stream_timeout).to(q.s).magnitude)
        self._task: asyncio.Task | None = None
        #: The receiver of the current (or last) sequence: its count is frames_received.
        self._receiver: ImageReceiver | None = None
        self._written = self._bytes = 0
        self._errors = 0
        self._rate = 0.0
        self._loggers: dict[str, logging.Handler] = {}
        self._logger_ids = itertools.count(1)

    @property
    def root(self) -> str:
        """The directory nothing is written outside of."""
        return self._walker.root

    def _inside(self, path: str) -> str:
        """The absolute path of ``path`` below the current directory, confined to root."""
        return self._walker._inside(*_components(path))

    # -- parameters ----------------------------------------------------------------------
    async def _get_current(self) -> str:
        return self._walker.current

    async def _get_dsetname(self) -> str:
        return self._dsetname

    async def _set_dsetname(self, value: str) -> None:
        if len(_components(value)) != 1:
            raise PathError(f"dsetname {value!r} must be a file name, not a path")
        if not split_dsetformat(value):
            raise PathError(f"dsetname {value!r} gives an empty data set name")
        self._dsetname = value

    async def _get_writer_class(self) -> str:
        return self._writer_class

    async def _set_writer_class(self, value: str) -> None:
        self._writer_class = value

    async def _get_bytes_per_file(self) -> int:
        return self._walker.bytes_per_file

    async def _set_bytes_per_file(self, value: int) -> None:
        if int(value) != value or value < 0:
            raise ValueError(f"bytes_per_file must be an integer >= 0, not {value!r}")
        self._walker.bytes_per_file = int(value)

    async def _get_start_index(self) -> int:
        return self._walker.start_index

    async def _set_start_index(self, value: int) -> None:
        if int(value) != value or value < 0:
            raise ValueError(f"start_index must be an integer >= 0, not {value!r}")
        self._walker.start_index = int(value)

    async def _get_compression(self) -> str:
        return self._compression

    async def _set_compression(self, value: str) -> None:
        compression_options(value or None)  # ValueError for an unknown filter
        self._compression = value

    async def _get_stream_timeout(self) -> pint.Quantity:
        return self._timeout * q.s

    async def _set_stream_timeout(self, value: pint.Quantity) -> None:
        self._timeout = float(value.to(q.s).magnitude)

    async def _get_frames_received(self) -> int:
        return self._frames_received()

    def _frames_received(self) -> int:
        receiver = self._receiver  # counted by the writer thread: read live
        return receiver.stream_received if receiver is not None else 0

    async def _get_frames_written(self) -> int:
        return self._written

    async def _get_bytes_written(self) -> int:
        return self._bytes

    async def _get_write_rate(self) -> pint.Quantity:
        return self._rate * q.MB / q.s

    async def _get_errors(self) -> int:
        return self._errors

    # -- moving --------------------------------------------------------------------------
    async def descend(self, name: str) -> str:
        """Descend to ``name`` (created if missing; may be nested: ``a/b``); return the
        new current directory."""
        _components(name)
        self._inside(name)
        await self._walker.descend(name)
        self["current"].notify(self._walker.current)
        return self._walker.current

    async def ascend(self) -> str:
        """Ascend one level (never above root); return the new current directory."""
        await self._walker.ascend()
        self["current"].notify(self._walker.current)
        return self._walker.current

    async def home(self) -> str:
        """Return to root; return it."""
        await self._walker.home()
        self["current"].notify(self._walker.current)
        return self._walker.current

    async def exists(self, path: str) -> bool:
        """Whether ``path`` (relative, may be nested) exists below the current directory."""
        full = self._inside(path)
        return await asyncio.to_thread(os.path.lexists, full)

    # -- writing -------------------------------------------------------------------------
    @background
    async def write_sequence(self, endpoint: str) -> None:
        """Connect to the image stream at ``endpoint`` and write it here (``dsetname``,
        ``writer_class``) until its end; returns once started (state running). Refuses
        an existing data set before anything is written."""
        await _IDLE.verify_source(self, "write_sequence")
        if self._task is not None:
            raise TransitionNotAllowed("a sequence is being written; Cancel it first")
        resolve_endpoint(endpoint, bind=False)
        receiver = ImageReceiver(endpoint, timeout=self._timeout)
        try:
            walker, writer = await self._create_writer(receiver.stream())
        except BaseException:
            receiver.close()
            raise
        await self._write(walker, writer, receiver)

    async def _create_writer(self, frames: AsyncIterable[Any]) -> tuple[Walker, Coroutine]:
        dsetname = self._dsetname
        if self._writer_class == "TIFF":
            return self._walker, await self._walker.create_writer(frames, dsetname=dsetname)
        name = split_dsetformat(dsetname)
        filename = self._inside(f"{name}.h5")
        walker = await HDF5Walker(filename, dsetname=name,  # one file per sequence
                                  compression=self._compression or None,
                                  close_after_sequence=True)
        created = walker.created
        try:
            writer = await walker.create_writer(frames)
        except BaseException:
            await self._close_hdf5(walker, filename, created, failed=True)
            raise

        async def write() -> int:
            failed = True
            try:
                count = await writer
                failed = False
                return count
            finally:
                await self._close_hdf5(walker, filename, created, failed)

        return walker, write()

    @staticmethod
    async def _close_hdf5(walker: HDF5Walker, filename: str, created: bool, failed: bool) -> None:
        await walker.close()
        if failed and created:  # leave nothing behind that the sequence created
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, filename)

    @transition(immediate="running", target="standby")
    async def _write(self, walker: Walker, writer: Coroutine, receiver: ImageReceiver) -> None:
        self._task = asyncio.current_task()
        self._receiver = receiver
        self._written = self._bytes = 0
        frames0, bytes0 = walker.frames_written, walker.bytes_written
        began = last_time = time.monotonic()
        last_bytes = 0

        def count() -> None:
            self._written = walker.frames_written - frames0
            self._bytes = walker.bytes_written - bytes0

        async def report() -> None:
            nonlocal last_time, last_bytes
            while True:
                await asyncio.sleep(_COUNTER_PERIOD)
                count()
                now = time.monotonic()
                if now - last_time >= 1.0:
                    self._rate = (self._bytes - last_bytes) / (now - last_time) / 1e6
                    last_time, last_bytes = now, self._bytes
                self._announce()

        reporter = asyncio.ensure_future(report())
        try:
            await writer
            if receiver.refused:
                self._errors += receiver.refused
        except BaseException as error:
            if not isinstance(error, asyncio.CancelledError):
                self._errors += 1 + receiver.refused
            raise
        finally:
            reporter.cancel()
            receiver.close()
            self._task = None
            count()
            elapsed = time.monotonic() - began
            self._rate = self._bytes / elapsed / 1e6 if elapsed > 0 else 0.0
            self._announce()

    def _announce(self) -> None:
        for name, value in (("frames_received", self._frames_received()),
                            ("frames_written", self._written),
                            ("bytes_written", self._bytes), ("errors", self._errors),
                            ("write_rate", self._rate * q.MB / q.s)):
            self[name].notify(value)

    async def cancel(self) -> None:
        """Abort the sequence being written; no-op if none is. The file being written
        is deleted (TIFF: complete files stay; HDF5: the whole data set goes)."""
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _emergency_stop(self) -> None:
        await self.cancel()

    # -- logs ----------------------------------------------------------------------------
    async def log_to_json(self, payload: str, filename: str = "experiment.json") -> None:
        """Write the JSON text ``payload`` to ``filename`` in the current directory."""
        if len(_components(filename)) != 1:
            raise PathError(f"{filename!r} must be a file name, not a path")
        self._inside(filename)
        await self._walker.log_to_json(payload, filename)

    async def register_logger(self, logger_name: str, log_level: int, file_name: str) -> str:
        """Open the log file ``file_name`` in the current directory for records of
        ``logger_name`` at ``log_level`` and above (sent with Log); return its id."""
        if len(_components(file_name)) != 1:
            raise PathError(f"{file_name!r} must be a file name, not a path")
        path = self._inside(file_name)
        handler = await open_log_file(path, log_level)
        handler.set_name(logger_name)
        handler_id = f"{next(self._logger_ids)}:{os.path.relpath(path, self.root)}"
        self._loggers[handler_id] = handler
        return handler_id

    async def log(self, handler_id: str, level: int, message: str, *more: str) -> None:
        """Write ``message`` at ``level`` to the log file ``handler_id`` names; ``more``
        are further records as pairs of level and message (a client's queued records
        in one call)."""
        handler = self._handler(handler_id)
        if len(more) % 2:
            raise ValueError(f"Log: {len(more)} values after the first record; records "
                             "come as pairs of level and message")
        try:
            levels = [int(level)] + [int(value) for value in more[::2]]
        except ValueError:
            raise ValueError(f"Log: levels must be integers, got {more[::2]!r}") from None
        name = handler.get_name() or "remote"
        records = [logging.LogRecord(name, number, "", 0, text, None, None)
                   for number, text in zip(levels, [message, *more[1::2]], strict=True)
                   if number >= handler.level]

        def write() -> None:
            for record in records:
                handler.handle(record)

        if records:
            await asyncio.to_thread(write)

    async def deregister_logger(self, handler_id: str) -> None:
        """Close the log file ``handler_id`` names."""
        handler = self._handler(handler_id)
        del self._loggers[handler_id]
        await asyncio.to_thread(handler.close)

    def _handler(self, handler_id: str) -> logging.Handler:
        try:
            return self._loggers[handler_id]
        except KeyError:
            raise ValueError(f"no log file with id {handler_id!r} is registered") from None


__all__ = ["WRITER_CLASSES", "WalkerDevice"]
