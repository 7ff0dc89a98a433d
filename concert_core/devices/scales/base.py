"""Scales weigh what lies on them.

``weight`` (g) is read-only. :class:`TarableScales` add :meth:`~TarableScales.tare` (from
``standby``; state ``busy`` while the scales settle; a failed tare leaves ``error``, which
:meth:`~TarableScales.reset` leaves). Implementations provide ``_get_weight``, ``_tare`` and
``_reset``.
"""

from __future__ import annotations

from typing import Any

from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError
from concert_core.parameter import Quantity
from concert_core.quantities import q
from concert_core.state import State, check


class Scales(Device):
    """Base scales."""

    state = State(default="standby", help="standby, busy (taring) or error (a tare failed)")
    weight = Quantity(q.g, help="Weighed mass")

    async def _get_weight(self) -> Any:
        raise AccessorNotImplementedError("weight")


class TarableScales(Scales):
    """Scales which can be tared."""

    @background
    @check(source="standby", target="standby")
    async def tare(self) -> None:
        """Tare the scales: what lies on them now weighs zero (starts a background task)."""
        await self._tare()

    @check(source=["error", "standby"], target="standby")
    async def reset(self) -> None:
        """Leave state ``error`` after a failed tare."""
        await self._reset()

    async def _tare(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot tare")

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


__all__ = ["Scales", "TarableScales"]
