"""Image file writers and :func:`write_images`.

Writers are synchronous and run in a thread of their own (one per sequence), fed
through a bounded queue. A file is written under a temporary name (``.name.part`` in
the same directory) and renamed when complete; a failed or cancelled file is deleted
and the error raised to whoever awaits the sequence. Frames are written from their own
buffer (uncompressed, a frame received in shared memory goes from the sender's slot
straight into the page cache), and no writer keeps a frame after writing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
import time
import traceback
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

import numpy as np
import tifffile

from walkers.base import DatasetExistsError, StorageError
from walkers.tiff import TiffPages, can_write

#: Default size above which a TIFF file is written as BigTIFF (4 GiB minus headroom for
#: tags and descriptions).
BIGTIFF_THRESHOLD = 2**32 - 2**25


def metadata_of(image: Any) -> dict[str, Any]:
    """The metadata dictionary of an image (empty for plain arrays)."""
    return dict(getattr(image, "metadata", None) or {})


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def metadata_json(image: Any) -> str:
    """The image's metadata as a JSON object (unknown values become strings)."""
    return json.dumps(metadata_of(image), default=_json_default)


def temporary_name(filename: str) -> str:
    """The name a file is written under until it is complete."""
    directory, name = os.path.split(filename)
    return os.path.join(directory, f".{name}.part")


class ImageWriter:
    """Base of the file writers: ``write`` frames, then ``close`` (publish the file) or
    ``abort`` (delete it). Never overwrites an existing file."""

    def __init__(self, filename: str, bytes_per_file: int = 0) -> None:
        if os.path.lexists(filename):
            raise DatasetExistsError(f"{filename} exists already; refusing to overwrite it")
        self.filename = filename
        self.bytes_per_file = bytes_per_file
        self.temporary = temporary_name(filename)
        self.frames = 0
        self.bytes = 0

    def write(self, image: np.ndarray) -> int:
        """Write one frame; return the number of payload bytes written."""
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush and close the temporary file."""

    def close(self) -> None:
        """Complete the file and give it its final name."""
        self._finish()
        if os.path.lexists(self.filename):
            self.abort()
            raise DatasetExistsError(f"{self.filename} appeared while it was being written")
        os.replace(self.temporary, self.filename)

    def abort(self) -> None:
        """Discard the file."""
        with contextlib.suppress(Exception):
            self._finish()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temporary)


class TiffWriter(ImageWriter):
    """TIFF files, the metadata of each frame as JSON in its page's ImageDescription.

    Integer and float frames are written by :class:`~walkers.tiff.TiffPages` (one
    ``writev`` per page, straight from the frame's buffer); others (bool, complex,
    1-D) by tifffile. The first frame chooses for its file: a frame the lean writer
    cannot take may not follow in a multi-page file it began (:class:`StorageError`).
    A file whose size may exceed ``bigtiff_threshold`` bytes (the larger of
    ``bytes_per_file`` and the first frame; any size if ``bytes_per_file`` is
    negative, i.e. unbounded) is written as BigTIFF.
    """

    extension = ".tif"

    def __init__(
        self,
        filename: str,
        bytes_per_file: int = 0,
        bigtiff_threshold: int = BIGTIFF_THRESHOLD,
    ) -> None:
        super().__init__(filename, bytes_per_file)
        self.bigtiff_threshold = bigtiff_threshold
        self.bigtiff: bool | None = None
        self._pages: TiffPages | None = None
        self._tiff: tifffile.TiffWriter | None = None

    def write(self, image: np.ndarray) -> int:
        array = np.asarray(image)
        if array.dtype.kind not in "buifc":
            raise TypeError(f"TIFF cannot store frames of dtype {array.dtype}")
        if self._pages is None and self._tiff is None:
            if self.bytes_per_file < 0:
                expected = float("inf")
            else:
                expected = max(self.bytes_per_file, array.nbytes)
            self.bigtiff = expected > self.bigtiff_threshold
            if can_write(array):
                self._pages = TiffPages(self.temporary, bigtiff=self.bigtiff)
            else:
                self._tiff = tifffile.TiffWriter(self.temporary, bigtiff=self.bigtiff)
        description = metadata_json(image)
        if self._pages is not None:
            self._pages.append(array, description)
        else:
            self._tiff.write(array, description=description, metadata=None,
                             photometric="minisblack")
        self.frames += 1
        self.bytes += array.nbytes
        return array.nbytes

    def _finish(self) -> None:
        pages, self._pages = self._pages, None
        if pages is not None:
            pages.close()
        tiff, self._tiff = self._tiff, None
        if tiff is not None:
            tiff.close()


def _is_formattable(template: str) -> bool:
    try:
        return template.format(0) != template
    except (IndexError, KeyError, ValueError):
        return False


class SequenceWriter:
    """Writes the frames of one sequence to ``prefix``-named files with ``writer``;
    synchronous (used from the writer thread)."""

    def __init__(
        self,
        writer: Callable[..., ImageWriter],
        prefix: str,
        start_index: int = 0,
        bytes_per_file: int = 0,
    ) -> None:
        self.writer = writer
        self.prefix = prefix
        self.formattable = _is_formattable(prefix)
        self.file_index = start_index
        self.bytes_per_file = bytes_per_file if self.formattable else -1
        self.current: ImageWriter | None = None
        self.files: list[str] = []
        self.frames = 0
        self.bytes = 0

    def write(self, image: np.ndarray) -> int:
        nbytes = np.asarray(image).nbytes
        current = self.current
        if current is not None and (
            self.bytes_per_file == 0
            or (self.bytes_per_file > 0 and current.bytes + nbytes > self.bytes_per_file)
        ):
            self._close_current()
        if self.current is None:
            name = self.prefix.format(self.file_index) if self.formattable else self.prefix
            self.current = self.writer(name, self.bytes_per_file)
            self.file_index += 1
        written = self.current.write(image)
        self.frames += 1
        self.bytes += written
        if self.bytes_per_file == 0:  # one file per frame: publish it now (an abort keeps it)
            self._close_current()
        return written

    def _close_current(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            current.close()
            self.files.append(current.filename)

    def close(self) -> None:
        self._close_current()

    def abort(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            current.abort()


_STOP = object()
#: Seconds between the hand-overs of written counts to the loop while a thread reading
#: its own frames (a received stream) has more waiting.
REPORT_PERIOD = 0.02


class _Handback:
    """Values a worker thread hands to the event loop in batches: ``deliver(values)``
    runs on the loop with all values added until then. One callback is scheduled at a
    time (not one per frame: each wakes the loop and trades the GIL), and with
    ``period`` at most one per ``period`` seconds while the worker is busy; the worker
    calls :meth:`push` before it waits, so nothing it added waits with it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[[list], None], period: float = 0.0
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._period = period
        self._values: list[Any] = []
        self._scheduled = False
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        """Hand ``value`` over (called in the worker thread)."""
        with self._lock:
            self._values.append(value)
            due = not self._scheduled and time.monotonic() - self._last >= self._period
            self._scheduled |= due
        if due:
            self._schedule()

    def push(self) -> None:
        """Hand over what waits now (called in the worker thread before it blocks)."""
        with self._lock:
            due = bool(self._values) and not self._scheduled
            self._scheduled |= due
        if due:
            self._schedule()

    def _schedule(self) -> None:
        self._last = time.monotonic()
        self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            values, self._values = self._values, []
            self._scheduled = False
        self._deliver(values)


