"""Light sources (LEDs, halogen lamps).

``intensity`` (V, the control voltage; not negative) can be written whenever the source is
not in ``error``; it is emitted while the source is ``on``. :meth:`LightSource.on` (from
``off``) and :meth:`LightSource.off` (from ``on``) switch it. States: ``off``, ``on``,
``error``; :meth:`LightSource.reset` leaves ``error``. Implementations provide
``_get/_set_intensity``, ``_on``, ``_off`` and ``_reset``.
"""

from __future__ import annotations

from typing import Any

import pint

from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError
from concert_core.parameter import Quantity
from concert_core.quantities import q
from concert_core.state import State, check


class LightSource(Device):
    """A base light source."""

    state = State(default="off", help="off, on or error")
    intensity = Quantity(q.V, lower=0 * q.V,
                         check=check(source=["off", "on"], target=["off", "on"]),
                         help="Intensity set point (control voltage), emitted while on")

    async def _get_intensity(self) -> Any:
        raise AccessorNotImplementedError("intensity")

    async def _set_intensity(self, value: pint.Quantity) -> None:
        raise AccessorNotImplementedError("intensity")

    @check(source="off", target="on")
    async def on(self) -> None:
        """Switch the light on."""
        await self._on()

    @check(source="on", target="off")
    async def off(self) -> None:
        """Switch the light off."""
        await self._off()

    @check(source=["error", "off"], target="off")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault; the light ends ``off``."""
        await self._reset()

    async def _on(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot switch on")

    async def _off(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot switch off")

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


__all__ = ["LightSource"]
