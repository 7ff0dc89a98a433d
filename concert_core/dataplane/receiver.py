"""Receiving frames: :class:`ImageReceiver`, and :class:`ReceivedStream` for one of its
streams, read with ``async for`` or by a worker thread (a writer) with blocking calls."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import zmq
import zmq.asyncio

from concert_core.dataplane.sender import (
    LIVE_HWM,
    RELIABLE_HWM,
    _seconds,
    close_socket,
    open_socket,
)
from concert_core.dataplane.shared import SharedFrames
from concert_core.dataplane.wire import (
    DataPlaneError,
    DataPlaneTimeout,
    EndOfStream,
    FrameError,
    check_order,
    decode,
)
from concert_core.helpers import CommData, ImageWithMetadata

LOG = logging.getLogger(__name__)

_UNSET: Any = object()
#: Returned by ``ImageReceiver._accept`` for the end of a stream.
_END: Any = object()
#: Seconds a blocking reader waits for a message before it looks at its stop event.
STOP_POLL = 0.05


def _runs_on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the calling thread is running ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class ImageReceiver:
    """Receives the frames of an :class:`~.sender.ImageSender` (or any peer speaking the
    wire format).

    ``reliable=True`` uses a PULL socket, ``reliable=False`` a SUB socket subscribed to
    everything (a live stream: gaps in the indices are counted in :attr:`missed`, not
    refused). The receiver connects (``bind=False``, the default) or binds.

    Frames in shared memory (a sender with ``shared_memory``, on this host) arrive as
    zero-copy read-only arrays on the sender's slot; the slot is given back when the
    frame and every view of it have been garbage collected, so keep a copy of a frame
    you hold for long (each held frame takes one of the sender's few slots).

    Every message is checked (:func:`.wire.decode`); a malformed one is counted in
    :attr:`refused` and, with ``on_error='skip'`` (the default), skipped, with
    ``on_error='raise'`` raised from :meth:`frames`. If no message arrives within
    ``timeout`` seconds (``None``: wait forever), :meth:`frames` raises
    :class:`DataPlaneTimeout` (``on_timeout='raise'``, the default) or just ends
    (``on_timeout='end'``; :attr:`timed_out` tells the two endings apart).
    """

    def __init__(
        self,
        endpoint: str | CommData,
        reliable: bool = True,
        bind: bool = False,
        timeout: float | None = 10.0,
        on_error: str = "skip",
        on_timeout: str = "raise",
        rcvhwm: int | None = None,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
        if on_timeout not in ("raise", "end"):
            raise ValueError(f"on_timeout must be 'raise' or 'end', not {on_timeout!r}")
        if rcvhwm is None:
            rcvhwm = RELIABLE_HWM if reliable else LIVE_HWM
        self.reliable = reliable
        self.timeout = _seconds(timeout)
        self.on_error = on_error
        self.on_timeout = on_timeout
        options: dict[int, Any] = {zmq.RCVHWM: rcvhwm, zmq.LINGER: 0}
        if reliable:
            socket_type = zmq.PULL
        else:
            socket_type = zmq.SUB
            options[zmq.SUBSCRIBE] = b""
        self._socket, self.endpoint = open_socket(context, socket_type, endpoint, bind, options)
        self._sync = zmq.Socket.shadow(self._socket.underlying)
        self._shared = SharedFrames()
        #: Frames yielded, malformed messages refused, frames missing in live streams,
        #: payload bytes received, streams that ended with an end-of-stream message.
        self.received = 0
        self.refused = 0
        self.missed = 0
        self.bytes_received = 0
        self.streams = 0
        #: Count announced by the last end-of-stream (``None`` before one arrived).
        self.end_count: int | None = None
        #: Frames received in the current (or last) stream.
        self.stream_received = 0
        self.last_error: FrameError | None = None
        self.timed_out = False
        self.closed = False
        self._expected = 0  # index of the next frame of the current stream
        #: Who uses the socket: the thread reading it (frames_blocking), the event loop
        #: whose frames() waits on it (not while suspended at a frame), or None.
        self._reader: threading.Thread | asyncio.AbstractEventLoop | None = None
        self._stream_number = 0  # streams begun: a reader resumed after another began stops
        self._reader_lock = threading.Lock()

    @property
    def complete(self) -> bool:
        """Whether the last stream ended with all frames its sender announced."""
        return self.end_count is not None and self.end_count == self.stream_received

    async def frames(self, timeout: float | None = _UNSET) -> AsyncIterator[ImageWithMetadata]:
        """Yield the frames of one stream until its end-of-stream message.

        Each frame is an :class:`ImageWithMetadata` built on the received buffer, its
        metadata being the sender's plus ``"index"`` (the frame's index in the stream).
        ``timeout`` overrides the receiver's for this stream. Call again for the next
        stream.

        While it waits for a message the socket is this generator's: a thread reader
        (:meth:`ReceivedStream.frames_blocking`) or a second :meth:`frames` is refused.
        Suspended at a frame, it holds nothing; resumed after another reader began a
        stream or after :meth:`close`, it raises :class:`DataPlaneError`.
        """
        loop = asyncio.get_running_loop()
        with self._reader_lock:
            limit = self._begin(timeout)
            number = self._stream_number
            self._reader = loop
        holding = True
        poll_ms = None if limit is None else max(int(limit * 1000), 0)
        try:
            while True:
                try:  # fast path: a message is waiting (no future, no selector round trip)
                    parts = self._sync.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    parts = None
                if parts is None and not await self._poll(poll_ms):
                    self._timeout_reached(limit)
                    return
                if parts is None:
                    try:  # polled in: a whole message is there
                        parts = self._sync.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        parts = await self._socket.recv_multipart(copy=False)
                image = [self._accept(parts)]
                if image[0] is None:
                    continue
                if image[0] is _END:
                    return
                self._let_go()
                holding = False
                yield image.pop()  # suspended, the generator holds no frame (nor its slot)
                self._hold_again(number, loop)
                holding = True
        finally:
            if holding:
                self._let_go()

    async def _poll(self, poll_ms: int | None) -> int:
        """Wait for a message; :meth:`close` meanwhile raises :class:`DataPlaneError`
        (pyzmq cancels the wait of a socket it closes: not a cancellation of the task)."""
        try:
            return await self._socket.poll(poll_ms, zmq.POLLIN)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.closed and task is not None and not task.cancelling():
                raise self._closed_while_read() from None
            raise

    def _closed_while_read(self) -> DataPlaneError:
        return DataPlaneError(f"receiver on {self.endpoint} was closed while read")

    def _let_go(self) -> None:
        with self._reader_lock:
            self._reader = None

    def _hold_again(self, number: int, loop: asyncio.AbstractEventLoop) -> None:
        """Take the socket back for the :meth:`frames` reading stream ``number`` on
        ``loop``."""
        with self._reader_lock:
            if self.closed:
                raise self._closed_while_read()
            if self._stream_number != number:
                raise DataPlaneError(
                    f"receiver on {self.endpoint}: another reader began a stream while this "
                    "one was suspended"
                )
            self._reader = loop

    def stream(self, timeout: float | None = _UNSET) -> ReceivedStream:
        """The next stream, to be read with ``async for`` (as :meth:`frames`) or, in a
        worker thread, with :meth:`ReceivedStream.frames_blocking` (which takes the event
        loop off the path of every frame; writers use it)."""
        return ReceivedStream(self, timeout)

    def _begin(self, timeout: float | None) -> float | None:
        """Start a stream (under ``_reader_lock``): check the receiver is open and read
        by nobody, reset the stream's counters and return its timeout."""
        if self.closed:
            raise DataPlaneError(f"receiver on {self.endpoint} is closed")
        if self._reader is not None:
            by = "a thread" if isinstance(self._reader, threading.Thread) else "frames()"
            raise DataPlaneError(f"receiver on {self.endpoint} is read by {by} already")
        self._stream_number += 1
        self._expected = 0
        self.stream_received = 0
        self.end_count = None
        self.timed_out = False
        return self.timeout if timeout is _UNSET else _seconds(timeout)

    def _timeout_reached(self, limit: float | None) -> None:
        """No message within ``limit``: end the stream or raise, as ``on_timeout`` says."""
        self.timed_out = True
        if self.on_timeout == "end":
            LOG.info("no frame on %s for %s s: stream ends", self.endpoint, limit)
            return
        raise DataPlaneTimeout(
            f"no message on {self.endpoint} within {limit} s after frame "
            f"{self._expected - 1} (sender gone?)"
        )

    def _accept(self, parts: list) -> Any:
        """Check one message and count it: the frame, :data:`_END` for the end of the
        stream, or ``None`` for a refused message (``on_error='raise'``: raised)."""
        array = release = None
        try:
            message = decode(parts)
            if not isinstance(message, EndOfStream):
                if message.shm is not None:
                    array, release = self._shared.array(message.shm, message.dtype, message.shape)
                else:
                    array = message.array()
                check_order(message.index, self._expected, allow_gaps=not self.reliable)
        except FrameError as error:
            if release is not None:
                release()  # a refused frame gives its slot back at once
            array = release = None
            self.refused += 1
            self.last_error = error
            if self.on_error == "raise":
                raise
            if self.refused <= 10 or self.refused % 1000 == 0:  # no log flood
                LOG.warning("refused message %d on %s: %s", self.refused, self.endpoint, error)
            return None
        if isinstance(message, EndOfStream):
            self._shared.prune()  # segments the sender replaced meanwhile
            self.end_count = message.count
            self.streams += 1
            if message.count > self._expected:  # frames at the tail never arrived
                self.missed += message.count - self._expected
                LOG.warning(
                    "stream on %s ended after %d of %d frames",
                    self.endpoint,
                    self.stream_received,
                    message.count,
                )
            return _END
        if message.index > self._expected:
            self.missed += message.index - self._expected
        self._expected = message.index + 1
        image = array.view(ImageWithMetadata)
        image.metadata = message.metadata  # decoded for this frame: no copy needed
        image.metadata["index"] = message.index
        self.received += 1
        self.stream_received += 1
        self.bytes_received += image.nbytes
        return image

    def close(self) -> None:
        """Close the socket and unmap shared memory (frames still alive stay valid).

        libzmq sockets are not thread-safe, so the socket is closed by whoever reads it:
        a thread reading the receiver (:meth:`ReceivedStream.frames_blocking`) closes it
        within :data:`STOP_POLL` s, and :meth:`frames` waiting on an event loop of
        another thread has it closed there, soon after. Either reading fails with
        :class:`DataPlaneError`."""
        with self._reader_lock:
            if self.closed:
                return
            self.closed = True
            reader = self._reader
        if isinstance(reader, threading.Thread):
            return  # the reading thread closes the socket on its way out
        if reader is not None and reader.is_running() and not _runs_on(reader):
            try:
                reader.call_soon_threadsafe(self._release)
                return
            except RuntimeError:  # the loop closed meanwhile: nothing polls the socket
                pass
        self._release()

    def _release(self) -> None:
        close_socket(self._socket)
        self._shared.close()

    async def __aenter__(self) -> ImageReceiver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "reliable" if self.reliable else "live"
        return (
            f"<ImageReceiver {kind} {self.endpoint} received={self.received} "
            f"refused={self.refused} missed={self.missed}>"
        )


