"""X-ray tubes.

``voltage`` (kV) and ``current`` (mA) are the tube's set points and can be written while the
tube is ``off`` or ``on``; ``power`` (W) = voltage * current is read-only. :meth:`XRayTube.on`
(from ``off``) and :meth:`XRayTube.off` (from ``on``) ramp the high voltage, state ``moving``
meanwhile. States: ``off``, ``moving``, ``on``, ``error``; :meth:`XRayTube.reset` leaves
``error`` (the tube is then off). Implementations provide ``_get/_set_voltage``,
``_get/_set_current``, ``_on``, ``_off`` and ``_reset``.
"""

from __future__ import annotations

from typing import Any

import pint

from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError
from concert_core.parameter import Quantity
from concert_core.quantities import q
from concert_core.state import State, check

_SETPOINT_CHECK = check(source=["off", "on"], target=["off", "on"])


class XRayTube(Device):
    """A base x-ray tube."""

    state = State(default="off", help="off, moving (ramping), on or error")
    voltage = Quantity(q.kV, lower=0 * q.kV, check=_SETPOINT_CHECK,
                       help="Acceleration voltage (ramped while the tube is on)")
    current = Quantity(q.mA, lower=0 * q.mA, check=_SETPOINT_CHECK,
                       help="Tube (emission) current (ramped while the tube is on)")
    power = Quantity(q.W, help="Electrical power of the beam: voltage * current")

    async def _get_voltage(self) -> Any:
        raise AccessorNotImplementedError("voltage")

    async def _set_voltage(self, value: pint.Quantity) -> None:
        raise AccessorNotImplementedError("voltage")

    async def _get_current(self) -> Any:
        raise AccessorNotImplementedError("current")

    async def _set_current(self, value: pint.Quantity) -> None:
        raise AccessorNotImplementedError("current")

    async def _get_power(self) -> pint.Quantity:
        return (await self["voltage"].get() * await self["current"].get()).to(q.W)

    @background
    @check(source="off", target="on")
    async def on(self) -> None:
        """Switch the tube on, ramping up to the set points (starts a background task)."""
        await self._on()

    @background
    @check(source="on", target="off")
    async def off(self) -> None:
        """Switch the tube off, ramping down (starts a background task)."""
        await self._off()

    @check(source=["error", "off"], target="off")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault; the tube ends ``off``."""
        await self._reset()

    async def _on(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be switched on")

    async def _off(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be switched off")

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


__all__ = ["XRayTube"]
