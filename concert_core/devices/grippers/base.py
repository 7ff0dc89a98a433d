"""Grippers grip and release objects.

:meth:`Gripper.grip` (from ``released``) and :meth:`Gripper.release` (from ``gripped``) move the
jaws, state ``moving`` meanwhile. States: ``released``, ``moving``, ``gripped``, ``error``;
:meth:`Gripper.reset` leaves ``error`` (the gripper is then released). Implementations provide
``_grip``, ``_release`` and ``_reset``.
"""

from __future__ import annotations

from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.state import State, check


class Gripper(Device):
    """Base gripper."""

    state = State(default="released", help="released, moving, gripped or error")

    @background
    @check(source="released", target="gripped")
    async def grip(self) -> None:
        """Grip an object (starts a background task)."""
        await self._grip()

    @background
    @check(source="gripped", target="released")
    async def release(self) -> None:
        """Release the object (starts a background task)."""
        await self._release()

    @check(source=["error", "released"], target="released")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault; the gripper ends ``released``."""
        await self._reset()

    async def _grip(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot grip")

    async def _release(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot release")

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


__all__ = ["Gripper"]
