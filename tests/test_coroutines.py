"""Behaviour of concert_core.coroutines.base."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import os
import threading
import time

import pytest

from concert_core.coroutines import base, timerfd
from concert_core.coroutines.base import (
    background,
    broadcast,
    cancel_all,
    cancel_and_wait,
    ensure_coroutine,
    feed_queue,
    get_event_loop,
    run_in_executor,
    run_in_loop,
    running_tasks,
    sleep,
    start,
    wait_until,
)
from concert_core.coroutines.sinks import Accumulate
from concert_core.errors import ConcertError, WaitError
from concert_core.quantities import q
from tests.support import overshoots


async def produce(n: int, log: list | None = None):
    try:
        for i in range(n):
            if log is not None:
                log.append(i)
            yield i
    finally:
        if log is not None:
            log.append("closed")


async def collect(items):
    return [item async for item in items]


# start / background / cancel_all


async def test_start_keeps_task_alive_until_done():
    gate = asyncio.Event()

    async def job():
        await gate.wait()
        return 42

    start(job())
    gc.collect()  # no reference of ours: only the registry keeps the task
    (task,) = [t for t in running_tasks() if t.get_coro().__name__ == "job"]
    gate.set()
    assert await task == 42
    assert task not in running_tasks()


async def test_background_starts_at_once_and_is_marked():
    ran = []

    @background
    async def job(value):
        """Doc of job."""
        ran.append(value)
        return value * 2

    assert job.__concert_background__ is True
    assert job.__name__ == "job"
    assert job.__doc__ == "Doc of job."
    task = job(3)
    assert isinstance(task, asyncio.Task)
    await asyncio.sleep(0)
    assert ran == [3]  # ran without being awaited
    assert await task == 6


async def test_cancel_and_wait_cancels_one_task_and_awaits_its_cleanup():
    cleaned = []

    async def forever():
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            cleaned.append(True)

    task = asyncio.ensure_future(forever())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and cleaned == [True]

    async def fails():
        raise ValueError("ended already")

    failed = asyncio.ensure_future(fails())
    await asyncio.gather(failed, return_exceptions=True)
    await cancel_and_wait(failed)  # an ended task keeps its outcome
    assert isinstance(failed.exception(), ValueError)
    await cancel_and_wait(None)


async def test_cancel_all_cancels_and_awaits_cleanup():
    cleaned = []

    async def forever(name):
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            cleaned.append(name)

    tasks = [start(forever(i)) for i in range(3)]
    await asyncio.sleep(0)

    async def emergency():
        return await cancel_all()

    count = await start(emergency())  # the calling task is spared
    assert count >= 3
    assert sorted(cleaned) == [0, 1, 2]
    assert all(task.cancelled() for task in tasks)
    assert not set(tasks) & set(running_tasks())


# broadcast


async def test_broadcast_feeds_every_consumer():
    first, second = Accumulate(), Accumulate()
    results = await asyncio.gather(*broadcast(produce(50), first, second, collect))
    assert first.items == second.items == list(range(50))
    assert results[0] is None
    assert results[3] == list(range(50))


async def test_broadcast_accepts_plain_iterables():
    acc = Accumulate()
    await asyncio.gather(*broadcast(iter("abc"), acc))
    assert acc.items == ["a", "b", "c"]


async def test_broadcast_early_stopping_consumer_does_not_block_others():
    async def two(items):
        got = []
        async for item in items:
            got.append(item)
            if len(got) == 2:
                return got
        return got

    acc = Accumulate()
    coros = broadcast(produce(200), two, acc, maxsize=1)
    results = await asyncio.wait_for(asyncio.gather(*coros), timeout=10)
    assert results[1] == [0, 1]
    assert acc.items == list(range(200))


async def test_broadcast_closes_producer_when_all_consumers_stopped():
    log = []

    async def first_only(items):
        async for item in items:
            return item

    results = await asyncio.wait_for(
        asyncio.gather(*broadcast(produce(1000, log), first_only, first_only, maxsize=1)), 10
    )
    assert results[1:] == [0, 0]
    assert log[-1] == "closed"
    assert len(log) < 10  # stopped producing long before the end


async def test_broadcast_producer_error_reaches_every_consumer():
    async def failing():
        yield 1
        raise ConcertError("camera died")

    seen = []

    async def consumer(items):
        async for item in items:
            seen.append(item)

    results = await asyncio.gather(
        *broadcast(failing(), consumer, consumer), return_exceptions=True
    )
    assert seen == [1, 1]
    assert all(isinstance(r, ConcertError) and "camera died" in str(r) for r in results)


async def test_broadcast_consumer_error_leaves_the_others_running():
    async def broken(items):
        async for _ in items:
            raise ValueError("bad frame")

    acc = Accumulate()
    results = await asyncio.wait_for(
        asyncio.gather(*broadcast(produce(20), broken, acc, maxsize=1), return_exceptions=True),
        10,
    )
    assert isinstance(results[1], ValueError)
    assert acc.items == list(range(20))


async def test_broadcast_cancelled_feeder_ends_consumers():
    gate = asyncio.Event()

    async def slow_producer():
        yield 1
        await gate.wait()
        yield 2

    feeder, consumer = broadcast(slow_producer(), collect)
    feeder_task = asyncio.ensure_future(feeder)
    consumer_task = asyncio.ensure_future(consumer)
    await asyncio.sleep(0.01)
    feeder_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(consumer_task, 10)


def test_broadcast_refuses_unbounded_queues():
    with pytest.raises(ValueError, match="bounded"):
        broadcast(iter(()), collect, maxsize=0)


# wait_until


async def test_sleep_keeps_sub_millisecond_times_and_lets_others_run():
    ticks = 0

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(other())
    await asyncio.sleep(0)
    began = time.monotonic()
    await sleep(0.0003)
    assert time.monotonic() - began >= 0.0003  # never shorter than asked
    assert ticks > 1  # the loop ran other tasks meanwhile
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not timerfd.available(), reason="no timerfd on this platform")
async def test_timerfd_wakes_on_time_without_spinning_and_closes_its_fd():
    fds = _open_fds()
    loop_cpu = time.process_time()
    rounds = await overshoots(lambda seconds: timerfd.sleep_until(time.monotonic() + seconds),
                              0.0005, times=50)
    cpu = time.process_time() - loop_cpu
    assert min(late[0] for late in rounds) >= 0  # never early
    # The best round's median; a loop timer would take a whole millisecond.
    assert min(late[25] for late in rounds) < 0.0005
    assert cpu < len(rounds) * 50 * 0.0005 * 0.8  # most of the waits without using the CPU
    assert _open_fds() <= fds  # none left open (the collector may close others meanwhile)
    await timerfd.sleep_until(time.monotonic() - 1)  # past: returns at once


@pytest.mark.skipif(not timerfd.available(), reason="no timerfd on this platform")
async def test_timerfd_wait_is_cancellable_and_leaves_no_fd_or_reader():
    fds = _open_fds()
    task = asyncio.ensure_future(timerfd.sleep_until(time.monotonic() + 60))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _open_fds() == fds


async def test_short_sleep_uses_little_cpu():
    began_cpu, began = time.process_time(), time.monotonic()
    for _ in range(50):
        await sleep(0.0008)
    assert time.monotonic() - began >= 50 * 0.0008
    if timerfd.available():  # only the last tenth of each wait yields to the loop
        assert time.process_time() - began_cpu < 50 * 0.0008 * 0.6


async def test_sleep_stop_ends_a_short_wait_and_long_ones_use_a_timer():
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return True

    began = time.monotonic()
    await sleep(0.0009, stop=stop)
    assert calls == 1  # asked before the first yield, and the wait ended there
    await sleep(0.003, stop=stop)  # a timer: stop only concerns short waits
    assert calls == 1
    assert time.monotonic() - began >= 0.003


@pytest.mark.skipif(not timerfd.available(), reason="no timerfd on this platform")
async def test_precise_sleep_ends_a_long_wait_on_time():
    rounds = await overshoots(lambda seconds: sleep(seconds, precise=True), 0.0015)
    assert min(late[0] for late in rounds) >= 0  # never early
    # The best round's median; a loop timer alone overshoots by up to a millisecond (half
    # of one, typically).
    assert min(late[15] for late in rounds) < 0.0003


async def test_wait_until_returns_once_true_sync_and_async():
    calls = []

    def condition():
        calls.append(1)
        return len(calls) >= 3

    await wait_until(condition, sleep_time=1 * q.ms)
    assert len(calls) == 3

    async def async_condition():
        calls.append(1)
        return len(calls) >= 5

    await wait_until(async_condition, sleep_time=0.001, timeout=10 * q.s)
    assert len(calls) == 5


async def test_wait_until_times_out_with_wait_error():
    with pytest.raises(WaitError) as info:
        await wait_until(lambda: False, sleep_time=1 * q.ms, timeout=20 * q.ms)
    assert isinstance(info.value, TimeoutError)


async def test_wait_until_checks_at_least_once_and_validates():
    await wait_until(lambda: True, timeout=0)
    with pytest.raises(ValueError):
        await wait_until(lambda: True, sleep_time=0 * q.s)


# run_in_executor


async def test_run_in_executor_result_error_and_context():
    var = contextvars.ContextVar("var")
    var.set("caller")
    assert await run_in_executor(lambda a, b: (a + b, var.get()), 1, 2) == (3, "caller")

    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await run_in_executor(fail)


async def test_run_in_executor_cancel_waits_for_the_thread():
    started, go = threading.Event(), threading.Event()
    finished = []

    def blocking():
        started.set()
        go.wait(10)
        finished.append(True)

    task = asyncio.ensure_future(run_in_executor(blocking))
    await wait_until(started.is_set, sleep_time=0.001, timeout=10)
    task.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()  # the thread is still blocked, so is the task
    task.cancel()  # a second cancel does not make it give up waiting either
    await asyncio.sleep(0.01)
    assert not task.done()
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [True]


# run_in_loop / get_event_loop / ensure_coroutine


async def test_run_in_loop_refuses_inside_a_running_loop():
    async def job():
        return 1

    coro = job()
    with pytest.raises(RuntimeError, match="await"):
        run_in_loop(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    with pytest.raises(RuntimeError, match="custom"):
        run_in_loop(job(), error_msg_if_running="custom message")


def test_run_in_loop_reuses_one_persistent_loop():
    async def current_loop():
        return asyncio.get_running_loop()

    async def make_task():
        return start(asyncio.sleep(0.01, result=5))

    async def await_it(task):
        return await task

    first = run_in_loop(current_loop())
    task = run_in_loop(make_task())  # the task outlives the call...
    assert run_in_loop(await_it(task)) == 5  # ...and finishes in the next one
    assert run_in_loop(current_loop()) is first
    assert get_event_loop() is first  # no loop running here: the persistent one


def test_run_in_loop_propagates_errors():
    async def fail():
        raise ConcertError("nope")

    with pytest.raises(ConcertError, match="nope"):
        run_in_loop(fail())


def test_run_in_loop_keyboard_interrupt_cancels_and_reraises():
    cleaned = []

    def interrupt():
        raise KeyboardInterrupt

    async def victim():
        asyncio.get_running_loop().call_later(0.01, interrupt)
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(True)

    with pytest.raises(KeyboardInterrupt):
        run_in_loop(victim())
    assert cleaned == [True]

    async def ok():
        return "still usable"

    assert run_in_loop(ok()) == "still usable"


def test_start_from_sync_code_runs_on_the_persistent_loop():
    task = start(asyncio.sleep(0, result="later"))

    async def await_it():
        return await task

    assert run_in_loop(await_it()) == "later"
    assert run_in_loop(start(asyncio.sleep(0, result="task"))) == "task"  # any awaitable


async def test_get_event_loop_prefers_the_running_loop():
    assert get_event_loop() is asyncio.get_running_loop()
    assert get_event_loop() is not base._loop


async def test_ensure_coroutine_wraps_futures():
    loop = asyncio.get_running_loop()

    def future_returning(value, *, twice=False):
        future = loop.create_future()
        loop.call_soon(future.set_result, value * (2 if twice else 1))
        return future

    coro = ensure_coroutine(future_returning, 21, twice=True)
    assert inspect.iscoroutine(coro)
    assert await coro == 42


# feed_queue


def drain(items, extra=""):
    got = []
    while True:
        item = items.get()
        if item.data is None:
            return got, item.priority, extra
        got.append((item.priority, item.data))


async def test_feed_queue_feeds_a_thread_in_order():
    got, end_priority, extra = await feed_queue(produce(5), drain, "x")
    assert got == [(i, i) for i in range(5)]
    assert end_priority == 5
    assert extra == "x"


async def test_feed_queue_producer_error_still_ends_the_thread():
    ended = []

    async def failing():
        yield "a"
        raise ConcertError("broken")

    def consumer(items):
        ended.append(drain(items)[0])

    with pytest.raises(ConcertError, match="broken"):
        await feed_queue(failing(), consumer)
    assert ended == [[(0, "a")]]


async def test_feed_queue_stops_feeding_when_func_returns():
    def first_only(items):
        return items.get().data

    async def endless():
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.001)

    assert await asyncio.wait_for(feed_queue(endless(), first_only), 10) == 0
