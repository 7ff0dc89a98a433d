"""Sending frames: :class:`ImageSender`, and endpoint helpers shared by the data plane."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import secrets
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from concert_core.coroutines.base import sleep
from concert_core.dataplane import tcp
from concert_core.dataplane.shared import DEFAULT_SLOTS, MAX_SLOTS, SharedRing, close_rings
from concert_core.dataplane.wire import (
    DataPlaneError,
    DataPlaneTimeout,
    check_dtype,
    compose_header,
    encode_end,
    encode_header,
    encode_metadata,
)
from concert_core.helpers import CommData

LOG = logging.getLogger(__name__)

#: Frames smaller than this are copied into the message (cheaper than tracking them).
COPY_THRESHOLD = 1 << 16
#: Default number of zero-copy frames that may still be in transmission after send().
IN_FLIGHT = 4
#: With shared memory, frames of at least this many bytes go through a slot.
SHARED_THRESHOLD = COPY_THRESHOLD
#: Frames of at least this many bytes are copied into a slot in a worker thread.
COPY_IN_THREAD = 1 << 20
#: Retired shared-memory rings kept for frames still held; older ones are removed.
MAX_RETIRED = 2
#: Bytes per second a receiver is assumed to free slots at: paces the wait for a slot.
SLOT_POLL_RATE = 1e10
#: Default high-water marks (messages queued per peer) of reliable and live sockets.
RELIABLE_HWM = 100
LIVE_HWM = 2


def resolve_endpoint(endpoint: str | CommData, bind: bool) -> str:
    """A ZMQ endpoint string from ``endpoint`` (a string or a :class:`CommData`).

    A :class:`CommData` gives its server endpoint when binding, its client endpoint
    otherwise. A tcp port of ``0`` means "any free port". A bare ``"tcp://:port"``
    binds to loopback. ``"ipc://*"`` binds a fresh socket file in the temporary directory
    (libzmq's own wildcard falls back to the working directory when ``TMPDIR`` is unset,
    and leaves a directory there if the process is killed).
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
    elif endpoint == "ipc://*" and bind:
        name = f"{_IPC_PREFIX}{os.getpid()}-{secrets.token_hex(8)}.ipc"
        endpoint = f"ipc://{os.path.join(tempfile.gettempdir(), name)}"
    return endpoint


