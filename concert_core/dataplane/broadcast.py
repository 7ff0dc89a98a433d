"""Fanning one stream out to several destinations: :class:`Broadcaster`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import zmq
import zmq.asyncio

from concert_core.dataplane import tcp
from concert_core.dataplane.sender import (
    LIVE_HWM,
    RELIABLE_HWM,
    _seconds,
    open_socket,
    send_live_end,
)
from concert_core.dataplane.shared import SharedFrames
from concert_core.dataplane.wire import (
    DataPlaneTimeout,
    EndOfStream,
    Frame,
    FrameError,
    check_order,
    decode,
    encode_header,
)
from concert_core.helpers import CommData

LOG = logging.getLogger(__name__)

Endpoint = str | CommData


class Broadcaster:
    """Forwards one stream to reliable and live destinations.

    The source is read with a PULL socket (connecting to ``source_endpoint`` unless
    ``bind_source``). Each message is checked (malformed ones are counted in
    :attr:`refused` and not forwarded) and the very same ZMQ frames are sent on,
    without copying, to every destination. Each destination is a socket of its own,
    bound unless ``bind_destinations`` is false: reliable ones are PUSH sockets that
    apply back-pressure (a destination that takes nothing for ``timeout`` seconds
    raises :class:`DataPlaneTimeout` from :meth:`run`), live ones PUB sockets sent to
    without blocking, so a slow viewer only loses frames (counted per destination in
    :attr:`dropped`) and never slows the reliable destinations. A frame that arrives in
    shared memory is forwarded as an ordinary two-part message (one copy), and its slot
    given back at once: destinations may be on other hosts, and a slot has one owner.
    """

    def __init__(
        self,
        source_endpoint: Endpoint,
        reliable_destinations: Sequence[Endpoint] = (),
        live_destinations: Sequence[Endpoint] = (),
        bind_source: bool = False,
        bind_destinations: bool = True,
        timeout: float | None = 10.0,
        sndhwm: int = RELIABLE_HWM,
        live_sndhwm: int = LIVE_HWM,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self.timeout = _seconds(timeout)
        self._sockets: list[zmq.asyncio.Socket] = []
        self._shared = SharedFrames()
        self._reliable: list[zmq.asyncio.Socket] = []
        self._live: list[zmq.asyncio.Socket] = []
        try:
            self._source, self.source_endpoint = open_socket(
                context, zmq.PULL, source_endpoint, bind_source, {zmq.RCVHWM: sndhwm, zmq.LINGER: 0}
            )
            self._sockets.append(self._source)
            #: Actual endpoints of the destinations, in the order given.
            self.reliable_endpoints: list[str] = []
            self.live_endpoints: list[str] = []
            for destination in reliable_destinations:
                options = {zmq.SNDHWM: sndhwm, zmq.LINGER: 0}
                if not bind_destinations:
                    options[zmq.IMMEDIATE] = 1
                socket, address = open_socket(
                    context, zmq.PUSH, destination, bind_destinations, options,
                    congestion=tcp.TCP_CONGESTION,
                )
                self._sockets.append(socket)
                self._reliable.append(socket)
                self.reliable_endpoints.append(address)
            for destination in live_destinations:
                options = {zmq.SNDHWM: live_sndhwm, zmq.LINGER: 0, zmq.XPUB_NODROP: 1}
                socket, address = open_socket(
                    context, zmq.PUB, destination, bind_destinations, options,
                    congestion=tcp.TCP_CONGESTION,
                )
                self._sockets.append(socket)
                self._live.append(socket)
                self.live_endpoints.append(address)
        except BaseException:
            self.close()
            raise
        #: Frames forwarded, malformed messages refused, streams ended.
        self.forwarded = 0
        self.refused = 0
        self.streams = 0
        #: Frames dropped per live destination.
        self.dropped = [0] * len(self._live)

    async def _send_reliable(self, socket: zmq.asyncio.Socket, address: str, parts: list) -> None:
        try:
            await asyncio.wait_for(socket.send_multipart(parts, copy=False), self.timeout)
        except TimeoutError:
            raise DataPlaneTimeout(
                f"reliable destination {address} took nothing for {self.timeout} s"
            ) from None

    async def run(self, streams: int | None = 1) -> int:
        """Forward messages until ``streams`` end-of-stream messages have passed
        (``None``: until cancelled). Returns the number of frames forwarded."""
        forwarded = self.forwarded
        expected = 0
        ended = 0
        while streams is None or ended < streams:
            parts = await self._source.recv_multipart(copy=False)
            try:
                message = decode(parts)
                if isinstance(message, Frame):
                    if message.shm is not None:
                        parts = self._materialise(message)
                    check_order(message.index, expected)
            except FrameError as error:
                self.refused += 1
                LOG.warning("broadcaster refused a message: %s", error)
                continue
            if isinstance(message, EndOfStream):
                expected = 0
                ended += 1
                self.streams += 1
                for socket in self._live:
                    await send_live_end(socket, parts[0].bytes, min(self.timeout or 1.0, 1.0))
            else:
                expected += 1
                self.forwarded += 1
                for number, socket in enumerate(self._live):
                    try:
                        await socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        self.dropped[number] += 1
            if self._reliable:
                await asyncio.gather(
                    *(
                        self._send_reliable(socket, address, parts)
                        for socket, address in zip(
                            self._reliable, self.reliable_endpoints, strict=True
                        )
                    )
                )
        return self.forwarded - forwarded

    def _materialise(self, frame: Frame) -> list[bytes]:
        """A shared-memory frame as a two-part message; its slot is freed."""
        array, release = self._shared.array(frame.shm, frame.dtype, frame.shape)
        try:
            header = encode_header(frame.dtype, frame.shape, frame.index, frame.metadata)
            return [header, array.tobytes()]
        finally:
            del array
            release()

    def close(self) -> None:
        """Close every socket; reliable destinations keep delivering what is queued for
        ``timeout`` seconds in the background."""
        linger = int((self.timeout if self.timeout is not None else 10.0) * 1000)
        for socket in self._sockets:
            socket.close(linger=linger if socket in self._reliable else 0)
        self._sockets = []
        self._shared.close()

    async def __aenter__(self) -> Broadcaster:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()


__all__ = ["Broadcaster"]