class WriterThread:
    """Runs a synchronous ``write(item)`` in a thread of its own, fed from asyncio
    through a queue of at most ``maxsize`` items; ``close()``/``abort()`` run at the
    end in the same thread. The first error is raised to the feeding coroutine."""

    def __init__(
        self,
        write: Callable[[Any], Any],
        close: Callable[[], Any],
        abort: Callable[[], Any],
        maxsize: int = 16,
        name: str = "writer",
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self._write, self._close, self._abort = write, close, abort
        self._on_written = on_written
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._space = asyncio.Semaphore(maxsize)
        self._done: asyncio.Future = self._loop.create_future()
        self.error: BaseException | None = None
        self._results = _Handback(self._loop, self._written)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        result: BaseException | None = None
        while True:
            item = self._queue.get()
            if item is _STOP or isinstance(item, tuple):
                break
            written = None
            if self.error is None:
                try:
                    written = self._write(item)
                except BaseException as error:  # reported to the feeder
                    self.error = error
                    traceback.clear_frames(error.__traceback__)  # the frame is not kept
            # Drop the frame before waiting for the next: its buffer may go (a frame in
            # shared memory holds its sender's slot until then).
            item = None
            self._results.add(written)
        aborting = isinstance(item, tuple) or self.error is not None
        try:
            if aborting:
                self._abort()
            else:
                self._close()
        except BaseException as error:
            result = error
            with contextlib.suppress(BaseException):
                self._abort()
        self._loop.call_soon_threadsafe(self._finish, result)

    def _written(self, results: list[int | None]) -> None:
        for nbytes in results:
            self._space.release()
            if nbytes is not None and self._on_written is not None:
                self._on_written(nbytes)

    def _finish(self, error: BaseException | None) -> None:
        if not self._done.done():
            if self.error is None and error is not None:
                self.error = error
            self._done.set_result(None)

    async def put(self, item: Any) -> None:
        """Queue ``item``; waits while the queue is full, raises the writer's error."""
        if self.error is not None:
            raise self.error
        await self._space.acquire()
        if self.error is not None:
            self._space.release()
            raise self.error
        self._queue.put(item)

    async def finish(self, abort: bool = False) -> None:
        """Let the thread complete (or discard) its output and wait for it; raise its
        error. Waits for the thread even if cancelled meanwhile."""
        self._queue.put(("abort",) if abort else _STOP)
        try:
            await asyncio.shield(self._done)
        except asyncio.CancelledError:
            await asyncio.shield(self._done)
            raise
        if self.error is not None and not abort:
            raise self.error


async def write_sequence(
    producer: AsyncIterable[Any] | Iterable[Any],
    sink: Any,
    on_written: Callable[[int], None] | None = None,
    maxsize: int = 16,
) -> int:
    """Feed the frames of ``producer`` to ``sink`` (an object with synchronous
    ``write(frame) -> nbytes``, ``close()`` and ``abort()``) running in a thread of its
    own; return the number of frames. ``on_written(nbytes)`` is called on the loop
    after each frame was written. On any error or cancellation the sink is aborted.

    A producer with ``frames_blocking(stop, idle)`` (a received stream,
    :class:`~concert_core.dataplane.ReceivedStream`) is read in the writing thread
    itself: the frames never pass through the event loop, and while frames are waiting
    ``on_written`` runs for batches, at most every :data:`REPORT_PERIOD` seconds."""
    if hasattr(producer, "frames_blocking"):
        return await _read_and_write(producer, sink, on_written)
    thread = WriterThread(sink.write, sink.close, sink.abort, maxsize, on_written=on_written)
    count = 0
    try:
        if hasattr(producer, "__aiter__"):
            async for frame in producer:
                await thread.put(frame)
                count += 1
        else:
            for frame in producer:
                await thread.put(frame)
                count += 1
    except BaseException:
        await thread.finish(abort=True)
        raise
    await thread.finish()
    return count


async def _read_and_write(
    producer: Any, sink: Any, on_written: Callable[[int], None] | None
) -> int:
    """:func:`write_sequence` for a producer read by blocking calls: one thread reads a
    frame, writes it, drops it and reads the next. Cancelling sets the producer's stop
    event and waits for the thread, which aborts the sink."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    done: asyncio.Future = loop.create_future()
    reports = _Handback(loop, lambda sizes: [on_written(size) for size in sizes],
                        period=REPORT_PERIOD)

    def run() -> None:
        count, failure = 0, None
        try:
            with contextlib.closing(producer.frames_blocking(stop, reports.push)) as frames:
                for frame in frames:
                    try:
                        nbytes = sink.write(frame)
                    finally:
                        frame = None  # its slot goes back before the next frame is read
                    count += 1
                    if on_written is not None:
                        reports.add(nbytes)
            if stop.is_set():
                sink.abort()
            else:
                sink.close()
        except BaseException as error:  # raised to the awaiting coroutine
            failure = error
            traceback.clear_frames(error.__traceback__)  # no frame (nor slot) kept alive
            with contextlib.suppress(BaseException):
                sink.abort()
        reports.push()  # the last counts reach the loop before the result
        loop.call_soon_threadsafe(_settle, done, count, failure)

    threading.Thread(target=run, name="writer", daemon=True).start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        stop.set()
        while not done.done():  # the thread stops within the producer's poll period
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([done])
        done.exception()  # retrieved: the cancellation is what the caller gets
        raise


def _settle(done: asyncio.Future, count: int, failure: BaseException | None) -> None:
    if failure is None:
        done.set_result(count)
    else:
        done.set_exception(failure)


async def write_images(
    producer: AsyncIterable[Any] | Iterable[Any],
    writer: Callable[..., ImageWriter] = TiffWriter,
    prefix: str = "image_{:>05}.tif",
    start_index: int = 0,
    bytes_per_file: int = 0,
    rights: str = "750",
) -> int:
    """Write the frames of ``producer`` to files named by ``prefix`` and return how many.

    With ``bytes_per_file == 0`` every frame gets a file of its own, otherwise frames go
    into one file until adding the next would exceed ``bytes_per_file``. File numbers
    start at ``start_index``. A ``prefix`` without a format field names one file that
    receives all frames. Missing directories are created with ``rights``.
    """
    from walkers.storage import create_directory

    directory = os.path.dirname(prefix)
    if directory:
        await asyncio.to_thread(create_directory, directory, rights)
    sink = SequenceWriter(writer, prefix, start_index, bytes_per_file)
    return await write_sequence(producer, sink)


__all__ = [
    "BIGTIFF_THRESHOLD",
    "ImageWriter",
    "SequenceWriter",
    "StorageError",
    "TiffWriter",
    "WriterThread",
    "metadata_json",
    "temporary_name",
    "write_images",
    "write_sequence",
]
