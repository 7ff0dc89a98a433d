"""A simulated gripper whose jaws take ``motion_time`` to close or open."""

from __future__ import annotations

import asyncio

import pint

from concert_core.devices.grippers.base import Gripper as BaseGripper
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import StateError
from concert_core.quantities import q
from concert_core.state import transition

#: Fault kinds of the dummy gripper.
FAULTS = {
    "slip": "the next grip closes on nothing: state 'error' (StateError) at its end",
    "jam": "the next grip or release stops halfway: state 'error' (StateError)",
}


class Gripper(SimulatedDevice, BaseGripper):
    """A dummy gripper.

    An emergency stop halts the jaws; the gripper keeps its previous state (an interrupted
    grip counts as released, an interrupted release as still gripped: nothing is dropped).
    """

    FAULTS = FAULTS

    async def __ainit__(self, motion_time: pint.Quantity | None = None) -> None:
        """``motion_time`` defaults to 0.1 s."""
        await super().__ainit__()
        self._motion_time = float((0.1 * q.s if motion_time is None else motion_time)
                                  .to(q.s).magnitude)
        self._before = "released"

    async def _move(self, gripping: bool) -> None:
        with self.operation():
            if self.take_fault("jam"):
                await asyncio.sleep(self._motion_time / 2)
                raise StateError("error", "gripper jaws jammed")
            await asyncio.sleep(self._motion_time)
            if gripping and self.take_fault("slip"):
                raise StateError("error", "no object gripped (slipped)")

    @transition(immediate="moving", target="gripped")
    async def _grip(self) -> None:
        self._before = "released"
        await self._move(gripping=True)

    @transition(immediate="moving", target="released")
    async def _release(self) -> None:
        self._before = "gripped"
        await self._move(gripping=False)

    @transition(target="released")
    async def _reset(self) -> None:
        pass

    async def _emergency_stop(self) -> None:
        if await self.cancel_operation():
            self["state"].set_software(self._before, "motion stopped by emergency stop")


__all__ = ["FAULTS", "Gripper"]
