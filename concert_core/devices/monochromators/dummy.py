"""Simulated monochromators: the energy changes at a finite speed; the double monochromator
has a simulated second-crystal tilt stage and a photodiode reading its rocking curve."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pint

from concert_core.devices.base import Device
from concert_core.devices.monochromators.base import DoubleMonochromator as BaseDouble
from concert_core.devices.monochromators.base import Monochromator as BaseMonochromator
from concert_core.devices.photodiodes.dummy import PhotoDiode
from concert_core.devices.simulation import SimulatedDevice, cancel_task
from concert_core.errors import StateError
from concert_core.parameter import Quantity
from concert_core.quantities import q
from concert_core.state import State, transition

#: Fault kinds of the dummy monochromators.
FAULTS = {
    "stall": "the next energy change stops halfway and the state goes to 'error' (StateError)",
}

_NOTIFY_PERIOD = 0.05  # s


class _SimulatedEnergy(SimulatedDevice):
    """Energy moving at ``speed`` (announced at 20 Hz), faults and emergency stop."""

    FAULTS = FAULTS

    async def _setup_energy(self, energy: pint.Quantity | None, lower: pint.Quantity | None,
                            upper: pint.Quantity | None, speed: pint.Quantity | None) -> None:
        convert = self["energy"].parameter.convert
        await self["energy"].set_lower(convert(4 * q.keV if lower is None else lower))
        await self["energy"].set_upper(convert(40 * q.keV if upper is None else upper))
        self._energy = convert(10 * q.keV if energy is None else energy)
        speed = 50 * q.keV / q.s if speed is None else speed
        self._speed = float(speed.to(q.keV / q.s).magnitude)
        if self._speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")

    async def _get_energy(self) -> pint.Quantity:
        return self._energy

    @transition(immediate="moving", target="standby")
    async def _set_energy(self, value: pint.Quantity) -> None:
        start = self._energy
        duration = abs(float((value - start).to(q.keV).magnitude)) / self._speed
        stall = self.has_fault("stall")
        loop = asyncio.get_running_loop()
        began = loop.time()
        with self.operation():
            while True:
                progress = 1.0 if duration <= 0 else min(1.0, (loop.time() - began) / duration)
                if stall and progress >= 0.5:
                    self.take_fault("stall")
                    self._energy = start + (value - start) * 0.5
                    self._announce_energy(self._energy)
                    raise StateError("error", f"crystal drive stalled at {self._energy:~.4g}")
                self._energy = start + (value - start) * progress
                self._announce_energy(self._energy)
                if progress >= 1.0:
                    self._energy = value
                    return
                await asyncio.sleep(min(_NOTIFY_PERIOD, duration * (1 - progress)))

    @transition(target="standby")
    async def _reset(self) -> None:
        pass

    async def _emergency_stop(self) -> None:
        await self.cancel_operation()


class Monochromator(_SimulatedEnergy, BaseMonochromator):
    """A dummy monochromator whose energy changes at ``speed`` (state ``moving`` meanwhile).

    An emergency stop halts an energy change where it is (state ``standby``).
    """

    async def __ainit__(
        self,
        energy: pint.Quantity | None = None,
        lower: pint.Quantity | None = None,
        upper: pint.Quantity | None = None,
        speed: pint.Quantity | None = None,
    ) -> None:
        """Defaults: 10 keV, limits 4..40 keV, speed 50 keV/s."""
        await super().__ainit__()
        await self._setup_energy(energy, lower, upper, speed)


class TiltStage(Device):
    """The simulated rotation stage tilting the second crystal (a minimal rotation motor)."""

    state = State(default="standby", help="standby or moving")
    position = Quantity(q.deg, help="Tilt angle of the second crystal")

    async def __ainit__(self, position: pint.Quantity | None = None,
                        speed: pint.Quantity | None = None) -> None:
        """Defaults: 0 deg, 1 deg/s."""
        await super().__ainit__()
        self._position = self["position"].parameter.convert(
            0 * q.deg if position is None else position)
        self._speed = float((1 * q.deg / q.s if speed is None else speed)
                            .to(q.deg / q.s).magnitude)

    async def _get_position(self) -> pint.Quantity:
        return self._position

    @transition(immediate="moving", target="standby")
    async def _set_position(self, value: pint.Quantity) -> None:
        await asyncio.sleep(abs(float((value - self._position).magnitude)) / self._speed)
        self._position = value


class DoubleMonochromator(_SimulatedEnergy, BaseDouble):
    """A dummy double monochromator.

    Its second crystal is tilted by a simulated :class:`TiltStage` (``motor_2``) and its own
    dummy photodiode (``diode``) reads a Gaussian rocking curve of that tilt: ``peak_intensity``
    at ``rocking_center``, full width at half maximum ``rocking_width``, on top of
    ``background`` volts.
    """

    async def __ainit__(
        self,
        energy: pint.Quantity | None = None,
        lower: pint.Quantity | None = None,
        upper: pint.Quantity | None = None,
        speed: pint.Quantity | None = None,
        tilt: pint.Quantity | None = None,
        tilt_speed: pint.Quantity | None = None,
        rocking_center: pint.Quantity | None = None,
        rocking_width: pint.Quantity | None = None,
        peak_intensity: pint.Quantity | None = None,
        background: pint.Quantity | None = None,
        noise: float = 0.0,
    ) -> None:
        """Defaults: energy as :class:`Monochromator`; tilt 0.004 deg at 1 deg/s; rocking curve
        centred at 0 deg, FWHM 0.008 deg, peak 5 V on 0.05 V background, no noise."""
        stage = await TiltStage(position=0.004 * q.deg if tilt is None else tilt,
                                speed=tilt_speed)
        diode = await PhotoDiode(noise=noise)
        self._rocking_center = (0 * q.deg if rocking_center is None else rocking_center).to(q.deg)
        fwhm = (0.008 * q.deg if rocking_width is None else rocking_width).to(q.deg)
        self._rocking_sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
        self._peak = (5 * q.V if peak_intensity is None else peak_intensity).to(q.V)
        self._background = (0.05 * q.V if background is None else background).to(q.V)
        diode.follow(self._rocking_curve)
        await super().__ainit__(motor_2=stage, diode=diode)
        await self._setup_energy(energy, lower, upper, speed)

    @property
    def motor_2(self) -> TiltStage:
        """The tilt stage of the second crystal."""
        return self._motor_2

    @property
    def diode(self) -> PhotoDiode:
        """The photodiode behind the monochromator."""
        return self._diode

    def _rocking_curve(self) -> pint.Quantity:
        offset = float(((self._motor_2._position - self._rocking_center)  # noqa: SLF001
                        / self._rocking_sigma).to(q.dimensionless).magnitude)
        return self._background + self._peak * math.exp(-0.5 * offset**2)

    async def _scan(self, *args: Any) -> None:
        self._scan_task = asyncio.current_task()
        try:
            await super()._scan(*args)
        finally:
            self._scan_task = None

    async def _move_second_crystal(self, angle: pint.Quantity) -> None:
        self._scan_task = asyncio.current_task()
        try:
            await super()._move_second_crystal(angle)
        finally:
            self._scan_task = None

    async def _emergency_stop(self) -> None:
        await super()._emergency_stop()
        await cancel_task(self.__dict__.get("_scan_task"))


__all__ = ["FAULTS", "DoubleMonochromator", "Monochromator", "TiltStage"]