#: Start of the socket files :func:`resolve_endpoint` makes for ``ipc://*``.
_IPC_PREFIX = "concert-"
#: Socket files of bound sockets to remove when the socket is closed or dropped (libzmq
#: removes the files of its own wildcards only).
_SOCKET_FILES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remove_file(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def close_socket(socket: zmq.Socket, linger: int = 0) -> None:
    """Close ``socket`` (``linger`` in ms) and remove the socket file it was bound to by
    ``ipc://*``; connections it has keep delivering for ``linger``."""
    socket.close(linger=linger)
    remove = _SOCKET_FILES.pop(socket, None)
    if remove is not None:
        remove()


def open_socket(
    context: zmq.asyncio.Context | None,
    socket_type: int,
    endpoint: str | CommData,
    bind: bool,
    options: Mapping[int, Any] = (),  # type: ignore[assignment]
    prepare: Callable[[zmq.Socket], Any] | None = None,
    congestion: Sequence[str] = (),
) -> tuple[zmq.asyncio.Socket, str]:
    """Create, configure and bind or connect a socket; return it and its actual endpoint.
    ``prepare(socket)`` runs just before the bind or connect (to start a monitor). A tcp
    socket that binds replaces a pacing default congestion control of its connections
    with the first of ``congestion`` the host allows (:mod:`.tcp`; empty: never)."""
    context = context or zmq.asyncio.Context.instance()
    address = resolve_endpoint(endpoint, bind)
    socket = context.socket(socket_type)
    try:
        for option, value in dict(options).items():
            socket.setsockopt(option, value)
        if prepare is not None:
            prepare(socket)
        if bind:
            if address.startswith("tcp://"):
                tcp.bind(socket, address, congestion)
            else:
                socket.bind(address)
            address = socket.getsockopt(zmq.LAST_ENDPOINT).decode()
            path = address.removeprefix("ipc://")
            if address.startswith("ipc://") and os.path.basename(path).startswith(_IPC_PREFIX):
                _SOCKET_FILES[socket] = weakref.finalize(socket, _remove_file, path)
        else:
            socket.connect(address)
    except BaseException:
        close_socket(socket)
        raise
    return socket, address


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if hasattr(timeout, "to"):
        return float(timeout.to("s").magnitude)
    return float(timeout)


class _Reservation:
    """A slot handed out by :meth:`ImageSender.buffer` (freed if never sent)."""

    __slots__ = ("address", "nbytes", "ring", "sent", "slot")

    def __init__(self, ring: SharedRing, slot: int, nbytes: int, address: int) -> None:
        self.ring, self.slot, self.nbytes, self.address = ring, slot, nbytes, address
        self.sent = False


def _unreserve(reserved: dict[int, _Reservation], token: _Reservation) -> None:
    """Finalizer of a buffer's array: free its slot unless the buffer was sent."""
    if token.sent:
        return
    if reserved.get(token.address) is token:
        with contextlib.suppress(KeyError):
            del reserved[token.address]
    token.ring.free(token.slot)


def _unlink_rings(rings: list[SharedRing]) -> None:
    for ring in rings:
        ring.unlink()


class ImageSender:
    """Sends numpy frames over ZMQ in the wire format of :mod:`.wire`.

    ``reliable=True`` uses a PUSH socket: :meth:`send` waits while the receiver is
    behind (back-pressure through ``sndhwm``) and raises :class:`DataPlaneTimeout` if a
    frame cannot leave within ``timeout`` seconds (no peer, or a stuck one); nothing is
    dropped silently. ``reliable=False`` uses a PUB socket for live views: a frame
    that cannot be queued at once is dropped and counted in :attr:`dropped`.

    Large frames of a reliable stream go out without copying, and up to ``in_flight``
    (default 4) of them may still be in transmission when :meth:`send` returns, so
    sending overlaps the producer's work. Meanwhile the array passed to :meth:`send` is
    read-only (numpy raises "assignment destination is read-only" on a premature
    write); it is writable again once ZMQ has released it, as seen by later sends,
    :meth:`flush`, :meth:`end` or :meth:`close` (arrays that were read-only stay so;
    other views of the same memory are not guarded). ``in_flight=0`` makes each send
    wait until its buffer is released. Small, non-contiguous and live frames are
    copied, so they are not guarded (a slow viewer never holds the producer's buffer).
    The caller's metadata are never modified.

    ``shared_memory=True`` (reliable only, for receivers on the same host) sends frames
    of :data:`SHARED_THRESHOLD` bytes or more through slots of a shared-memory ring
    (:mod:`.shared`, ``slots`` per ring): only the header travels over ZMQ. A frame from
    :meth:`buffer` is sent without any copy, any other is copied into a free slot. A
    slot is busy until the receiver has dropped its frame; waiting longer than
    ``timeout`` for a free one raises :class:`DataPlaneTimeout`.

    The sender binds (``bind=True``, the default; port 0 picks a free port, see
    :attr:`endpoint`) or connects. Bound to a tcp address on a host whose default TCP
    congestion control paces (BBR), its connections use the first of ``tcp_congestion``
    the host allows instead (default :data:`.tcp.TCP_CONGESTION`: CUBIC, else Reno; see
    :mod:`.tcp`; ``()`` keeps the host's); :attr:`tcp_congestion` tells which they use.
    Use it as an async context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        endpoint: str | CommData,
        reliable: bool = True,
        bind: bool = True,
        sndhwm: int | None = None,
        timeout: float | None = 10.0,
        context: zmq.asyncio.Context | None = None,
        in_flight: int = IN_FLIGHT,
        shared_memory: bool = False,
        slots: int = DEFAULT_SLOTS,
        tcp_congestion: Sequence[str] = tcp.TCP_CONGESTION,
    ) -> None:
        if in_flight < 0:
            raise ValueError(f"in_flight must be >= 0, not {in_flight}")
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be between 1 and {MAX_SLOTS}, not {slots}")
        self.in_flight = in_flight
        self.slots = slots
        self.reliable = reliable
        self._shared_memory = False
        self.shared_memory = shared_memory
        # (index, tracker, guarded array or None) of frames ZMQ may still hold
        self._pending: collections.deque[tuple[int, zmq.MessageTracker, Any]] = (
            collections.deque())
        self._abandoned: list[tuple[int, zmq.MessageTracker, Any]] = []
        self._guards: dict[int, list] = {}  # id(array) -> [array, frames in flight]
        self._ring: SharedRing | None = None  # the ring new frames go to
        self._rings: list[SharedRing] = []  # every ring not unlinked yet, current last
        self._reserved: dict[int, _Reservation] = {}  # buffer address -> reservation
        self._new_stream = True
        self._finalizer = weakref.finalize(self, _unlink_rings, self._rings)
        if sndhwm is None:
            sndhwm = endpoint.sndhwm if isinstance(endpoint, CommData) else None
        if sndhwm is None:
            sndhwm = RELIABLE_HWM if reliable else LIVE_HWM
        self.timeout = _seconds(timeout)
        options: dict[int, Any] = {zmq.SNDHWM: sndhwm, zmq.LINGER: 0}
        if reliable:
            if not bind:
                options[zmq.IMMEDIATE] = 1  # never queue for a peer that is not there
            socket_type = zmq.PUSH
        else:
            options[zmq.XPUB_NODROP] = 1  # a full queue raises EAGAIN: drops are counted
            socket_type = zmq.PUB
        self._socket, self.endpoint = open_socket(context, socket_type, endpoint, bind, options,
                                                  congestion=tcp_congestion)
        #: The TCP congestion control of the sender's connections (a tcp sender that
        #: binds), else ``None``.
        self.tcp_congestion = tcp.congestion_of(self._socket)
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

    @property
    def shared_memory(self) -> bool:
        """Whether large frames travel in shared memory (may change between frames)."""
        return self._shared_memory

    @shared_memory.setter
    def shared_memory(self, value: bool) -> None:
        if value and not self.reliable:
            raise ValueError("shared memory needs a reliable sender (live frames are copied)")
        self._shared_memory = bool(value)

    @property
    def segments(self) -> list[str]:
        """Names of the shared-memory segments the sender holds (current one last)."""
        return [ring.name for ring in self._rings if ring.linked]

    async def buffer(self, shape: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """A new writable array to render a frame into, for :meth:`send`.

        With ``shared_memory`` and a frame of at least :data:`SHARED_THRESHOLD` bytes it
        lies in a free slot (waiting up to ``timeout`` for one), so sending it copies
        nothing; otherwise it is ``np.empty``. A buffer dropped unsent frees its slot.
        Once sent, the slot is the receiver's: the array becomes read-only, and its
        contents change when the slot is used again.
        """
        self._check_open()
        dtype = check_dtype(dtype)
        shape = (int(shape),) if isinstance(shape, int | np.integer) else tuple(map(int, shape))
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if not self._shared_memory or nbytes < SHARED_THRESHOLD:
            return np.empty(shape, dtype)
        ring, slot = await self._take_slot(nbytes)
        root = ring.array(slot, dtype, count)
        array = root.reshape(shape)
        token = _Reservation(ring, slot, nbytes, root.__array_interface__["data"][0])
        self._reserved[token.address] = token
        weakref.finalize(root, _unreserve, self._reserved, token).atexit = False
        return array

    async def send(self, image: Any, metadata: Mapping[str, Any] | None = None) -> bool:
        """Send ``image`` (with its own ``metadata`` attribute, updated by ``metadata``).

        Returns ``True`` if sent, ``False`` if a live frame was dropped. Raises
        :class:`~.wire.FrameError` for an array or metadata that cannot be sent (before
        anything is sent) and :class:`DataPlaneTimeout` as described in the class.
        """
        self._check_open()
        array = np.asarray(image)
        merged: dict[str, Any] = dict(getattr(image, "metadata", None) or {})
        if metadata:
            merged.update(metadata)
        if self._shared_memory and array.nbytes >= SHARED_THRESHOLD:
            await self._send_shared(image, array, merged)
        else:
            copied = not array.flags.c_contiguous
            if copied:
                array = np.ascontiguousarray(array)
            header = encode_header(array.dtype, array.shape, self._index, merged)
            payload = memoryview(array.reshape(-1).view(np.uint8)) if array.size else b""
            if self.reliable:
                zero_copy = len(payload) >= COPY_THRESHOLD
                await self._send_reliable([header, payload], zero_copy,
                                          None if copied else image)
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

    async def _send_reliable(self, parts: list, zero_copy: bool, guard: Any = None) -> None:
        began = time.monotonic()
        self._reap()
        while True:
            try:  # fast path: room in the queue, no future and no selector round trip
                tracker = self._sync.send_multipart(
                    parts, flags=zmq.NOBLOCK, copy=not zero_copy, track=zero_copy
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
            self._pending.append((self._index, tracker, self._guard(guard)))
        while len(self._pending) > self.in_flight:
            await self._release_oldest(began)

    # -- the read-only guard of arrays in flight -------------------------------------------
    def _guard(self, image: Any) -> Any:
        """Make the caller's array read-only while ZMQ holds its memory; return it, or
        ``None`` if there is nothing to restore later."""
        if not isinstance(image, np.ndarray):
            return None
        entry = self._guards.get(id(image))
        if entry is not None:  # the same array in flight twice
            entry[1] += 1
            return image
        if not image.flags.writeable:
            return None
        image.flags.writeable = False
        self._guards[id(image)] = [image, 1]
        return image

    def _unguard(self, image: Any) -> None:
        if image is None:
            return
        entry = self._guards.get(id(image))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._guards[id(image)]
            with contextlib.suppress(ValueError):  # its base became read-only meanwhile
                image.flags.writeable = True

    def _reap(self) -> None:
        """Lift the guard of frames ZMQ has released (without waiting)."""
        pending = self._pending
        while pending and pending[0][1].done:
            self._unguard(pending.popleft()[2])
        if self._abandoned:
            done = [entry for entry in self._abandoned if entry[1].done]
            if done:
                self._abandoned = [entry for entry in self._abandoned if not entry[1].done]
                for entry in done:
                    self._unguard(entry[2])

    async def _release_oldest(self, began: float) -> None:
        entry = self._pending.popleft()
        index, tracker, guarded = entry
        if not tracker.done:
            remaining = None if self.timeout is None else self.timeout - (time.monotonic() - began)
            try:
                await self._wait_released(tracker, remaining, index)
            except BaseException:
                self._abandoned.append(entry)  # ZMQ may still read it: stays read-only
                raise
        self._unguard(guarded)

    async def flush(self) -> None:
        """Wait until ZMQ has released every frame still in transmission."""
        began = time.monotonic()
        while self._pending:
            await self._release_oldest(began)
        self._reap()

    async def _wait_released(
        self, tracker: zmq.MessageTracker, remaining: float | None, index: int
    ) -> None:
        try:
            await asyncio.to_thread(tracker.wait, None if remaining is None else max(remaining, 0))
        except zmq.NotDone:
            raise DataPlaneTimeout(
                f"frame {index} was not transmitted to {self.endpoint} within {self.timeout} s"
            ) from None

    # -- shared memory ---------------------------------------------------------------------
    async def _send_shared(self, image: Any, array: np.ndarray, metadata: dict) -> None:
        dtype = check_dtype(array.dtype)
        meta = encode_metadata(metadata)  # refused before a slot is taken
        token = self._reservation_of(array)
        if token is not None:
            ring, slot = token.ring, token.slot
            token.sent = True  # its finalizer must not free the slot any more
        else:
            ring, slot = await self._take_slot(array.nbytes)
            await _copy_into(ring, slot, array)
        header = compose_header(dtype, array.shape, self._index, meta,
                                ring.ref(slot, array.nbytes))
        try:
            await self._send_reliable([header], zero_copy=False)
        except BaseException:
            if token is not None:
                token.sent = False  # the caller's buffer again; freed with it
            else:
                ring.free(slot)  # never sent: no receiver will free it
            raise
        if token is not None:
            if self._reserved.get(token.address) is token:
                del self._reserved[token.address]
            # The slot is the receiver's now: neither the caller's array nor the one
            # buffer() returned (its bases) may change it.
            view = image if isinstance(image, np.ndarray) else array
            while isinstance(view, np.ndarray):
                view.flags.writeable = False
                view = view.base

    def _reservation_of(self, array: np.ndarray) -> _Reservation | None:
        """The reservation of ``array`` if it is exactly a buffer from :meth:`buffer`."""
        if not self._reserved:
            return None
        token = self._reserved.get(array.__array_interface__["data"][0])
        if token is None or token.nbytes != array.nbytes or not array.flags.c_contiguous:
            return None
        return token

    def _current_ring(self, nbytes: int) -> SharedRing:
        """The ring for a frame of ``nbytes``: a new one for a larger frame or for a new
        stream while slots of the old one are still held (old rings are retired and
        unlinked once all their slots are free)."""
        ring = self._ring
        if ring is not None and self._new_stream:
            own = sum(1 for token in self._reserved.values() if token.ring is ring)
            if ring.busy() > own:  # frames of an earlier stream still held (or lost)
                ring = self._ring = None
        self._new_stream = False
        if ring is None or nbytes > ring.slot_size:
            ring = self._ring = SharedRing(nbytes, self.slots)
            self._rings.append(ring)
        self._sweep()
        return ring

    def _sweep(self) -> None:
        """Close retired rings whose slots are all free, and the oldest beyond
        :data:`MAX_RETIRED` (their frames are long lost)."""
        retired = [ring for ring in self._rings if ring is not self._ring]
        if not retired:
            return
        for number, ring in enumerate(retired):
            if ring.busy() == 0 or (
                number < len(retired) - MAX_RETIRED
                and not any(token.ring is ring for token in self._reserved.values())
            ):
                ring.close()
                self._rings.remove(ring)

    async def _take_slot(self, nbytes: int) -> tuple[SharedRing, int]:
        """A free slot for ``nbytes``, marked in use; waits up to ``timeout``."""
        ring = self._current_ring(nbytes)
        began = time.monotonic()
        # Poll about as often as a receiver can take a frame of this size (every wake-up
        # of this loop takes a core from the receiver on a small host).
        delay = min(max(nbytes / SLOT_POLL_RATE, 5e-5), 5e-4)
        while (slot := ring.take()) is None:
            if self.timeout is not None and time.monotonic() - began >= self.timeout:
                raise DataPlaneTimeout(
                    f"frame {self._index} found no free shared-memory slot for "
                    f"{self.endpoint} within {self.timeout} s: the receiver holds all "
                    f"{ring.slots} slots of {ring.name}, is stuck or gone"
                )
            await sleep(delay)  # keeps sub-millisecond delays (a bare timer: 1 ms)
            delay = min(2 * delay, 0.002)
            self._sweep()
        return ring, slot

    # -- streams -----------------------------------------------------------------------------
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
        self._new_stream = True
        self.streams += 1
        return count

    def restart(self) -> None:
        """Abandon the current stream without an end message (its receiver sees no end and
        times out); the next frame starts a new stream at index 0."""
        self._abandoned.extend(self._pending)
        self._pending.clear()
        self._reap()
        self._index = 0
        self._new_stream = True

    def _check_open(self) -> None:
        if self.closed:
            raise DataPlaneError(f"sender on {self.endpoint} is closed")

    def close(self, linger: float | None = None) -> None:
        """Close the socket; a reliable sender keeps delivering what is queued for
        ``linger`` seconds (default: ``timeout``) in the background, and removes its
        shared-memory segments once their slots are free, after ``linger`` at the
        latest. Arrays ZMQ still holds stay read-only."""
        if self.closed:
            return
        self.closed = True
        self._reap()
        self._pending.clear()
        self._abandoned.clear()
        if linger is None:
            linger = (self.timeout if self.timeout is not None else 10.0) if self.reliable else 0
        close_socket(self._socket, int(linger * 1000))
        self._finalizer.detach()
        rings, self._rings[:] = list(self._rings), []
        self._ring = None
        close_rings(rings, linger)

    async def __aenter__(self) -> ImageSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "reliable" if self.reliable else "live"
        return f"<ImageSender {kind} {self.endpoint} sent={self.sent} dropped={self.dropped}>"


async def _copy_into(ring: SharedRing, slot: int, array: np.ndarray) -> None:
    """Copy ``array`` into ``slot`` (large frames in a worker thread); free the slot if
    that fails, or once the copy is over if the caller is cancelled."""
    target = ring.array(slot, array.dtype, array.size).reshape(array.shape)
    try:
        if array.nbytes < COPY_IN_THREAD:
            np.copyto(target, array)
            return
        future = asyncio.get_running_loop().run_in_executor(None, np.copyto, target, array)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda _: ring.free(slot))
            raise
    except asyncio.CancelledError:
        raise
    except BaseException:
        ring.free(slot)
        raise


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


__all__ = [
    "COPY_THRESHOLD",
    "IN_FLIGHT",
    "SHARED_THRESHOLD",
    "ImageSender",
    "open_socket",
    "resolve_endpoint",
    "send_live_end",
]
