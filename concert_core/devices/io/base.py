"""Digital input/output.

:class:`IO` has numbered ``ports`` read with :meth:`IO.read_port` and written with
:meth:`IO.write_port`; an unknown port raises ``ValueError`` naming the valid ones.
Implementations provide ``_get_ports``, ``_read_port`` and ``_write_port``.

:class:`Signal` is a binary signal (e.g. a TTL trigger line): :meth:`Signal.on` (from ``off``),
:meth:`Signal.off` (from ``on``) and :meth:`Signal.trigger` (a pulse of ``duration``, from
``off``; state ``on`` during the pulse). States ``off``, ``on``, ``error``;
:meth:`Signal.reset` leaves ``error``. Implementations provide ``_on``, ``_off``, ``_trigger``
and ``_reset``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pint

from concert_core.arguments import InUnitOf
from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError, UnitError
from concert_core.parameter import Parameter
from concert_core.quantities import q
from concert_core.state import State, check


class IO(Device):
    """A device of ports which can be read and written."""

    ports = Parameter(help="Port numbers used by read_port() and write_port()")

    async def _get_ports(self) -> Any:
        raise AccessorNotImplementedError("ports")

    async def _valid_port(self, port: int) -> int:
        ports = [int(p) for p in np.asarray(await self["ports"].get()).ravel()]
        if isinstance(port, bool) or not isinstance(port, (int, np.integer)) or port not in ports:
            raise ValueError(f"port {port!r} does not exist; ports: {ports}")
        return int(port)

    async def read_port(self, port: int) -> int:
        """Read the value of ``port``."""
        return await self._read_port(await self._valid_port(port))

    async def write_port(self, port: int, value: int) -> None:
        """Write ``value`` (a non-negative integer) to ``port``."""
        port = await self._valid_port(port)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"port value must be a non-negative integer, got {value!r}")
        await self._write_port(port, int(value))

    async def _read_port(self, port: int) -> int:
        raise NotImplementedError(f"{type(self).__name__} cannot read ports")

    async def _write_port(self, port: int, value: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot write ports")


class Signal(Device):
    """A binary signal, e.g. a TTL trigger line."""

    state = State(default="off", help="off, on or error")

    @check(source="off", target="on")
    async def on(self) -> None:
        """Switch the signal on."""
        await self._on()

    @check(source="on", target="off")
    async def off(self) -> None:
        """Switch the signal off."""
        await self._off()

    @background
    @check(source="off", target="off")
    async def trigger(self, duration: InUnitOf(q.s) = 10 * q.ms) -> None:
        """Send a pulse of ``duration`` (starts a background task)."""
        try:
            duration = duration.to(q.s)
        except (AttributeError, pint.DimensionalityError):
            raise UnitError(f"duration: {duration!r} cannot be expressed in s") from None
        if duration.magnitude <= 0:
            raise ValueError(f"duration must be positive, got {duration:~}")
        await self._trigger(duration)

    @check(source=["error", "off"], target="off")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault; the signal ends ``off``."""
        await self._reset()

    async def _on(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot switch on")

    async def _off(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot switch off")

    async def _trigger(self, duration: pint.Quantity) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot trigger")

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


__all__ = ["IO", "Signal"]
