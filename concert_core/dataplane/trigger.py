"""A simulated hardware trigger line (a TTL cable) over ZMQ.

:class:`TriggerOutput` is the plug of the line: it binds an XPUB socket and sends one
small message per :meth:`~TriggerOutput.pulse`, to every connected input at once. It
never blocks; a pulse nobody listens to is lost, as on an unplugged cable. It counts its
listeners from their subscriptions. :class:`TriggerInput` connects a SUB socket and calls
``on_pulse(index, sent)`` for every pulse, from a background task.

An input also subscribes to a greeting of its own, ``b"HELO"`` and 8 random bytes. The
output reads subscriptions as they come (a reader on its event loop) and answers each
greeting by publishing it: the input then knows the output has its subscription, so a
pulse sent from then on reaches it (:meth:`TriggerInput.wait_connected`).

A cable has no delay, but a message waits for the receiving process to get to it. So a
pulse carries the time it was sent (``sent``, seconds since the epoch as ``time.time()``),
and a receiver that simulates hardware (a camera exposing on the pulse) starts from that
time rather than from the moment it read the message.

A pulse is a single-part message of 20 bytes: ``b"TTL2"``, the pulse index as a
little-endian unsigned 64-bit integer and ``sent`` as a little-endian 64-bit float.
A greeting is ``b"HELO"`` and the 8 bytes; an input ignores the greetings of others.
Anything else is counted and ignored.

Inside a running event loop::

    output = TriggerOutput("tcp://127.0.0.1:0")
    line = TriggerInput(output.endpoint, print)
    await output.wait_listeners()
    output.pulse(0)                # line prints 0 and the time it was sent
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import operator
import secrets
import struct
import time
import weakref
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from concert_core.dataplane.sender import _seconds, close_socket, open_socket, resolve_endpoint
from concert_core.dataplane.wire import DataPlaneError, DataPlaneTimeout
from concert_core.helpers import CommData

LOG = logging.getLogger(__name__)

#: First bytes of every pulse message.
MAGIC = b"TTL2"
_PULSE = struct.Struct("<4sQd")
#: First bytes of a greeting: an input's own topic, which the output answers.
HELLO = b"HELO"
_HELLO_SIZE = len(HELLO) + 8
#: Pulses queued per listener; further ones are dropped (a listener that stopped reading).
PULSE_HWM = 10_000
#: Seconds between two looks at the subscriptions while waiting for listeners.
_LISTENER_POLL = 0.002
#: Milliseconds a closed input keeps trying to deliver its farewell (its unsubscription).
_FAREWELL_LINGER_MS = 100
#: Seconds :meth:`TriggerInput.wait_connected` waits by default.
CONNECT_TIMEOUT = 1.0
#: Monitor events of an input's connection: made, or nobody (sane) at the endpoint.
_HANDSHAKE_DONE = zmq.EVENT_HANDSHAKE_SUCCEEDED
_NOBODY_THERE = (zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                 | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                 | zmq.EVENT_DISCONNECTED)


class TriggerError(DataPlaneError):
    """A trigger line cannot be used: no output set, a malformed pulse, ..."""


def encode_pulse(index: int, sent: float | None = None) -> bytes:
    """The message of pulse ``index`` (a non-negative integer) sent at ``sent`` (seconds
    since the epoch; None: now)."""
    try:
        number = operator.index(index)
    except TypeError:
        number = -1
    if isinstance(index, bool) or not 0 <= number < 1 << 64:
        raise ValueError(f"a pulse index must be a non-negative integer, not {index!r}")
    return _PULSE.pack(MAGIC, number, time.time() if sent is None else float(sent))


def decode_pulse(parts: list[bytes]) -> tuple[int, float]:
    """The index and the sending time of a pulse message (its parts);
    :class:`TriggerError` if malformed."""
    if len(parts) != 1 or len(parts[0]) != _PULSE.size or not parts[0].startswith(MAGIC):
        sizes = [len(part) for part in parts]
        raise TriggerError(f"not a trigger pulse: {len(parts)} part(s) of {sizes} bytes")
    _, index, sent = _PULSE.unpack(parts[0])
    return index, sent


def _zmq_refusal(what: str, endpoint: Any, error: zmq.ZMQError) -> ValueError:
    return ValueError(f"cannot {what} trigger line {endpoint!r}: {error}")


def _look(output: weakref.ref[TriggerOutput]) -> None:
    """The reader of an output's socket: take what arrived, if the output still exists."""
    alive = output()
    if alive is not None:
        alive._read_subscriptions()


