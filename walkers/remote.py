"""The :class:`RemoteDirectoryWalker`: the Walker API over a ``ConcertWalker`` device
(Tango class ``DirectoryWalker``, see :mod:`walkers.device`).

Frames never pass through Tango: the device connects to an image stream and writes it.
:meth:`RemoteDirectoryWalker.write_sequence` has it write the stream a camera sends to
its ``data_endpoint`` (camera -> walker server directly); :meth:`Walker.create_writer`
with a local producer streams the producer's frames to the device through an
:class:`~concert_core.dataplane.ImageSender` this walker binds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import socket
import threading
import weakref
from collections.abc import AsyncIterable, Coroutine, Iterable, Sequence
from typing import Any

import tango

from concert_core import errors as concert_errors
from concert_core.dataplane import ImageSender, wire
from concert_core.helpers import CommData
from concert_core.remote.calls import call as _call
from concert_core.remote.tango import STATE_ATTRIBUTES, concert_state_of
from walkers import base as walker_errors
from walkers.base import (
    LoggingHandlerCloser,
    PathError,
    StorageError,
    Walker,
    WriterClassChanged,
    attach_handler,
)

LOG = logging.getLogger(__name__)
#: How often the state of a writing device is read when no State event came (s).
_POLL = 0.5
#: Longest time (s) a remote log record is held while the device writes no sequence (see
#: :meth:`RemoteDirectoryWalker.register_logger`).
LOG_HOLD_SECONDS = 0.5


#: The device's counters of a sequence (see :meth:`RemoteDirectoryWalker.counters`).
_COUNTERS = ("frames_received", "frames_written", "bytes_written", "write_rate", "errors")


def _counters_of(replies: Sequence[Any]) -> dict[str, Any]:
    return {name: reply.value for name, reply in zip(_COUNTERS, replies, strict=True)}


class _StateWatch:
    """What the device's State events showed: how many sequence ends (a State other
    than RUNNING after RUNNING); ``changed`` is set at every event."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.ends = 0
        self._running = False

    def note(self, state: Any) -> None:
        """Note a State event's value (``None`` for an error event)."""
        if state == tango.DevState.RUNNING:
            self._running = True
        elif state is not None and self._running:
            self._running = False
            self.ends += 1
        self.changed.set()


