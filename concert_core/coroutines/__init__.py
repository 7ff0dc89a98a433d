"""Coroutine machinery (:mod:`.base`), stream filters (:mod:`.filters`) and sinks
(:mod:`.sinks`)."""

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

__all__ = [
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
    "sleep",
    "start",
    "wait_until",
]