def _in_loop_thread(loop: asyncio.AbstractEventLoop, job: Callable[[], Any],
                    if_closed: Callable[[], Any]) -> None:
    """Run ``job`` in ``loop``'s thread: at once from that thread or while the loop is not
    running, else soon; ``if_closed`` at once instead when the loop is closed (safe from a
    finalizer or another thread)."""
    if loop.is_closed():
        if_closed()
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        job()
    else:
        loop.call_soon_threadsafe(job)


def _unbind(loop: asyncio.AbstractEventLoop, socket: zmq.Socket) -> None:
    """Remove the reader of an output's ``socket`` from ``loop`` and close it."""
    def unbind() -> None:
        if not socket.closed:
            loop.remove_reader(socket.FD)
            close_socket(socket)

    _in_loop_thread(loop, unbind, lambda: close_socket(socket))


class TriggerOutput:
    """The sending end of a trigger line, bound at ``endpoint`` (port 0: a free port).

    Must be created inside a running event loop: a reader on that loop takes the inputs'
    subscriptions as they arrive and answers their greetings. :meth:`pulse` never blocks.
    :attr:`listeners` counts the inputs subscribed: a closed :class:`TriggerInput`
    unsubscribes and is counted off as soon as that arrives (through ZMQ's I/O threads,
    so not within the call that closed it), a peer that vanished (its process killed)
    only once ZMQ has noticed the lost connection. Safe to :meth:`close` from a finalizer
    or another thread; an output dropped without it is collected and unbound.
    """

    def __init__(self, endpoint: str | CommData, context: zmq.Context | None = None) -> None:
        loop = asyncio.get_running_loop()
        options = {zmq.XPUB_VERBOSER: 1, zmq.SNDHWM: PULSE_HWM, zmq.LINGER: 0}
        try:
            self._socket, self._endpoint = open_socket(
                context or zmq.Context.instance(), zmq.XPUB, endpoint, True, options)
        except zmq.ZMQError as error:
            raise _zmq_refusal("bind", endpoint, error) from None
        self._listeners = 0
        #: Pulses sent.
        self.sent = 0
        #: Greetings answered (an input connecting, or reconnecting).
        self.greeted = 0
        self.closed = False
        # ZMQ's descriptor only says "look": every look reads until nothing is left, so
        # it is signalled again by the next arrival. The reader holds the output weakly:
        # an output dropped without close() is collected, and unbound with it.
        loop.add_reader(self._socket.FD, _look, weakref.ref(self))
        self._finalizer = weakref.finalize(self, _unbind, loop, self._socket)

    @property
    def endpoint(self) -> str:
        """The endpoint actually bound (``tcp://127.0.0.1:40123``)."""
        return self._endpoint

    @property
    def listeners(self) -> int:
        """Inputs connected (subscribed) to this output."""
        self._read_subscriptions()
        return self._listeners

    def _read_subscriptions(self) -> None:
        if self.closed:
            return
        while True:
            try:
                message = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                # A receive may leave commands unread (ZMQ throttles it), and with them
                # the descriptor set: reading the events takes them all.
                if self._socket.get(zmq.EVENTS) & zmq.POLLIN:
                    continue
                return
            topic = message[1:]
            if len(topic) == _HELLO_SIZE and topic.startswith(HELLO):
                if message[0] == 1:  # an input greets: answer it on its own topic
                    self._send(topic)
                    self.greeted += 1
                continue
            # Only subscriptions that let pulses through (b"" or a prefix of MAGIC) count.
            if not message or not MAGIC.startswith(topic):
                continue
            if message[0] == 1:
                self._listeners += 1
            elif message[0] == 0:
                self._listeners = max(0, self._listeners - 1)

    def _send(self, message: bytes) -> bool:
        try:
            self._socket.send(message, zmq.NOBLOCK)
        except zmq.Again:  # an XPUB drops for a full listener; kept as a guard
            return False
        return True

    async def wait_listeners(self, count: int = 1, timeout: Any = 2.0) -> int:
        """Wait until at least ``count`` inputs listen and return how many do;
        :class:`DataPlaneTimeout` if they do not within ``timeout`` (s or a quantity)."""
        seconds = _seconds(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while True:
            self._check_open()
            found = self.listeners
            if found >= count:
                return found
            if deadline is not None and loop.time() >= deadline:
                raise DataPlaneTimeout(
                    f"trigger output {self.endpoint}: {found} listener(s) after {seconds:g} s, "
                    f"{count} needed (connect an input, e.g. a camera's trigger_input, to it)"
                )
            await asyncio.sleep(_LISTENER_POLL)

    def pulse(self, index: int, sent: float | None = None) -> None:
        """Send pulse ``index`` to every listener; never blocks. ``sent`` is the time the
        pulse stands for (seconds since the epoch; None: now): a simulated controller
        that runs late passes the time its timeline had planned."""
        self._check_open()
        if self._send(encode_pulse(index, sent)):
            self.sent += 1
        else:
            LOG.debug("trigger output %s: pulse %d dropped", self.endpoint, index)
        # Sending may have taken in subscriptions that the reader is no longer told of.
        self._read_subscriptions()

    def _check_open(self) -> None:
        if self.closed:
            raise TriggerError(f"trigger output {self.endpoint} is closed")

    def close(self) -> None:
        """Unbind; pulses are refused afterwards."""
        self.closed = True
        self._finalizer()

    def __repr__(self) -> str:
        return f"<TriggerOutput {self.endpoint} sent={self.sent}>"


class TriggerInput:
    """The receiving end of a trigger line: connects to ``endpoint`` at once (awaiting
    :meth:`wait_connected` makes sure the output has its subscription) and calls
    ``on_pulse(index, sent)`` for every pulse (``sent``: the time it was sent, seconds
    since the epoch), awaiting it if it returns an awaitable.

    Must be created inside a running event loop. Malformed messages are counted in
    :attr:`refused`, failing callbacks in :attr:`failed` (and logged); neither stops the
    line. :meth:`aclose` (or :meth:`close`, safe from a finalizer or another thread)
    ends the task and closes the socket. Keep ``on_pulse`` from holding its owner
    strongly (use a weak reference), or the owner lives as long as the line.
    """

    def __init__(self, endpoint: str | CommData, on_pulse: Callable[[int, float], Any],
                 context: zmq.asyncio.Context | None = None) -> None:
        loop = asyncio.get_running_loop()
        address = resolve_endpoint(endpoint, bind=False)
        if address.startswith("tcp://") and address.rpartition(":")[2] in ("0", "*"):
            raise ValueError(f"a trigger input connects to an output's actual port, not "
                             f"{endpoint!r} (read the output's endpoint)")
        options = {zmq.SUBSCRIBE: b"", zmq.RCVHWM: PULSE_HWM, zmq.LINGER: 0}
        self._hello = HELLO + secrets.token_bytes(_HELLO_SIZE - len(HELLO))
        monitors: list[zmq.asyncio.Socket] = []

        def prepare(socket: zmq.Socket) -> None:  # before connecting: no event is missed
            # The greeting goes after the pulses' subscription, on the same connection:
            # an output answering it has taken that subscription too.
            socket.setsockopt(zmq.SUBSCRIBE, self._hello)
            monitors.append(socket.get_monitor_socket(_HANDSHAKE_DONE | _NOBODY_THERE))

        try:
            self._socket, self._endpoint = open_socket(context, zmq.SUB, endpoint, False,
                                                       options, prepare)
        except zmq.ZMQError as error:
            for monitor in monitors:
                monitor.close(linger=0)
            raise _zmq_refusal("connect to", endpoint, error) from None
        self._monitor: zmq.asyncio.Socket | None = monitors[0]
        #: True once the output answered the greeting, False if the line closed first.
        self._answer: asyncio.Future[bool] = loop.create_future()
        self._on_pulse = on_pulse
        #: Pulses received, messages refused as malformed, callbacks that failed.
        self.received = 0
        self.refused = 0
        self.failed = 0
        self.closed = False
        self._task = loop.create_task(self._listen(), name=f"TriggerInput {self._endpoint}")
        self._task.add_done_callback(self._ended)

    @property
    def endpoint(self) -> str:
        """The endpoint connected to."""
        return self._endpoint

    @property
    def running(self) -> bool:
        """Whether the receiving task is still running."""
        return not self._task.done()

    async def wait_connected(self, timeout: Any = CONNECT_TIMEOUT) -> bool:
        """Wait until the output has this input's subscription, so that every pulse it
        sends from then on reaches this input; False if nobody answers at the endpoint
        (connection refused, failed handshake: at once), if the line is closed, or not
        within ``timeout`` (s or a quantity).

        The output says so itself: it answers the input's greeting, which arrives after
        the pulses' subscription on the same connection. Re-plugging is safe in either
        order: an output that still counts a closed input never stands in for this one.
        """
        answer = self._answer
        if answer.done():
            return answer.result()
        try:
            async with asyncio.timeout(_seconds(timeout)):
                await self._handshake()
                await asyncio.wait({answer})  # never cancels the answer itself
                return answer.result()
        except TimeoutError:
            return False

    async def _handshake(self) -> None:
        """Return once the connection is made; TimeoutError when nobody is there."""
        monitor = self._monitor
        try:
            while monitor is not None and not monitor.closed:
                event = parse_monitor_message(await monitor.recv_multipart())["event"]
                if event & _HANDSHAKE_DONE:
                    self._stop_watching()
                    return
                if event & _NOBODY_THERE and not monitor.get(zmq.EVENTS) & zmq.POLLIN:
                    raise TimeoutError  # the latest news: nobody there (yet)
        except (asyncio.CancelledError, zmq.ZMQError):
            task = asyncio.current_task()
            if monitor.closed and not (task is not None and task.cancelling()):
                return  # the line was closed meanwhile: its answer says so
            raise

    def _stop_watching(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            if not self._socket.closed:
                self._socket.disable_monitor()
            monitor.close(linger=0)

    async def _listen(self) -> None:
        socket = self._socket
        while True:
            parts = await socket.recv_multipart()
            if len(parts) == 1 and len(parts[0]) == _HELLO_SIZE and parts[0].startswith(HELLO):
                if parts[0] == self._hello and not self._answer.done():
                    self._answer.set_result(True)
                continue  # another input's greeting
            try:
                index, sent = decode_pulse(parts)
            except TriggerError as error:
                self.refused += 1
                LOG.debug("trigger input %s: %s (ignored)", self._endpoint, error)
                continue
            self.received += 1
            try:
                result = self._on_pulse(index, sent)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:
                self.failed += 1
                LOG.warning("trigger input %s: pulse %d: %s: %s", self._endpoint, index,
                            type(error).__name__, error)

    def _ended(self, task: asyncio.Task) -> None:
        self.closed = True
        if not self._answer.done():
            self._answer.set_result(False)
        self._unplug()
        if not task.cancelled() and task.exception() is not None:
            LOG.error("trigger input %s ended: %r", self._endpoint, task.exception())

    def _unplug(self) -> None:
        """Close the socket, unsubscribing first: the output counts one listener less at
        once (a vanished peer it notices only after a while)."""
        socket = self._socket
        if socket.closed:
            return
        self._stop_watching()
        try:
            socket.setsockopt(zmq.UNSUBSCRIBE, b"")
        except zmq.ZMQError:
            pass
        socket.close(linger=_FAREWELL_LINGER_MS)  # also cancels a pending receive

    def _shutdown(self) -> None:
        self._task.cancel()
        self._unplug()

    def close(self) -> None:
        """Stop listening (the task ends soon after; :meth:`aclose` waits for it)."""
        if self.closed:
            return
        self.closed = True
        _in_loop_thread(self._task.get_loop(), self._shutdown, self._unplug)

    async def aclose(self) -> None:
        """Stop listening and wait until the task has ended."""
        self.close()
        await asyncio.wait({self._task})

    def __repr__(self) -> str:
        return f"<TriggerInput {self.endpoint} received={self.received} refused={self.refused}>"


__all__ = [
    "CONNECT_TIMEOUT",
    "HELLO",
    "MAGIC",
    "PULSE_HWM",
    "TriggerError",
    "TriggerInput",
    "TriggerOutput",
    "decode_pulse",
    "encode_pulse",
]
