"""The abstract :class:`Walker` and the storage errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from typing import Any

from concert_core.asyncobject import AsyncObject
from concert_core.errors import ConcertError

LOG = logging.getLogger(__name__)


class StorageError(ConcertError):
    """A logical problem of storage (a data set that exists, a bad name, ...)."""


class DatasetExistsError(StorageError, FileExistsError):
    """Writing would overwrite an existing data set or file."""


class PathError(StorageError, ValueError):
    """A name or path is refused (empty, containing NUL, absolute, leaving the root)."""


class WriterClassChanged(StorageError):
    """A remote sequence was started for one writer class (file format) while the walker
    device has another, set by some client meanwhile; ``writer_class`` is the device's."""

    def __init__(self, writer_class: str, message: str) -> None:
        super().__init__(message)
        self.writer_class = writer_class


class LoggingHandlerCloser:
    """Returned by :meth:`Walker.register_logger`: ``await closer()`` (or
    ``await closer.close()``) detaches and closes the handler; closing twice is harmless."""

    def __init__(self, close: Callable[[], Any] | None = None) -> None:
        self._close = close

    async def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            await asyncio.to_thread(close)

    async def __call__(self) -> None:
        await self.close()


#: Format of the log files walkers write.
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


async def open_log_file(path: str, log_level: int) -> logging.FileHandler:
    """A handler appending records at ``log_level`` and above to ``path`` (opened in a
    thread)."""
    handler = await asyncio.to_thread(logging.FileHandler, path)
    handler.setLevel(int(log_level))
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def attach_handler(
    logger_name: str, handler: logging.Handler, log_level: int
) -> LoggingHandlerCloser:
    """Send the records of ``logger_name`` at ``log_level`` and above to ``handler``
    (lowering the logger's level if needed); the closer detaches and closes it."""
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > log_level:
        logger.setLevel(log_level)

    def close() -> None:
        logger.removeHandler(handler)
        handler.close()

    return LoggingHandlerCloser(close)


def check_name(name: str) -> str:
    """Refuse names that are empty, contain NUL, are absolute or contain ``..``."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise PathError(f"invalid name {name!r}: must be a non-empty string without NUL")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise PathError(f"invalid name {name!r}: absolute paths are not allowed")
    if ".." in name.replace("\\", "/").split("/"):
        raise PathError(f"invalid name {name!r}: '..' is not allowed")
    return name


class Walker(AsyncObject):
    """Moves through a hierarchy (directories, HDF5 groups, ...) and writes sequences
    of frames at the current position.

    ``async with walker:`` holds the walker's lock, so that a coroutine can descend,
    create a writer and ascend without another one moving the walker meanwhile.
    :attr:`frames_written` and :attr:`bytes_written` count what all its writers wrote.
    """

    async def __ainit__(self, root: str, dsetname: str = "frames") -> None:
        await super().__ainit__()
        self._root = root
        self._current = root
        self.dsetname = dsetname
        self._lock = asyncio.Lock()
        self.frames_written = 0
        self.bytes_written = 0
        self.sequences_written = 0

    @property
    def root(self) -> str:
        """The topmost level."""
        return self._root

    @property
    def current(self) -> str:
        """The current position."""
        return self._current

    async def descend(self, name: str) -> Walker:
        """Descend to ``name`` (created if missing) and return ``self``."""
        await self._descend(check_name(name))
        return self

    async def ascend(self) -> Walker:
        """Ascend one level (staying at the root) and return ``self``."""
        if self._current != self._root:
            await self._ascend()
        return self

    async def home(self) -> None:
        """Return to the root."""
        self._current = self._root

    async def exists(self, *paths: str) -> bool:
        """Whether the path made of ``paths`` below the current position exists."""
        raise NotImplementedError

    async def create_writer(
        self,
        producer: AsyncIterable[Any] | Iterable[Any],
        name: str | None = None,
        dsetname: str | None = None,
    ) -> Coroutine[Any, Any, int]:
        """Prepare writing data set ``dsetname`` (default: the walker's) with the frames
        of ``producer`` and return the coroutine that writes them (it returns the
        number of frames). With ``name``, descend to it first and ascend back
        afterwards, so the walker may move on while the writer works. Refuses an
        existing data set (:class:`DatasetExistsError`) before anything is written.
        """
        if name is not None:
            await self.descend(name)
        try:
            return await self._create_writer(producer, dsetname or self.dsetname)
        finally:
            if name is not None:
                await self.ascend()

    async def write(
        self, producer: AsyncIterable[Any] | Iterable[Any], dsetname: str | None = None
    ) -> int:
        """Write ``producer``'s frames as data set ``dsetname`` here; return their number."""
        return await (await self.create_writer(producer, dsetname=dsetname))

    async def write_stream(
        self, receiver: Any, dsetname: str | None = None, name: str | None = None
    ) -> int:
        """Write one stream of an :class:`~concert_core.dataplane.ImageReceiver` (until
        its end-of-stream); return the number of frames written. Writers that run in a
        thread read the stream there (:meth:`ImageReceiver.stream`)."""
        return await (await self.create_writer(receiver.stream(), name=name, dsetname=dsetname))

    async def log_to_json(self, payload: Any, filename: str = "experiment.json") -> None:
        """Store ``payload`` (a JSON string, or an object serialised to JSON) as
        ``filename`` at the current position."""
        raise NotImplementedError

    async def register_logger(
        self, logger_name: str, log_level: int, file_name: str
    ) -> LoggingHandlerCloser:
        """Send the records of logger ``logger_name`` at ``log_level`` and above to
        ``file_name`` at the current position; return the closer of that handler."""
        raise NotImplementedError

    def _count(self, nbytes: int) -> None:
        self.frames_written += 1
        self.bytes_written += nbytes

    async def _descend(self, name: str) -> None:
        raise NotImplementedError

    async def _ascend(self) -> None:
        raise NotImplementedError

    async def _create_writer(
        self, producer: AsyncIterable[Any] | Iterable[Any], dsetname: str
    ) -> Coroutine[Any, Any, int]:
        raise NotImplementedError

    async def __aenter__(self) -> Walker:
        await self._lock.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()


__all__ = [
    "LOG_FORMAT",
    "DatasetExistsError",
    "LoggingHandlerCloser",
    "PathError",
    "StorageError",
    "Walker",
    "WriterClassChanged",
    "attach_handler",
    "check_name",
    "open_log_file",
]
