"""The two threads a bridged server runs besides omniORB's: the asyncio loop and the pusher.

Tango calls arrive on omniORB threads (PyTango's synchronous green mode, measured to read
2-7x faster than its asyncio mode). Concert devices live on one asyncio loop in its own
thread; a Tango call hands a coroutine to it and waits. The loop never calls Tango itself:
events and attribute-configuration updates are queued to one pusher thread, so a loop
callback can never wait on a device monitor held by an omniORB thread that waits on the loop.
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
    """One thread that performs Tango calls (event pushes, property updates) in order."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="tango-pusher", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        with tango.EnsureOmniThread():
            while True:
                job = self._queue.get()
                if job is None:
                    return
                try:
                    job()
                except Exception:
                    LOG.exception("Tango push failed")

    def put(self, job: Callable[[], Any]) -> None:
        self._queue.put(job)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every job queued so far has run."""
        done = threading.Event()
        self._queue.put(done.set)
        done.wait(timeout)


_runtime: tuple[LoopThread, Pusher] | None = None
_runtime_lock = threading.Lock()


def runtime() -> tuple[LoopThread, Pusher]:
    """The process-wide loop thread and pusher (created on first use)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = (LoopThread(), Pusher())
        return _runtime


__all__ = ["LoopThread", "Pusher", "runtime"]
