"""Blocking PyTango calls awaited from asyncio, and Tango failures as concert errors.

A proxy call runs in a small thread pool of the running event loop (:func:`call`), so the
loop never blocks on the network. This costs one thread hand-over each way. PyTango's own
asyncio green mode does the same through extra layers: about 0.2 ms more per call here,
which a stepped scan pays on every move and every trigger.
"""

from __future__ import annotations

import asyncio
import builtins
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tango

from concert_core import dataplane, errors

#: Proxy calls one event loop may have in flight at once (more wait for a free thread).
MAX_CONCURRENT_CALLS = 8

_POOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class RemoteError(errors.ConcertError):
    """A Tango failure without a concert error class of its name."""


def concert_error(failure: tango.DevFailed) -> Exception:
    """The concert exception a ``DevFailed`` stands for (by its reason)."""
    first = failure.args[0]
    reason, description = first.reason, first.desc
    if reason == "API_WAttrOutsideLimit":
        return errors.SoftLimitError(description)
    if reason in ("API_AttrNotWritable", "API_AttrNotAllowed"):
        return errors.WriteAccessError(description)
    cls = getattr(errors, reason, None) or getattr(dataplane, reason, None)
    if cls is None and reason in ("ValueError", "TypeError", "TimeoutError", "KeyError"):
        cls = getattr(builtins, reason)
    if isinstance(cls, type) and issubclass(cls, Exception):
        error = cls.__new__(cls)
        Exception.__init__(error, description)
        if isinstance(error, errors.StateError):
            error.error_state, error.msg = "error", description
        if isinstance(error, errors.HardLimitError):
            error.error_state = "hard-limit"
        if isinstance(error, (errors.ReadAccessError, errors.WriteAccessError)):
            error.parameter = description
        return error
    return RemoteError(f"{reason}: {description}")


def _pool(loop: asyncio.AbstractEventLoop) -> ThreadPoolExecutor:
    """The call threads of ``loop`` (they end when the loop is dropped)."""
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = ThreadPoolExecutor(MAX_CONCURRENT_CALLS,
                                                 thread_name_prefix="tango-call")
    return pool


async def call(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``, a blocking proxy call, in a call thread of the running loop; a
    ``DevFailed`` becomes its concert error (:func:`concert_error`)."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_pool(loop), func, *args)
    except tango.DevFailed as failure:
        raise concert_error(failure) from None


__all__ = ["MAX_CONCURRENT_CALLS", "RemoteError", "call", "concert_error"]
