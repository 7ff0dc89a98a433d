"""Starting, tracking, fanning out and waiting for coroutines.

Every task started by :func:`start` (or a :func:`background` function) is kept in a
registry until it ends, so it is never garbage-collected mid-flight and
:func:`cancel_all` (the emergency "ctrl-k") can reach it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import pint

from concert_core.coroutines import timerfd
from concert_core.errors import WaitError
from concert_core.helpers import PrioItem
from concert_core.quantities import q

LOG = logging.getLogger(__name__)
T = TypeVar("T")

_tasks: set[asyncio.Future] = set()
_tasks_lock = threading.Lock()


def _forget(task: asyncio.Future) -> None:
    with _tasks_lock:
        _tasks.discard(task)


def start(awaitable: Awaitable[T]) -> asyncio.Task[T]:
    """Run ``awaitable`` as a task right away and return the task.

    The task is scheduled on the running loop, or, from synchronous code, on the
    module's persistent loop (see :func:`run_in_loop`), where it runs the next time that
    loop does. It stays registered until done, so :func:`cancel_all` reaches it.
    """
    loop = get_event_loop()
    if inspect.iscoroutine(awaitable):
        task = loop.create_task(awaitable)
    else:
        task = asyncio.ensure_future(awaitable, loop=loop)
    with _tasks_lock:
        _tasks.add(task)
    task.add_done_callback(_forget)
    return task


def running_tasks() -> list[asyncio.Future]:
    """The registered tasks that have not finished yet.

    Tasks left behind on a closed loop can never run again; they are dropped here.
    """
    with _tasks_lock:
        stale = {task for task in _tasks if task.get_loop().is_closed()}
        _tasks.difference_update(stale)
        return [task for task in _tasks if not task.done()]


async def cancel_and_wait(future: asyncio.Future | None) -> None:
    """Cancel ``future`` unless it is None or done, and wait for it to end (its outcome,
    a cancellation included, is swallowed)."""
    if future is not None and not future.done():
        future.cancel()
        await asyncio.gather(future, return_exceptions=True)


async def cancel_all() -> int:
    """Cancel every registered task and wait for them to end; return how many.

    Tasks of the running loop are awaited (their cleanup runs before this returns);
    tasks of other loops are only asked to cancel. The calling task is spared.
    """
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    tasks = [task for task in running_tasks() if task is not current]
    local = []
    for task in tasks:
        task_loop = task.get_loop()
        if task_loop is loop:
            task.cancel()
            local.append(task)
        elif not task_loop.is_closed():
            task_loop.call_soon_threadsafe(task.cancel)
    if local:
        await asyncio.gather(*local, return_exceptions=True)
    return len(tasks)


def background(corofunc: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., asyncio.Task[T]]:
    """Decorator: calling ``corofunc`` starts it at once (see :func:`start`) and returns
    the task, which may be awaited or ignored."""

    @functools.wraps(corofunc)
    def wrapper(*args: Any, **kwargs: Any) -> asyncio.Task[T]:
        return start(corofunc(*args, **kwargs))

    wrapper.__concert_background__ = True  # type: ignore[attr-defined]
    return wrapper


class _End:
    """End of a broadcast stream."""


class _Failure:
    """The producer of a broadcast failed (or the broadcast was cancelled)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Channel:
    """One consumer's side of a broadcast: a bounded queue and an "is listening" flag."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.listening = True

    async def items(self) -> AsyncIterator[Any]:
        while True:
            item = await self.queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """The consumer has stopped: drop what is queued so a blocked feeder wakes up."""
        self.listening = False
        while True:
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break

    def push_final(self, item: _Failure) -> None:
        """Queue a terminating marker without waiting, dropping pending items if full."""
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


async def _iterate(producer: AsyncIterable[T] | Iterable[T]) -> AsyncIterator[T]:
    if hasattr(producer, "__aiter__"):
        async for item in producer:
            yield item
    else:
        for item in producer:
            yield item


def broadcast(
    producer: AsyncIterable[Any] | Iterable[Any],
    *consumers: Callable[[AsyncIterator[Any]], Awaitable[Any]],
    maxsize: int = 16,
) -> list[Coroutine[Any, Any, Any]]:
    """Feed every item of ``producer`` to each of ``consumers``.

    Each consumer is a coroutine function taking an async iterator; it gets its own
    iterator, backed by a queue of at most ``maxsize`` items, so the slowest consumer
    sets the pace. Returns ``[feeder, *consumer_coroutines]`` for
    :func:`asyncio.gather` (the feeder returns ``None``, the others what the consumers
    return). The end of the stream ends every consumer's iteration; an exception of
    the producer is raised in every consumer and by the feeder. A consumer that stops
    early is simply no longer fed; when all have stopped, the producer is closed.
    """
    if maxsize < 1:
        raise ValueError("maxsize must be at least 1 (the queues must be bounded)")
    channels = [_Channel(maxsize) for _ in consumers]

    async def feed() -> None:
        stream = _iterate(producer)
        exhausted = False
        try:
            # Checked before asking for the next item, so nothing is produced for nobody.
            while any(channel.listening for channel in channels):
                try:
                    item = await anext(stream)
                except StopAsyncIteration:
                    exhausted = True
                    break
                await deliver(item)
        except asyncio.CancelledError as error:
            # No more waiting here: consumers stop at once, pending items are dropped.
            for channel in channels:
                if channel.listening:
                    channel.push_final(_Failure(error))
            raise
        except Exception as error:
            await deliver(_Failure(error))
            raise
        finally:
            await stream.aclose()
        if exhausted:
            await deliver(_End())
        else:  # every consumer stopped early
            close = getattr(producer, "aclose", None)
            if close is not None:
                await close()

    async def deliver(item: Any) -> None:
        for channel in channels:
            if channel.listening:
                await channel.queue.put(item)

    async def consume(consumer: Callable, channel: _Channel) -> Any:
        items = channel.items()
        try:
            return await consumer(items)
        finally:
            channel.close()
            await items.aclose()

    return [feed()] + [
        consume(consumer, channel) for consumer, channel in zip(consumers, channels, strict=True)
    ]


def _seconds(value: pint.Quantity | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, pint.Quantity):
        return float(value.to(q.s).magnitude)
    return float(value)


#: Below this, :func:`sleep` arms no loop timer: the selector waits in whole
#: milliseconds, so ``asyncio.sleep(0.0002)`` takes about a millisecond.
TIMER_RESOLUTION = 1e-3
#: A sub-millisecond :func:`sleep` waits on a timerfd (Linux: no CPU spent) until this long
#: before its end, then yields to the loop for the rest (the timer may be that late).
TIMERFD_MARGIN = 100e-6


async def sleep(seconds: float, stop: Callable[[], bool] | None = None,
                precise: bool = False) -> None:
    """``asyncio.sleep`` that keeps sub-millisecond times.

    A time below :data:`TIMER_RESOLUTION` is waited on a timerfd where there is one (see
    :mod:`.timerfd`) up to :data:`TIMERFD_MARGIN` before its end, and for the rest (all of
    it elsewhere) by yielding to the loop until the monotonic clock has passed it; other
    tasks run meanwhile. ``stop()`` returning true ends that last part early. Longer times
    go to a loop timer, which may overshoot by up to a millisecond; ``precise`` waits
    their last millisecond as a short time instead (a simulated motion's duration).
    """
    if seconds >= TIMER_RESOLUTION:
        if not precise:
            await asyncio.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while (seconds := deadline - time.monotonic()) >= TIMER_RESOLUTION:
            await asyncio.sleep(seconds - TIMER_RESOLUTION)
        if seconds <= 0:
            return
    deadline = time.monotonic() + seconds
    if stop is not None and stop():
        return
    if seconds > TIMERFD_MARGIN and timerfd.available():
        await timerfd.sleep_until(deadline - TIMERFD_MARGIN)
    while time.monotonic() < deadline and not (stop is not None and stop()):
        await asyncio.sleep(0)


async def wait_until(
    condition: Callable[[], Any],
    sleep_time: pint.Quantity | float = 0.1 * q.s,
    timeout: pint.Quantity | float | None = None,
) -> None:
    """Return once ``condition()`` (plain or async) is true, checking every ``sleep_time``.

    Times are quantities or plain seconds. The condition is checked at least once;
    :class:`~concert_core.errors.WaitError` is raised if it is still false after
    ``timeout``.
    """
    period = _seconds(sleep_time)
    limit = _seconds(timeout)
    if period is None or period <= 0:
        raise ValueError(f"sleep_time must be positive, got {sleep_time}")
    loop = asyncio.get_running_loop()
    began = loop.time()
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if limit is None:
            await asyncio.sleep(period)
            continue
        remaining = limit - (loop.time() - began)
        if remaining <= 0:
            raise WaitError(f"condition {condition!r} not met within {timeout}")
        await asyncio.sleep(min(period, remaining))


async def _await_thread(future: asyncio.Future[T]) -> T:
    """Await an executor future; if cancelled meanwhile, still wait for the thread to
    end, then re-raise the cancellation."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                continue
            except Exception:
                break
        if not future.cancelled() and future.exception() is not None:
            LOG.debug("cancelled call also failed", exc_info=future.exception())
        raise


async def run_in_executor(func: Callable[..., T], *args: Any) -> T:
    """Run the blocking ``func(*args)`` in the loop's default executor and return its result.

    The call sees the caller's context variables. If the awaiting task is cancelled,
    this waits for ``func`` to finish (a thread cannot be interrupted) before
    re-raising :class:`asyncio.CancelledError`, so nothing runs on behind the caller's
    back.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args)
    return await _await_thread(loop.run_in_executor(None, call))


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_loop_busy = threading.Lock()


def _persistent_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
        return _loop


def get_event_loop() -> asyncio.AbstractEventLoop:
    """The loop running in this thread, else the module's persistent loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return _persistent_loop()


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close an awaitable that will never run (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if inspect.iscoroutine(awaitable) and close is not None:
        close()


def run_in_loop(coroutine: Awaitable[T], error_msg_if_running: str | None = None) -> T:
    """Run ``coroutine`` (or another awaitable) to completion from synchronous code and
    return its result.

    It runs on one persistent event loop of this module, created on first use and
    reused by every call, so objects made through it (tasks, queues, devices) keep
    working in later calls. On :class:`KeyboardInterrupt` the task is cancelled, its
    cleanup runs, and the interrupt is re-raised. If an event loop is already running
    in this thread the coroutine is closed unrun and :class:`RuntimeError` raised (with
    ``error_msg_if_running`` if given): there, ``await`` it instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        _discard(coroutine)
        raise RuntimeError(
            error_msg_if_running
            or "an event loop is already running in this thread: use `await` instead"
        )
    if not _loop_busy.acquire(blocking=False):
        _discard(coroutine)
        raise RuntimeError("run_in_loop() is already running in another thread")
    try:
        loop = _persistent_loop()
        task = asyncio.ensure_future(coroutine, loop=loop)
        try:
            return loop.run_until_complete(task)
        except KeyboardInterrupt:
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            raise
    finally:
        _loop_busy.release()


async def ensure_coroutine(func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Await ``func(*args, **kwargs)``: turns any awaitable (a future of another
    library, e.g. a Tango asyncio call) into a real coroutine."""
    return await func(*args, **kwargs)


async def feed_queue(
    producer: AsyncIterable[Any] | Iterable[Any], func: Callable[..., T], *args: Any
) -> T:
    """Run ``func(queue, *args)`` in a thread and feed it the items of ``producer``.

    The items arrive in a :class:`queue.PriorityQueue` as
    ``PrioItem(priority=index, data=item)``; the end is a last item with ``data=None``
    (so the producer must not yield ``None``). Feeding stops early if ``func``
    returns. Returns what ``func`` returns; the thread is always awaited, even when
    the producer fails or the caller is cancelled.
    """
    items: queue.PriorityQueue = queue.PriorityQueue()
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, items, *args)
    thread = loop.run_in_executor(None, call)
    index = 0
    try:
        async for item in _iterate(producer):
            if thread.done():
                break
            items.put(PrioItem(priority=index, data=item))
            index += 1
    finally:
        items.put(PrioItem(priority=index, data=None))
        result = await _await_thread(thread)
    return result


__all__ = [
    "WaitError",
    "background",
    "broadcast",
    "cancel_all",
    "cancel_and_wait",
    "ensure_coroutine",
    "feed_queue",
    "get_event_loop",
    "run_in_executor",
    "run_in_loop",
    "running_tasks",
    "start",
    "wait_until",
]
