"""A simulated shutter whose blades take ``motion_time`` to travel."""

from __future__ import annotations

import asyncio

import pint

from concert_core.coroutines.base import sleep
from concert_core.devices.shutters.base import Shutter as BaseShutter
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import StateError
from concert_core.quantities import q
from concert_core.state import transition

#: Fault kinds of the dummy shutter.
FAULTS = {
    "jam": "the next open/close stops halfway and the shutter goes to 'error' (StateError)",
    "slow": "open/close take ten times longer until the fault is cleared",
}


class Shutter(SimulatedDevice, BaseShutter):
    """A dummy shutter.

    Opening and closing take ``motion_time`` (state ``moving`` meanwhile). An emergency stop
    drops the shutter closed at once (its safe state), also in the middle of a motion.
    """

    FAULTS = FAULTS

    async def __ainit__(self, state: str = "closed", motion_time: pint.Quantity | None = None
                        ) -> None:
        """``state`` is ``'closed'`` or ``'open'``; ``motion_time`` defaults to 50 ms."""
        await super().__ainit__()
        if state not in ("closed", "open"):
            raise ValueError(f"state must be 'closed' or 'open', not {state!r}")
        self["state"].set_software(state)
        self._motion_time = (0.05 * q.s if motion_time is None else motion_time).to(q.s)

    async def _travel(self) -> None:
        duration = float(self._motion_time.magnitude) * (10 if self.has_fault("slow") else 1)
        with self.operation():
            if self.take_fault("jam"):
                await asyncio.sleep(duration / 2)
                raise StateError("error", "shutter jammed halfway")
            await sleep(duration, precise=True)  # a loop timer could add a millisecond

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
        await self.cancel_operation()
        if await self.get_state() != "error":
            self["state"].set_software("closed")


__all__ = ["FAULTS", "Shutter"]