class ReceivedStream:
    """One stream of an :class:`ImageReceiver` (see :meth:`ImageReceiver.stream`)."""

    def __init__(self, receiver: ImageReceiver, timeout: float | None = _UNSET) -> None:
        self.receiver = receiver
        self.timeout = timeout

    def __aiter__(self) -> AsyncIterator[ImageWithMetadata]:
        return self.receiver.frames(self.timeout).__aiter__()

    def frames_blocking(
        self, stop: threading.Event, idle: Callable[[], Any] | None = None
    ) -> Iterator[ImageWithMetadata]:
        """Yield the stream's frames as :meth:`ImageReceiver.frames` does, blocking the
        calling thread (a worker thread; the event loop must not use the receiver
        meanwhile). ``idle()`` is called whenever no message is waiting, before the
        thread blocks. Ends early, quietly, once ``stop`` is set (within
        :data:`STOP_POLL` s); the caller tells that ending from the stream's end by
        ``stop``."""
        receiver = self.receiver
        with receiver._reader_lock:  # checked, reset and claimed in one step
            limit = receiver._begin(self.timeout)
            receiver._reader = threading.current_thread()
        try:
            yield from self._read(receiver, limit, stop, idle)
        finally:
            with receiver._reader_lock:
                receiver._reader = None
                closed = receiver.closed
            if closed:  # closed meanwhile by another thread: the socket is this one's
                receiver._release()

    @staticmethod
    def _read(
        receiver: ImageReceiver,
        limit: float | None,
        stop: threading.Event,
        idle: Callable[[], Any] | None,
    ) -> Iterator[ImageWithMetadata]:
        socket = receiver._sync
        waited = 0.0
        while not stop.is_set():
            if receiver.closed:
                raise receiver._closed_while_read()
            try:
                parts = socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                if idle is not None:
                    idle()
                step = STOP_POLL if limit is None else min(STOP_POLL, limit - waited)
                if step <= 0:
                    receiver._timeout_reached(limit)
                    return
                began = time.monotonic()
                if not socket.poll(max(int(step * 1000), 1), zmq.POLLIN):  # no busy wait
                    waited += time.monotonic() - began
                continue
            waited = 0.0
            image = [receiver._accept(parts)]
            if image[0] is None:
                continue
            if image[0] is _END:
                return
            yield image.pop()  # suspended, the generator holds no frame (nor its slot)


__all__ = ["ImageReceiver", "ReceivedStream"]
