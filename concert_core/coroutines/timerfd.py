"""Sub-millisecond waits that cost no CPU: a Linux ``timerfd`` wakes the event loop.

The loop's own timers go through its selector, which waits in whole milliseconds, so a
0.3 ms ``asyncio.sleep`` takes about a millisecond. A timerfd armed for an absolute
monotonic time becomes readable at that time (within the kernel's timer slack, some tens
of microseconds), and the selector watching it returns then. :func:`available` tells
whether the platform has it (Linux with glibc); :func:`sleep_until` raises
``OSError`` where it has not.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import time
from functools import cache

_CLOCK_MONOTONIC = 1
_TFD_CLOEXEC = 0o2000000
_TFD_NONBLOCK = 0o4000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except (OSError, TypeError):
        return None
    return libc if hasattr(libc, "timerfd_create") and hasattr(libc, "timerfd_settime") \
        else None


@cache
def available() -> bool:
    """Whether timerfd waits work here (and ``time.monotonic`` is CLOCK_MONOTONIC); asked
    once, as every short :func:`~concert_core.coroutines.sleep` asks it."""
    return _libc() is not None and time.get_clock_info("monotonic").implementation == \
        "clock_gettime(CLOCK_MONOTONIC)"


def _armed(deadline: float) -> int:
    libc = _libc()
    if libc is None:
        raise OSError("timerfd is not available on this platform")
    fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "timerfd_create failed")
    seconds = int(deadline)
    value = _Itimerspec(_Timespec(0, 0),
                        _Timespec(seconds, int((deadline - seconds) * 1e9)))
    if libc.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(value), None) < 0:
        error = ctypes.get_errno()
        os.close(fd)
        raise OSError(error, "timerfd_settime failed")
    return fd


async def sleep_until(deadline: float) -> None:
    """Return at ``deadline`` (a ``time.monotonic()`` time) or just after it; the loop
    runs other tasks meanwhile. Cancellable."""
    if deadline <= time.monotonic():
        return
    loop = asyncio.get_running_loop()
    fd = _armed(deadline)
    expired = loop.create_future()

    def readable() -> None:
        if not expired.done():
            expired.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await expired
    finally:
        loop.remove_reader(fd)
        os.close(fd)


__all__ = ["available", "sleep_until"]
