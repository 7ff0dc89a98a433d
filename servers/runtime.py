"""The threads a bridged server runs besides omniORB's: one asyncio loop, and one event
pusher per device.

Tango calls arrive on omniORB threads (PyTango's synchronous green mode, measured to read
2-7x faster than its asyncio mode). Concert devices live on one asyncio loop in its own
thread; a Tango call hands a coroutine to it and waits. The loop never calls Tango itself:
events and attribute-configuration updates are queued to the device's pusher thread, so a
loop callback can never wait on a device monitor held by an omniORB thread that waits on
the loop. A push takes its device's monitor (PyTango does), so it waits while a call to
that device runs; with a pusher per device it holds up no other device's events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import tango

LOG = logging.getLogger(__name__)


class LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str = "concert-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        with tango.EnsureOmniThread():
            self.loop.call_soon(self._ready.set)
            self.loop.run_forever()

    def submit(self, coroutine: Coroutine) -> concurrent.futures.Future:
        """Schedule ``coroutine`` on the loop; return a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine, timeout: float | None = None) -> Any:
        """Run ``coroutine`` on the loop and wait for its result (from another thread)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from the loop thread itself")
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout} s") from None

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)


class Pusher:
    """One thread that performs Tango calls (event pushes, property updates) in order;
    :meth:`close` ends it, dropping the jobs not started yet."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self.closed = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        with tango.EnsureOmniThread():
            while True:
                job = self._queue.get()
                if job is None or self.closed:
                    return
                try:
                    job()
                except Exception:
                    LOG.exception("Tango push failed")

    def put(self, job: Callable[[], Any]) -> None:
        if not self.closed:
            self._queue.put(job)

    def close(self) -> None:
        """End the thread without waiting for it (it may wait on a device monitor that
        the caller holds); jobs queued and not started are dropped."""
        self.closed = True
        self._queue.put(None)


_loop_thread: LoopThread | None = None
_loop_lock = threading.Lock()


def loop_thread() -> LoopThread:
    """The process-wide loop thread (created on first use)."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is None:
            _loop_thread = LoopThread()
        return _loop_thread


__all__ = ["LoopThread", "Pusher", "loop_thread"]
