"""A simulated x-ray tube whose high voltage ramps in time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pint

from concert_core.devices.simulation import SimulatedDevice
from concert_core.devices.xraytubes.base import XRayTube as BaseXRayTube
from concert_core.errors import LimitError, StateError
from concert_core.quantities import q
from concert_core.state import transition

#: Fault kinds of the dummy tube.
FAULTS = {
    "arc": "the next ramp arcs halfway: the output drops to zero and the state goes to 'error'",
    "interlock": "on() is refused with StateError (interlock open); the tube stays 'off'",
}

_NOTIFY_PERIOD = 0.05  # s, announcements while ramping (>= 10 Hz)


def _relative(delta: pint.Quantity, full: pint.Quantity) -> float:
    if full.magnitude == 0:
        return 0.0
    return abs(float((delta / full).to(q.dimensionless).magnitude))


class XRayTube(SimulatedDevice, BaseXRayTube):
    """A dummy x-ray tube.

    ``voltage``/``current`` read the actual output: zero while off, the set point while on,
    intermediate values (announced at 20 Hz) while ramping. A full ramp from zero to the set
    points (or back) takes ``ramp_time``; set-point changes while on ramp proportionally.
    Set points are refused with ``LimitError`` if voltage * current would exceed ``max_power``.
    An emergency stop switches the high voltage off at once.
    """

    FAULTS = FAULTS

    async def __ainit__(
        self,
        voltage: pint.Quantity | None = None,
        current: pint.Quantity | None = None,
        max_voltage: pint.Quantity | None = None,
        max_current: pint.Quantity | None = None,
        max_power: pint.Quantity | None = None,
        ramp_time: pint.Quantity | None = None,
    ) -> None:
        """Defaults: set points 40 kV and 1 mA, limits 60 kV, 2 mA, 100 W, ramp_time 0.5 s."""
        await super().__ainit__()
        self._set_v = self["voltage"].parameter.convert(40 * q.kV if voltage is None else voltage)
        self._set_i = self["current"].parameter.convert(1 * q.mA if current is None else current)
        await self["voltage"].set_upper(60 * q.kV if max_voltage is None else max_voltage)
        await self["current"].set_upper(2 * q.mA if max_current is None else max_current)
        self._max_power = (100 * q.W if max_power is None else max_power).to(q.W)
        self._ramp_time = float((0.5 * q.s if ramp_time is None else ramp_time).to(q.s).magnitude)
        self._target_v, self._target_i = self._set_v, self._set_i
        self._fraction = 0.0  # output relative to the set points (0 = off, 1 = on)

    # -- accessors -------------------------------------------------------------------
    async def _get_voltage(self) -> pint.Quantity:
        return self._set_v * self._fraction

    async def _get_current(self) -> pint.Quantity:
        return self._set_i * self._fraction

    def _check_power(self, voltage: pint.Quantity, current: pint.Quantity) -> None:
        power = (voltage * current).to(q.W)
        if power > self._max_power:
            raise LimitError(f"{voltage:~} * {current:~} = {power:~.4g} exceeds the maximum "
                             f"power {self._max_power:~}")

    async def _set_voltage(self, value: pint.Quantity) -> None:
        self._check_power(value, self._set_i)
        await self._change_set_points(value, self._set_i)

    async def _set_current(self, value: pint.Quantity) -> None:
        self._check_power(self._set_v, value)
        await self._change_set_points(self._set_v, value)

    async def _change_set_points(self, voltage: pint.Quantity, current: pint.Quantity) -> None:
        self._target_v, self._target_i = voltage, current
        if await self.get_state() == "off":
            self._set_v, self._set_i = voltage, current
            return
        await self._ramp_set_points(voltage, current)

    async def _get_target_voltage(self) -> pint.Quantity:
        return self._target_v

    async def _get_target_current(self) -> pint.Quantity:
        return self._target_i

    async def _full_scale(self, name: str, fallback: pint.Quantity) -> pint.Quantity:
        upper = await self[name].get_upper()
        return fallback if upper is None or upper.magnitude <= 0 else upper

    @transition(immediate="moving", target="on")
    async def _ramp_set_points(self, voltage: pint.Quantity, current: pint.Quantity) -> None:
        old_v, old_i = self._set_v, self._set_i
        full_v = await self._full_scale("voltage", max(voltage, old_v))
        full_i = await self._full_scale("current", max(current, old_i))
        change = max(_relative(voltage - old_v, full_v), _relative(current - old_i, full_i))

        def step(progress: float) -> None:
            self._set_v = old_v + (voltage - old_v) * progress
            self._set_i = old_i + (current - old_i) * progress

        await self._ramp(step, change * self._ramp_time)

    # -- on / off --------------------------------------------------------------------
    async def _ramp(self, step: Callable[[float], None], duration: float) -> None:
        """Call ``step(progress)`` from 0 to 1 over ``duration`` seconds, announcing values."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        arc = self.has_fault("arc")
        with self.operation():
            while True:
                progress = 1.0 if duration <= 0 else min(1.0, (loop.time() - began) / duration)
                if arc and progress >= 0.5:
                    self.take_fault("arc")
                    self._fraction = 0.0
                    self._announce()
                    raise StateError("error", "high voltage arc: tube tripped")
                step(progress)
                self._announce()
                if progress >= 1.0:
                    return
                await asyncio.sleep(min(_NOTIFY_PERIOD, max(0.0, duration * (1 - progress))))

    def _announce(self) -> None:
        voltage, current = self._set_v * self._fraction, self._set_i * self._fraction
        self["voltage"].notify(voltage)
        self["current"].notify(current)
        self["power"].notify((voltage * current).to(q.W))

    @transition(immediate="moving", target="on")
    async def _on(self) -> None:
        if self.has_fault("interlock"):
            raise StateError("off", "interlock open: the tube cannot be switched on")
        start = self._fraction
        await self._ramp(lambda p: setattr(self, "_fraction", start + (1 - start) * p),
                         (1 - start) * self._ramp_time)

    @transition(immediate="moving", target="off")
    async def _off(self) -> None:
        start = self._fraction
        await self._ramp(lambda p: setattr(self, "_fraction", start * (1 - p)),
                         start * self._ramp_time)

    @transition(target="off")
    async def _reset(self) -> None:
        self._fraction = 0.0
        self._announce()

    async def _emergency_stop(self) -> None:
        await self.cancel_operation()
        self._fraction = 0.0
        self._target_v, self._target_i = self._set_v, self._set_i
        self._announce()
        if await self.get_state() != "error":
            self["state"].set_software("off")


__all__ = ["FAULTS", "XRayTube"]
