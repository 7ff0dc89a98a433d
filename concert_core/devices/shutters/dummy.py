"""A simulated shutter whose blades take ``motion_time`` to travel."""

from __future__ import annotations

import asyncio

import pint

from concert_core.devices.shutters.base import Shutter as BaseShutter
from concert_core.errors import StateError
from concert_core.quantities import q
from concert_core.state import transition

#: Fault kinds of the dummy shutter.
FAULTS = {
    "jam": "the next open/close stops halfway and the shutter goes to 'error' (StateError)",
    "slow": "open/close take ten times longer until the fault is cleared",
}


class Shutter(BaseShutter):
    """A dummy shutter.

    Opening and closing take ``motion_time`` (state ``moving`` meanwhile). An emergency stop
    drops the shutter closed at once (its safe state), also in the middle of a motion.
    """

    async def __ainit__(self, state: str = "closed", motion_time: pint.Quantity | None = None
                        ) -> None:
        """``state`` is ``'closed'`` or ``'open'``; ``motion_time`` defaults to 50 ms."""
        await super().__ainit__()
        if state not in ("closed", "open"):
            raise ValueError(f"state must be 'closed' or 'open', not {state!r}")
        self["state"].set_software(state)
        self._motion_time = (0.05 * q.s if motion_time is None else motion_time).to(q.s)
        self._faults: set[str] = set()
        self._busy: asyncio.Task | None = None

    async def _travel(self) -> None:
        duration = float(self._motion_time.magnitude) * (10 if "slow" in self._faults else 1)
        self._busy = asyncio.current_task()
        try:
            if "jam" in self._faults:
                self._faults.discard("jam")
                await asyncio.sleep(duration / 2)
                raise StateError("error", "shutter jammed halfway")
            await asyncio.sleep(duration)
        finally:
            self._busy = None

    @transition(immediate="moving", target="open")
    async def _open(self) -> None:
        await self._travel()

    @transition(immediate="moving", target="closed")
    async def _close(self) -> None:
        await self._travel()

    @transition(target="closed")
    async def _reset(self) -> None:
        pass

    async def _emergency_stop(self) -> None:
        task = self._busy
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1)
        if await self.get_state() != "error":
            self["state"].set_software("closed")

    async def inject_fault(self, kind: str) -> None:
        """Inject a fault: ``"jam"`` (next motion stops halfway, state ``error``) or
        ``"slow"`` (motions take ten times longer)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(sorted(FAULTS))}")
        self._faults.add(kind)

    async def clear_fault(self) -> None:
        """Remove every injected fault (the state is left alone; see :meth:`reset`)."""
        self._faults.clear()


__all__ = ["FAULTS", "Shutter"]
