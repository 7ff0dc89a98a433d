"""Sending frames: :class:`ImageSender`, and endpoint helpers shared by the data plane."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from concert_core.dataplane.wire import DataPlaneError, DataPlaneTimeout, encode_end, encode_header
from concert_core.helpers import CommData

LOG = logging.getLogger(__name__)

#: Frames smaller than this are copied into the message (cheaper than tracking them).
COPY_THRESHOLD = 1 << 16
#: Default high-water marks (messages queued per peer) of reliable and live sockets.
RELIABLE_HWM = 100
LIVE_HWM = 2


def resolve_endpoint(endpoint: str | CommData, bind: bool) -> str:
    """A ZMQ endpoint string from ``endpoint`` (a string or a :class:`CommData`).

    A :class:`CommData` gives its server endpoint when binding, its client endpoint
    otherwise. A tcp port of ``0`` means "any free port". A bare ``"tcp://:port"``
    binds to loopback.
    """
    if isinstance(endpoint, CommData):
        return endpoint.server_endpoint if bind else endpoint.client_endpoint
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise ValueError(f"not a ZMQ endpoint: {endpoint!r}")
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[6:].rpartition(":")
        if not host or host == "localhost":
            host = "127.0.0.1"
        if port == "0" and bind:
            port = "*"
        endpoint = f"tcp://{host}:{port}"
    return endpoint


def open_socket(
    context: zmq.asyncio.Context | None,
    socket_type: int,
    endpoint: str | CommData,
    bind: bool,
    options: Mapping[int, Any] = (),  # type: ignore[assignment]
) -> tuple[zmq.asyncio.Socket, str]:
    """Create, configure and bind or connect a socket; return it and its actual endpoint."""
    context = context or zmq.asyncio.Context.instance()
    address = resolve_endpoint(endpoint, bind)
    socket = context.socket(socket_type)
    try:
        for option, value in dict(options).items():
            socket.setsockopt(option, value)
        if bind:
            socket.bind(address)
            address = socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        else:
            socket.connect(address)
    except BaseException:
        socket.close(linger=0)
        raise
    return socket, address


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if hasattr(timeout, "to"):
        return float(timeout.to("s").magnitude)
    return float(timeout)


class ImageSender:
    """Sends numpy frames over ZMQ in the wire format of :mod:`.wire`.

    ``reliable=True`` uses a PUSH socket: :meth:`send` waits while the receiver is
    behind (back-pressure through ``sndhwm``) and raises :class:`DataPlaneTimeout` if a
    frame cannot leave within ``timeout`` seconds (no peer, or a stuck one); nothing is
    dropped silently. ``reliable=False`` uses a PUB socket for live views: a frame
    that cannot be queued at once is dropped and counted in :attr:`dropped`.

    Large frames of a reliable stream go out without copying. With ``in_flight=0``
    (the default) :meth:`send` returns only once ZMQ has released the buffer, so the
    caller may reuse its array at once. ``in_flight=k`` lets up to ``k`` frames still
    be in transmission when :meth:`send` returns (faster: sending overlaps the
    producer's work); the caller then must not modify those arrays in place until
    later sends, :meth:`flush` or :meth:`end` return. Live frames are copied once, so
    a slow viewer never holds the producer's buffer. The caller's array and metadata
    are never modified.

    The sender binds (``bind=True``, the default; port 0 picks a free port, see
    :attr:`endpoint`) or connects. Use it as an async context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        endpoint: str | CommData,
        reliable: bool = True,
        bind: bool = True,
        sndhwm: int | None = None,
        timeout: float | None = 10.0,
        context: zmq.asyncio.Context | None = None,
        in_flight: int = 0,
    ) -> None:
        if in_flight < 0:
            raise ValueError(f"in_flight must be >= 0, not {in_flight}")
        self.in_flight = in_flight
        self._pending: collections.deque[tuple[int, zmq.MessageTracker]] = collections.deque()
        if sndhwm is None:
            sndhwm = endpoint.sndhwm if isinstance(endpoint, CommData) else None
        if sndhwm is None:
            sndhwm = RELIABLE_HWM if reliable else LIVE_HWM
        self.reliable = reliable
        self.timeout = _seconds(timeout)
        options: dict[int, Any] = {zmq.SNDHWM: sndhwm, zmq.LINGER: 0}
        if reliable:
            if not bind:
                options[zmq.IMMEDIATE] = 1  # never queue for a peer that is not there
            socket_type = zmq.PUSH
        else:
            options[zmq.XPUB_NODROP] = 1  # a full queue raises EAGAIN: drops are counted
            socket_type = zmq.PUB
        self._socket, self.endpoint = open_socket(context, socket_type, endpoint, bind, options)
        self._sync = zmq.Socket.shadow(self._socket.underlying)
        self._index = 0
        #: Frames sent (over all streams), frames dropped (live only), payload bytes sent.
        self.sent = 0
        self.dropped = 0
        self.bytes_sent = 0
        self.streams = 0
        self.closed = False

    @property
    def index(self) -> int:
        """Index the next frame of the current stream gets (frames offered so far)."""
        return self._index

    async def send(self, image: Any, metadata: Mapping[str, Any] | None = None) -> bool:
        """Send ``image`` (with its own ``metadata`` attribute, updated by ``metadata``).

        Returns ``True`` if sent, ``False`` if a live frame was dropped. Raises
        :class:`~.wire.FrameError` for an array or metadata that cannot be sent (before
        anything is sent) and :class:`DataPlaneTimeout` as described in the class.
        """
        self._check_open()
        array = np.asarray(image)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        merged: dict[str, Any] = dict(getattr(image, "metadata", None) or {})
        if metadata:
            merged.update(metadata)
        header = encode_header(array.dtype, array.shape, self._index, merged)
        payload = memoryview(array.reshape(-1).view(np.uint8)) if array.size else b""
        if self.reliable:
            await self._send_reliable(header, payload)
        else:
            try:
                await self._socket.send_multipart([header, payload], flags=zmq.NOBLOCK)
            except zmq.Again:
                self.dropped += 1
                self._index += 1
                return False
        self._index += 1
        self.sent += 1
        self.bytes_sent += array.nbytes
        return True

    async def _send_reliable(self, header: bytes, payload: Any) -> None:
        began = time.monotonic()
        zero_copy = len(payload) >= COPY_THRESHOLD
        while True:
            try:  # fast path: room in the queue, no future and no selector round trip
                tracker = self._sync.send_multipart(
                    [header, payload], flags=zmq.NOBLOCK, copy=not zero_copy, track=zero_copy
                )
                break
            except zmq.Again:
                pass
            remaining = None if self.timeout is None else self.timeout - (time.monotonic() - began)
            expired = remaining is not None and remaining <= 0
            wait_ms = None if remaining is None else int(remaining * 1000) + 1
            if expired or not await self._socket.poll(wait_ms, zmq.POLLOUT):
                raise DataPlaneTimeout(
                    f"frame {self._index} could not be sent to {self.endpoint} within "
                    f"{self.timeout} s: no receiver, or it stopped reading"
                )
        if zero_copy and tracker is not None and not tracker.done:
            self._pending.append((self._index, tracker))
        while len(self._pending) > self.in_flight:
            await self._release_oldest(began)

    async def _release_oldest(self, began: float) -> None:
        index, tracker = self._pending.popleft()
        if not tracker.done:
            remaining = None if self.timeout is None else self.timeout - (time.monotonic() - began)
            await self._wait_released(tracker, remaining, index)

    async def flush(self) -> None:
        """Wait until ZMQ has released every frame still in transmission."""
        began = time.monotonic()
        while self._pending:
            await self._release_oldest(began)

    async def _wait_released(
        self, tracker: zmq.MessageTracker, remaining: float | None, index: int
    ) -> None:
        try:
            await asyncio.to_thread(tracker.wait, None if remaining is None else max(remaining, 0))
        except zmq.NotDone:
            raise DataPlaneTimeout(
                f"frame {index} was not transmitted to {self.endpoint} within {self.timeout} s"
            ) from None

    async def end(self) -> int:
        """Send the end of the current stream; return its frame count and start a new one.

        A live end that cannot be queued is retried for up to ``timeout`` (at most 1 s).
        """
        self._check_open()
        await self.flush()
        count = self._index
        message = encode_end(count)
        if self.reliable:
            try:
                await asyncio.wait_for(self._socket.send(message), self.timeout)
            except TimeoutError:
                raise DataPlaneTimeout(
                    f"end of stream could not be sent to {self.endpoint} within {self.timeout} s"
                ) from None
        else:
            await send_live_end(self._socket, message, min(self.timeout or 1.0, 1.0))
        self._index = 0
        self.streams += 1
        return count

    def restart(self) -> None:
        """Abandon the current stream without an end message (its receiver sees no end and
        times out); the next frame starts a new stream at index 0."""
        self._pending.clear()
        self._index = 0

    def _check_open(self) -> None:
        if self.closed:
            raise DataPlaneError(f"sender on {self.endpoint} is closed")

    def close(self, linger: float | None = None) -> None:
        """Close the socket; a reliable sender keeps delivering what is queued for
        ``linger`` seconds (default: ``timeout``) in the background."""
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        if linger is None:
            linger = (self.timeout if self.timeout is not None else 10.0) if self.reliable else 0
        self._socket.close(linger=int(linger * 1000))

    async def __aenter__(self) -> ImageSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "reliable" if self.reliable else "live"
        return f"<ImageSender {kind} {self.endpoint} sent={self.sent} dropped={self.dropped}>"


async def send_live_end(socket: zmq.asyncio.Socket, message: bytes, patience: float) -> bool:
    """Queue an end-of-stream on a live socket without blocking the loop; retry while
    the queue is full for ``patience`` seconds. Returns whether it was queued."""
    deadline = time.monotonic() + patience
    while True:
        try:
            await socket.send(message, flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            if time.monotonic() >= deadline:
                LOG.debug("live end of stream dropped (queue full)")
                return False
            await asyncio.sleep(0.005)


__all__ = ["COPY_THRESHOLD", "ImageSender", "open_socket", "resolve_endpoint", "send_live_end"]