def _error_from_status(status: str) -> Exception:
    """The exception a FAULT status (``error: DataPlaneTimeout: ...``) stands for."""
    head = status.strip().splitlines()[0] if status.strip() else status
    _, _, rest = head.partition(":")
    name, _, message = rest.strip().partition(":")
    for module in (walker_errors, wire, concert_errors):
        cls = getattr(module, name.strip(), None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            error = cls.__new__(cls)
            Exception.__init__(error, f"remote walker: {message.strip()}")
            return error
    return StorageError(f"remote walker failed: {status.strip()}")


class RemoteDirectoryWalker(Walker):
    """A walker whose directories and files live on the host of a walker device.

    ``device`` is a Tango device name (or a ``tango.DeviceProxy``). ``dsetname``,
    ``writer_class`` (TIFF or HDF5), ``start_index`` and ``bytes_per_file`` are written
    to the device when given. ``endpoint`` is where :meth:`create_writer` binds its
    sender for local producers; a wildcard host (``tcp://*:0``) advertises this host's
    name to the device. ``timeout`` bounds each Tango call.
    """

    async def __ainit__(
        self,
        device: str | tango.DeviceProxy,
        dsetname: str | None = None,
        writer_class: str | None = None,
        start_index: int | None = None,
        bytes_per_file: int | None = None,
        endpoint: str = "tcp://127.0.0.1:0",
        timeout: float = 3.0,
    ) -> None:
        proxy = device if isinstance(device, tango.DeviceProxy) else None
        if proxy is None:
            proxy = await _call(tango.DeviceProxy, device)
        proxy.set_timeout_millis(int(timeout * 1000))
        self.device = proxy
        self.endpoint = endpoint
        self._starting = asyncio.Lock()
        #: Log handlers of this walker; they send at once while a sequence is written.
        self._log_handlers: weakref.WeakSet[_RemoteHandler] = weakref.WeakSet()
        self._writing = False
        self._labels: dict[str, list[str]] = {}  # enum labels by attribute
        root = (await _call(proxy.get_property, "root"))["root"]
        await super().__ainit__(root[0] if root else "", dsetname or "frame_{:>06}.tif")
        for name, value in (("dsetname", dsetname), ("writer_class", writer_class),
                            ("start_index", start_index), ("bytes_per_file", bytes_per_file)):
            if value is not None:
                await self.set_attribute(name, value)
        self.dsetname = await self.get_attribute("dsetname")
        self._current = await self.get_attribute("current")
        self._watch = _StateWatch()
        #: Sequences started here since the State subscription; while the events showed
        #: as many ends, the next end event shown belongs to the next sequence.
        self._started = 0
        self._event_id: int | None = None
        loop = asyncio.get_running_loop()
        watch = weakref.ref(self._watch)

        def on_state(event: Any) -> None:
            target = watch()
            if target is not None and not loop.is_closed():
                value = None if event.err or event.attr_value is None else event.attr_value.value
                loop.call_soon_threadsafe(target.note, value)

        try:  # the end of a sequence is seen at once; without events it is polled
            self._event_id = await _call(
                proxy.subscribe_event, "State", tango.EventType.CHANGE_EVENT, on_state)
        except concert_errors.ConcertError as error:
            LOG.info("%s: no State events (%s); polling", proxy.dev_name(), error)

    async def disconnect(self) -> None:
        """Unsubscribe from the device's State events."""
        if self._event_id is not None:
            event_id, self._event_id = self._event_id, None
            with contextlib.suppress(concert_errors.ConcertError):
                await _call(self.device.unsubscribe_event, event_id)

    # -- device attributes -------------------------------------------------------------
    async def get_attribute(self, name: str) -> Any:
        """Read attribute ``name`` of the device (``writer_class`` as its label)."""
        reply = await _call(self.device.read_attribute, name)
        if name == "writer_class":
            return (await self._enum_labels(name))[int(reply.value)]
        return reply.value

    async def _enum_labels(self, name: str) -> list[str]:
        if name not in self._labels:
            config = await _call(self.device.get_attribute_config, name)
            self._labels[name] = list(config.enum_labels)
        return self._labels[name]

    async def set_attribute(self, name: str, value: Any) -> None:
        """Write attribute ``name`` of the device (``writer_class`` by its label)."""
        if name == "writer_class":
            labels = await self._enum_labels(name)
            if str(value).upper() not in labels:
                raise concert_errors.SelectionError(
                    f"writer_class {value!r} is not one of {labels}")
            value = labels.index(str(value).upper())
        await _call(self.device.write_attribute, name, value)

    async def counters(self) -> dict[str, Any]:
        """The device's counters of the current (or last) sequence and its error count."""
        return _counters_of(await _call(self.device.read_attributes, _COUNTERS))

    # -- moving --------------------------------------------------------------------------
    async def _descend(self, name: str) -> None:
        self._current = await _call(self.device.command_inout, "Descend", name)

    async def _ascend(self) -> None:
        self._current = await _call(self.device.command_inout, "Ascend")

    async def home(self) -> None:
        """Return to the device's root."""
        self._current = await _call(self.device.command_inout, "Home")

    async def exists(self, *paths: str) -> bool:
        """Whether ``paths`` joined below the current directory exist on the device."""
        _check_strings(*paths)
        return bool(await _call(self.device.command_inout, "Exists", "/".join(paths)))

    # -- writing -------------------------------------------------------------------------
    async def write_sequence(
        self, endpoint: str | CommData, name: str | None = None, dsetname: str | None = None
    ) -> int:
        """Have the device write the stream at ``endpoint`` (e.g. a camera's
        ``data_endpoint``) as ``dsetname`` here (in ``name`` if given) until its end;
        return the number of frames written. Cancelling cancels the device's write."""
        return await (await self.start_sequence(endpoint, name, dsetname))

    async def start_sequence(
        self, endpoint: str | CommData, name: str | None = None, dsetname: str | None = None,
        writer_class: str | None = None,
    ) -> Coroutine[Any, Any, int]:
        """Start the device writing the stream at ``endpoint`` as in :meth:`write_sequence`;
        return the coroutine that awaits the end (the number of frames written).

        With ``writer_class`` (TIFF or HDF5) the sequence is written only in that format:
        the device's ``writer_class`` is read back with the ``dsetname`` write (one round
        trip) and a different one raises :class:`WriterClassChanged`, which names it,
        before anything is created or started (``dsetname`` is written, though). A
        client that knows the format from an earlier sequence needs no read of its own."""
        if isinstance(endpoint, CommData):
            endpoint = endpoint.client_endpoint
        if writer_class is not None:
            labels = await self._enum_labels("writer_class")
            if writer_class.upper() not in labels:
                raise concert_errors.SelectionError(
                    f"writer_class {writer_class!r} is not one of {labels}")
        return await self._start(endpoint, name, dsetname,
                                 None if writer_class is None else writer_class.upper())

    async def _start(
        self, endpoint: str, name: str | None, dsetname: str | None,
        writer_class: str | None = None,
    ) -> Coroutine[Any, Any, int]:
        """Start WriteSequence at the right place; return the coroutine awaiting its end.

        ``dsetname`` is written without reading it first (a read to compare costs as much
        as the write). Without a descend, the write (and the check of a ``writer_class``)
        and WriteSequence go out from one call thread, back to back. With a descend into
        ``name``, the write goes together with it: the device handles the two in turn, but
        the session waits for one round trip only; a ``writer_class`` to check comes
        first, so that a refused start has created no directory."""
        dsetname = dsetname or self.dsetname
        async with self._starting:  # dsetname and WriteSequence belong together
            ends = self._watch.ends
            trust = self._event_id is not None and ends == self._started
            if name is None:
                await self._set_dsetname(dsetname, writer_class, then_start=endpoint)
            else:
                await self._start_in(name, endpoint, dsetname, writer_class)
        self._set_writing(True)
        return self._wait_written(ends, trust)

    async def _start_in(self, name: str, endpoint: str, dsetname: str,
                        writer_class: str | None) -> None:
        """Descend into ``name``, write ``dsetname`` (see :meth:`_start`), start
        WriteSequence and come back."""
        set_dsetname = self._set_dsetname(dsetname, writer_class)
        if writer_class is not None:
            await set_dsetname
            steps = [self.descend(name)]
        else:
            steps = [set_dsetname, self.descend(name)]
        outcomes = await asyncio.gather(*steps, return_exceptions=True)
        descended = not isinstance(outcomes[-1], BaseException)
        try:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            await _call(self.device.command_inout, "WriteSequence", endpoint)
            self._started += 1
        finally:
            if descended:
                await self.ascend()

    def _set_writing(self, writing: bool) -> None:
        """Note whether the device writes a sequence: the log handlers send at once while
        it does and hold their records otherwise (see :meth:`register_logger`)."""
        self._writing = writing
        for handler in list(self._log_handlers):
            handler.hold(not writing)

    async def _set_dsetname(self, dsetname: str, writer_class: str | None,
                            then_start: str | None = None) -> None:
        """Write ``dsetname``; with ``writer_class``, check the device's in the same round
        trip; then, with ``then_start`` (an endpoint), start WriteSequence there (from the
        same call thread)."""
        if writer_class is None and then_start is None:
            await self.set_attribute("dsetname", dsetname)
            return
        labels = await self._enum_labels("writer_class") if writer_class else []
        device = self.device

        def write_and_start() -> None:
            if writer_class is None:
                device.write_attribute("dsetname", dsetname)
            else:
                reply, = device.write_read_attributes([("dsetname", dsetname)],
                                                      ["writer_class"])
                actual = labels[int(reply.value)]
                if actual != writer_class:
                    raise WriterClassChanged(actual, f"{device.dev_name()} writes {actual}, "
                                             f"not {writer_class}: nothing was started")
            if then_start is not None:
                device.command_inout("WriteSequence", then_start)

        await _call(write_and_start)
        if then_start is not None:
            self._started += 1

    async def _wait_written(self, ends: int, trust: bool) -> int:
        try:
            return await self._until_written(ends, trust)
        finally:
            self._set_writing(False)

    async def _until_written(self, ends: int, trust: bool) -> int:
        """Wait for the end of the sequence started when State events had shown ``ends``
        sequence ends, then count it. ``trust``: those were the ends of all sequences
        started before, so the next end an event shows is this sequence's.

        Tango evaluates State after the other attributes of a read, so counters read with
        State may predate an end that State shows. They are read with it only once an
        event has shown the end; otherwise State comes first, the counters after."""
        read_state = not trust
        counters: dict[str, Any] | None = None
        try:
            while True:
                self._watch.changed.clear()
                if trust and self._watch.ends > ends:
                    *values, state, status = await _call(
                        self.device.read_attributes, [*_COUNTERS, *STATE_ATTRIBUTES])
                    if state.value != tango.DevState.RUNNING:
                        counters = _counters_of(values)
                        break
                    trust = read_state = False  # the event was not this sequence's
                if read_state:
                    state, status = await _call(self.device.read_attributes,
                                                STATE_ATTRIBUTES)
                    if state.value != tango.DevState.RUNNING:
                        break
                try:
                    await asyncio.wait_for(self._watch.changed.wait(), _POLL)
                    read_state = not trust
                except TimeoutError:  # no event: read
                    read_state = True
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(_call(self.device.command_inout, "Cancel"))
            raise
        if state.value == tango.DevState.FAULT or concert_state_of(status.value) == "error":
            raise _error_from_status(status.value)
        if counters is None:
            counters = await self.counters()
        self.frames_written += counters["frames_written"]
        self.bytes_written += counters["bytes_written"]
        self.sequences_written += 1
        return int(counters["frames_written"])

    async def _create_writer(
        self, producer: AsyncIterable[Any] | Iterable[Any], dsetname: str
    ) -> Coroutine[Any, Any, int]:
        if isinstance(producer, (str, CommData)):
            return await self._start(resolve(producer), None, dsetname)
        sender = ImageSender(self.endpoint)
        try:
            wait = await self._start(advertised(sender.endpoint), None, dsetname)
        except BaseException:
            sender.close(linger=0)
            raise

        async def write() -> int:
            try:
                try:
                    if hasattr(producer, "__aiter__"):
                        async for frame in producer:
                            await sender.send(frame)
                    else:
                        for frame in producer:
                            await sender.send(frame)
                    await sender.end()
                except BaseException:
                    sender.restart()
                    with contextlib.suppress(Exception):
                        await asyncio.shield(_call(self.device.command_inout, "Cancel"))
                    wait.close()
                    raise
                return await wait
            finally:
                sender.close()

        return write()

    # -- logs ----------------------------------------------------------------------------
    async def log_to_json(self, payload: Any, filename: str = "experiment.json") -> None:
        """Store ``payload`` (JSON text, or an object serialised to JSON) as ``filename``
        in the device's current directory."""
        if not isinstance(payload, str):
            payload = json.dumps(payload, indent=2)
        _check_strings(payload, filename)
        await _call(self.device.command_inout, "LogToJson", [payload, filename])

    async def register_logger(
        self, logger_name: str, log_level: int, file_name: str
    ) -> LoggingHandlerCloser:
        """Send the records of the local logger ``logger_name`` at ``log_level`` and above
        to ``file_name`` in the device's current directory; return the closer.

        The records go from a thread of their own, those queued meanwhile in one ``Log``
        call. While the device writes a sequence they go at once; otherwise they are held
        until it writes one, for at most ``LOG_HOLD_SECONDS``, so that the records of an
        acquisition's end and of the next one's start do not delay the start of its
        writer. Closing sends what is held at once."""
        _check_strings(logger_name, file_name)
        handler_id = await _call(self.device.command_inout, "RegisterLogger",
                                 [logger_name, str(int(log_level)), file_name])
        handler = _RemoteHandler(self.device, handler_id, log_level, held=not self._writing)
        self._log_handlers.add(handler)
        return attach_handler(logger_name, handler, log_level)


class _RemoteHandler(logging.Handler):
    """Forwards records to the device's ``Log`` command from a thread of its own (a
    record is never sent from the thread that logs it, so logging never blocks); the
    records queued meanwhile go in the same call. While ``held``, a record waits up to
    ``LOG_HOLD_SECONDS`` for :meth:`hold` to release it. It uses the walker's proxy: a
    new one per run would cost a database lookup and a connection."""

    def __init__(self, device: tango.DeviceProxy, handler_id: str, level: int,
                 held: bool = False) -> None:
        super().__init__(level)
        self.device, self.handler_id = device, handler_id
        self.setFormatter(logging.Formatter("%(message)s"))
        self._released = threading.Event()  # cleared while records are held
        self._closing = False
        self.hold(held)
        self._queue: queue.SimpleQueue[tuple[int, str] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"log-{handler_id}", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._queue.put((record.levelno, self.format(record)))
        except Exception:
            self.handleError(record)

    def _run(self) -> None:
        with tango.EnsureOmniThread():
            closing = False
            while not closing:
                records, closing = self._drain()
                if records:
                    self._send(records)
            with contextlib.suppress(tango.DevFailed):
                self.device.command_inout("DeregisterLogger", self.handler_id)

    def hold(self, held: bool) -> None:
        """Hold records (``True``) or send them at once (``False``); a closing handler
        sends at once."""
        if held and not self._closing:
            self._released.clear()
        else:
            self._released.set()

    def _drain(self) -> tuple[list[tuple[int, str]], bool]:
        """The records queued once the first has come and is released (or held for
        ``LOG_HOLD_SECONDS``), and whether closing follows."""
        items = [self._queue.get()]
        if items[-1] is not None:
            self._released.wait(LOG_HOLD_SECONDS)
        while items[-1] is not None:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items, False  # type: ignore[return-value]
        return items[:-1], True  # type: ignore[return-value]

    def _send(self, records: list[tuple[int, str]]) -> None:
        argin = [self.handler_id]
        for level, message in records:
            argin += [str(level), message]
        try:
            self.device.command_inout("Log", argin)
        except tango.DevFailed as failure:
            LOG.warning("%d remote log record(s) lost: %s", len(records),
                        failure.args[0].desc)

    def close(self) -> None:
        """Send what is queued, close the remote log file and stop the thread."""
        if self._thread.is_alive():
            self._closing = True
            self._queue.put(None)
            self._released.set()
            self._thread.join(10)
        super().close()


def _check_strings(*texts: str) -> None:
    """Refuse a NUL here: a Tango string would silently end at it."""
    for text in texts:
        if "\0" in text:
            raise PathError(f"{text!r} contains NUL")


def resolve(endpoint: str | CommData) -> str:
    """The endpoint a device connects to for ``endpoint``."""
    return endpoint.client_endpoint if isinstance(endpoint, CommData) else endpoint


def advertised(endpoint: str) -> str:
    """``endpoint`` as another host reaches it (a wildcard host becomes this host's name)."""
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[6:].rpartition(":")
        if host in ("*", "0.0.0.0", "[::]", "::"):
            return f"tcp://{socket.getfqdn()}:{port}"
    return endpoint


__all__ = ["RemoteDirectoryWalker"]
