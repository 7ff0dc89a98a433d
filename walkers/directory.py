"""The :class:`DirectoryWalker`: directories and TIFF (or other flat) files."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from typing import Any

from walkers.base import (
    DatasetExistsError,
    LoggingHandlerCloser,
    PathError,
    Walker,
    attach_handler,
    check_name,
    open_log_file,
)
from walkers.storage import create_directory
from walkers.writers import ImageWriter, SequenceWriter, TiffWriter, write_sequence


def _template_regex(template: str) -> re.Pattern[str]:
    """A regex matching the file names a template produces (format fields: anything)."""
    pieces = re.split(r"\{[^{}]*\}", template)
    return re.compile("^" + ".+".join(re.escape(piece) for piece in pieces) + "$")


class DirectoryWalker(Walker):
    """Moves through directories below ``root`` (default: the working directory) and
    writes sequences as files named by the template ``dsetname`` with ``writer``.

    ``start_index`` is the number of the first file (``frame_000100.tif`` for 100),
    ``bytes_per_file`` the size of multi-page files (0: one file per frame).
    Directories are created with ``rights``. Names given to :meth:`descend` and data
    set names must stay below ``root`` (:class:`PathError` otherwise), and a data set
    whose files exist already is refused.
    """

    async def __ainit__(
        self,
        root: str | None = None,
        dsetname: str = "frame_{:>06}.tif",
        writer: Callable[..., ImageWriter] = TiffWriter,
        start_index: int = 0,
        bytes_per_file: int = 0,
        rights: str = "750",
    ) -> None:
        root = os.path.abspath(root if root is not None else os.getcwd())
        await super().__ainit__(root, dsetname)
        self.writer = writer
        self.start_index = start_index
        self.bytes_per_file = bytes_per_file
        self.rights = rights
        await asyncio.to_thread(create_directory, root, rights)

    def _inside(self, *names: str) -> str:
        """The path of ``names`` below the current directory; refuses to leave root."""
        path = os.path.join(self._current, *(check_name(name) for name in names))
        real_root = os.path.realpath(self._root)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise PathError(f"{os.path.join(*names)!r} leads outside of {self._root}")
        return path

    async def _descend(self, name: str) -> None:
        path = self._inside(name)
        await asyncio.to_thread(create_directory, path, self.rights)
        self._current = path

    async def _ascend(self) -> None:
        self._current = os.path.dirname(self._current)

    async def exists(self, *paths: str) -> bool:
        """Whether ``paths`` joined below the current directory exist."""
        return await asyncio.to_thread(os.path.exists, os.path.join(self._current, *paths))

    async def dataset_exists(self, dsetname: str | None = None) -> bool:
        """Whether files of data set ``dsetname`` exist in the current directory."""
        template = dsetname or self.dsetname
        directory = self._current

        def check() -> bool:
            if not os.path.isdir(directory):
                return False
            if "{" not in template:
                return os.path.lexists(os.path.join(directory, template))
            pattern = _template_regex(template)
            return any(pattern.match(entry) for entry in os.listdir(directory))

        return await asyncio.to_thread(check)

    async def _create_writer(
        self, producer: AsyncIterable[Any] | Iterable[Any], dsetname: str
    ) -> Coroutine[Any, Any, int]:
        if os.sep in dsetname or (os.altsep and os.altsep in dsetname):
            raise PathError(f"data set name {dsetname!r} must be a file name template")
        prefix = self._inside(dsetname)
        if await self.dataset_exists(dsetname):
            raise DatasetExistsError(
                f"data set {dsetname!r} exists already in {self._current}; refusing to overwrite it"
            )
        await asyncio.to_thread(create_directory, self._current, self.rights)
        sink = SequenceWriter(self.writer, prefix, self.start_index, self.bytes_per_file)

        async def write() -> int:
            count = await write_sequence(producer, sink, on_written=self._count)
            self.sequences_written += 1
            return count

        return write()

    async def log_to_json(self, payload: Any, filename: str = "experiment.json") -> None:
        """Write ``payload`` to ``filename`` in the current directory (atomically)."""
        path = self._inside(filename)
        text = payload if isinstance(payload, str) else json.dumps(payload, indent=2)

        def store() -> None:
            temporary = os.path.join(os.path.dirname(path), f".{filename}.part")
            try:
                with open(temporary, "w", encoding="utf-8") as stream:
                    stream.write(text)
                os.replace(temporary, path)
            except BaseException:
                if os.path.exists(temporary):
                    os.unlink(temporary)
                raise

        await asyncio.to_thread(store)

    async def register_logger(
        self, logger_name: str, log_level: int, file_name: str
    ) -> LoggingHandlerCloser:
        """Append the records of ``logger_name`` to ``file_name`` in the current directory."""
        handler = await open_log_file(self._inside(file_name), log_level)
        return attach_handler(logger_name, handler, log_level)


__all__ = ["DirectoryWalker"]
