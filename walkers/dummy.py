"""The :class:`DummyWalker`: a walker that keeps paths and data in memory (for tests)."""

from __future__ import annotations

import json
import posixpath
from collections.abc import AsyncIterable, Coroutine, Iterable
from typing import Any

import numpy as np

from walkers.base import DatasetExistsError, LoggingHandlerCloser, Walker


class DummyWalker(Walker):
    """Records the paths it visits and the sequences written (frame counts in
    :attr:`sequences`, JSON logs in :attr:`logs`) without touching the disk."""

    async def __ainit__(self, root: str = "", dsetname: str = "frames") -> None:
        await super().__ainit__(root, dsetname)
        self._paths: set[str] = {root}
        #: Path of every written data set -> number of frames.
        self.sequences: dict[str, int] = {}
        #: Path of every :meth:`log_to_json` file -> its payload.
        self.logs: dict[str, str] = {}

    @property
    def paths(self) -> list[str]:
        """Every path visited or written, sorted."""
        return sorted(self._paths)

    async def _descend(self, name: str) -> None:
        self._current = posixpath.join(self._current, name)
        self._paths.add(self._current)

    async def _ascend(self) -> None:
        self._current = posixpath.dirname(self._current)

    async def exists(self, *paths: str) -> bool:
        return posixpath.join(self._current, *paths) in self._paths

    async def _create_writer(
        self, producer: AsyncIterable[Any] | Iterable[Any], dsetname: str
    ) -> Coroutine[Any, Any, int]:
        path = posixpath.join(self._current, dsetname)
        if path in self.sequences:
            raise DatasetExistsError(f"data set {path!r} exists already")
        self.sequences[path] = 0
        self._paths.add(path)

        async def write() -> int:
            count = 0
            if hasattr(producer, "__aiter__"):
                async for frame in producer:
                    count += 1
                    self._count(np.asarray(frame).nbytes)
            else:
                for frame in producer:
                    count += 1
                    self._count(np.asarray(frame).nbytes)
            self.sequences[path] = count
            self.sequences_written += 1
            return count

        return write()

    async def log_to_json(self, payload: Any, filename: str = "experiment.json") -> None:
        path = posixpath.join(self._current, filename)
        self.logs[path] = payload if isinstance(payload, str) else json.dumps(payload)
        self._paths.add(path)

    async def register_logger(
        self, logger_name: str, log_level: int, file_name: str
    ) -> LoggingHandlerCloser:
        """A no-op handler closer."""
        return LoggingHandlerCloser()


__all__ = ["DummyWalker"]
