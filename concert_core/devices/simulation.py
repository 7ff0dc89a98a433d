"""What the simulated (dummy) devices share: injected faults and the running operation.

:class:`SimulatedDevice` is mixed in before a device family's base class. A dummy lists its
fault kinds in the class attribute ``FAULTS`` (kind -> what it does); tests and simulations
call :meth:`~SimulatedDevice.inject_fault` and :meth:`~SimulatedDevice.clear_fault`, the
dummy consumes one-shot faults with :meth:`~SimulatedDevice.take_fault` and checks lasting
ones with :meth:`~SimulatedDevice.has_fault`. Operations run inside
:meth:`~SimulatedDevice.operation`, so that an emergency stop can end them with
:meth:`~SimulatedDevice.cancel_operation`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import ClassVar


async def cancel_task(task: asyncio.Task | None, timeout: float | None = 1.0) -> bool:
    """Cancel ``task`` unless it is None, done or the calling task, and wait up to
    ``timeout`` seconds (None: without limit) for it to end; True if it was cancelled."""
    if task is None or task is asyncio.current_task() or task.done():
        return False
    task.cancel()
    await asyncio.wait([task], timeout=timeout)
    return True


class SimulatedDevice:
    """Fault injection and operation tracking of a simulated device (a mixin)."""

    #: The fault kinds this dummy simulates, each with what it does.
    FAULTS: ClassVar[dict[str, str]] = {}

    @property
    def _faults(self) -> set[str]:
        """The injected faults that are still pending."""
        try:
            return self.__dict__["_injected_faults"]
        except KeyError:
            faults = self.__dict__["_injected_faults"] = set()
            return faults

    async def inject_fault(self, kind: str) -> None:
        """Inject the fault ``kind``, one of the class's ``FAULTS`` (which tells what each
        does); any other kind raises ``ValueError``."""
        if kind not in self.FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(sorted(self.FAULTS))}")
        self._faults.add(kind)

    async def clear_fault(self) -> None:
        """Remove every injected fault (the state is left alone; see ``reset``, if any)."""
        self._faults.clear()

    def has_fault(self, kind: str) -> bool:
        """Whether the fault ``kind`` is injected (for lasting faults such as ``"slow"``)."""
        return kind in self._faults

    def take_fault(self, kind: str) -> bool:
        """Consume the one-shot fault ``kind``: True (and it is gone) if it was injected."""
        if kind in self._faults:
            self._faults.discard(kind)
            return True
        return False

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """Record the current task as the running operation while the block runs."""
        self.__dict__["_operation_task"] = asyncio.current_task()
        try:
            yield
        finally:
            self.__dict__["_operation_task"] = None

    async def cancel_operation(self, timeout: float | None = 1.0) -> bool:
        """Cancel the running operation (not the calling task) and wait up to ``timeout``
        seconds (None: without limit) for it to end; True if one was cancelled."""
        return await cancel_task(self.__dict__.get("_operation_task"), timeout)


__all__ = ["SimulatedDevice", "cancel_task"]
