"""Pumps.

``flow_rate`` (ml/min, not negative) can be written at any time but ``error``. :meth:`Pump.start`
(from ``standby``) and :meth:`Pump.stop` (from ``pumping``) spin the pump up or down, state
``busy`` meanwhile. States: ``standby``, ``busy``, ``pumping``, ``error``; :meth:`Pump.reset`
leaves ``error``. Implementations provide ``_get/_set_flow_rate``, ``_start``, ``_stop``,
``_reset``.
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


class Pump(Device):
    """A pumping device."""

    state = State(default="standby", help="standby, busy (spinning up/down), pumping or error")
    flow_rate = Quantity(q.ml / q.min, lower=0 * q.ml / q.min,
                         check=check(source=["standby", "pumping"],
                                     target=["standby", "pumping"]),
                         help="Flow rate (volume per time) while pumping")

    async def _get_flow_rate(self) -> Any:
        raise AccessorNotImplementedError("flow_rate")

    async def _set_flow_rate(self, value: pint.Quantity) -> None:
        raise AccessorNotImplementedError("flow_rate")

    @background
    @check(source="standby", target="pumping")
    async def start(self) -> None:
        """Start pumping (starts a background task)."""
        await self._start()

    @background
    @check(source="pumping", target="standby")
    async def stop(self) -> None:
        """Stop pumping (starts a background task)."""
        await self._stop()

    @check(source=["error", "standby"], target="standby")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault."""
        await self._reset()

    async def _start(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot start")

    async def _stop(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot stop")

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


__all__ = ["Pump"]
