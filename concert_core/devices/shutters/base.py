"""Shutters: open and close the beam.

States: ``closed``, ``moving`` (blades travelling), ``open`` and ``error``. :meth:`Shutter.open`
is allowed from ``closed`` only, :meth:`Shutter.close` from ``open`` only; anything else raises
``TransitionNotAllowed``. :meth:`Shutter.reset` leaves ``error`` (the shutter is then closed).
Implementations provide ``_open``, ``_close`` and ``_reset``.
"""

from __future__ import annotations

from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.state import State, check


class Shutter(Device):
    """A shutter that blocks (``closed``) or passes (``open``) the beam."""

    state = State(default="closed", help="closed, moving, open or error")

    @background
    @check(source="closed", target="open")
    async def open(self) -> None:
        """Open the shutter (starts a background task)."""
        await self._open()

    @background
    @check(source="open", target="closed")
    async def close(self) -> None:
        """Close the shutter (starts a background task)."""
        await self._close()

    @check(source=["error", "closed"], target="closed")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault; the shutter ends ``closed``."""
        await self._reset()

    async def _open(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot open")

    async def _close(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot close")

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


__all__ = ["Shutter"]
