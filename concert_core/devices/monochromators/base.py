"""Monochromators select a narrow energy band of the beam.

``energy`` (keV) and ``wavelength`` (nm) describe the same setting (E = h c / lambda): writing
either changes both, and observers of both are told. They can be written in state
``standby`` only; changing them moves the crystals (state ``moving``). States: ``standby``,
``moving``, ``error``; :meth:`Monochromator.reset` leaves ``error``. Implementations provide
``_get_energy``/``_set_energy`` (the wavelength is derived here), ``_reset``, and call
:meth:`Monochromator._announce_energy` for values they reach by themselves.

:class:`DoubleMonochromator` adds the tuning of the second crystal (or multilayer), whose tilt
is set by a rotation motor ``motor_2``: :meth:`~DoubleMonochromator.scan_bragg_angle` scans it
while reading a photodiode, then :meth:`~DoubleMonochromator.select_maximum` or
:meth:`~DoubleMonochromator.select_center_of_mass` moves it to the best angle found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pint

from concert_core.arguments import InUnitOf
from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError, UnitError
from concert_core.parameter import Quantity
from concert_core.quantities import q
from concert_core.state import State, check, transition

_HC = (1 * q.planck_constant * q.speed_of_light).to(q.keV * q.nm)


def energy_to_wavelength(energy: pint.Quantity) -> pint.Quantity:
    """Return the photon wavelength (nm) of ``energy``."""
    return (_HC / energy).to(q.nm)


def wavelength_to_energy(wavelength: pint.Quantity) -> pint.Quantity:
    """Return the photon energy (keV) of ``wavelength``."""
    return (_HC / wavelength).to(q.keV)


_STANDBY = check(source="standby", target="standby")


class Monochromator(Device):
    """A monochromator filtering the beam to a narrow energy band."""

    state = State(default="standby", help="standby, moving or error")
    energy = Quantity(q.keV, lower=0 * q.keV, check=_STANDBY,
                      help="Monochromatic photon energy")
    wavelength = Quantity(q.nm, lower=0 * q.nm, check=_STANDBY,
                          help="Monochromatic wavelength (h c / energy)")

    async def _get_energy(self) -> Any:
        raise AccessorNotImplementedError("energy")

    async def _set_energy(self, value: pint.Quantity) -> None:
        raise AccessorNotImplementedError("energy")

    async def _get_wavelength(self) -> pint.Quantity:
        return energy_to_wavelength(await self["energy"].get())

    async def _set_wavelength(self, value: pint.Quantity) -> None:
        if value.magnitude <= 0:
            raise ValueError(f"wavelength must be positive, got {value:~}")
        # Energy's own limits and state check apply; its observers are told.
        await self["energy"].set(wavelength_to_energy(value))

    def _announce_energy(self, energy: pint.Quantity) -> None:
        """Tell observers of ``energy`` and ``wavelength`` about a new value."""
        self["energy"].notify(energy)
        if energy.magnitude > 0:
            self["wavelength"].notify(energy_to_wavelength(energy))

    @check(source=["error", "standby"], target="standby")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault."""
        await self._reset()

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")


class DoubleMonochromator(Monochromator):
    """A monochromator whose second crystal (or multilayer) tilt can be scanned and tuned.

    ``motor_2`` is the rotation motor (anything with a ``position`` parameter in angle units)
    tilting the second crystal; ``diode`` the photodiode :meth:`scan_bragg_angle` reads when
    none is given.
    """

    async def __ainit__(self, motor_2: Any, diode: Any = None) -> None:
        await super().__ainit__()
        self._motor_2 = motor_2
        self._diode = diode
        self._last_scan: tuple[pint.Quantity, pint.Quantity] | None = None

    @background
    @check(source="standby", target="standby")
    async def scan_bragg_angle(
        self,
        diode: Any = None,
        n_points: int = 50,
        tune_range: InUnitOf(q.deg) = 0.025 * q.deg,
        center_point: InUnitOf(q.deg) | None = None,
    ) -> None:
        """Scan the second crystal over ``tune_range`` around ``center_point`` (default: its
        current angle) in ``n_points`` equidistant steps, reading ``diode`` (default: the
        device's own) at each; then move it back to where it was. The result is kept for
        :meth:`get_last_tune_scan`, :meth:`select_maximum` and :meth:`select_center_of_mass`.
        """
        diode = self._diode if diode is None else diode
        if diode is None:
            raise ValueError("no photodiode given and none configured")
        if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or \
                n_points < 2:
            raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
        tune_range = _degrees(tune_range, "tune_range")
        if tune_range.magnitude <= 0:
            raise ValueError(f"tune_range must be positive, got {tune_range:~}")
        if center_point is not None:
            center_point = _degrees(center_point, "center_point")
        await self._scan(diode, int(n_points), tune_range, center_point)

    @transition(immediate="moving", target="standby")
    async def _scan(self, diode: Any, n_points: int, tune_range: pint.Quantity,
                    center_point: pint.Quantity | None) -> None:
        position = self._motor_2["position"]
        initial = await position.get()
        center = initial if center_point is None else center_point
        angles = (center.to(q.deg) + np.linspace(-0.5, 0.5, n_points) * tune_range).to(q.deg)
        values = []
        try:
            for angle in angles:
                await position.set(angle)
                values.append((await diode["intensity"].get()).to(diode["intensity"].unit))
        except Exception:
            await position.set(initial)
            raise
        intensities = q.Quantity(np.array([v.magnitude for v in values]), values[0].units)
        self._last_scan = (angles, intensities)
        await position.set(initial)

    def get_last_tune_scan(self) -> tuple[pint.Quantity, pint.Quantity]:
        """Return ``(angles, intensities)`` of the last :meth:`scan_bragg_angle`."""
        if self._last_scan is None:
            raise ValueError("no tune scan has been made yet")
        return self._last_scan

    @background
    @check(source="standby", target="standby")
    async def select_maximum(self) -> None:
        """Move the second crystal to the angle of highest intensity of the last scan."""
        angles, intensities = self.get_last_tune_scan()
        await self._move_second_crystal(angles[int(np.argmax(intensities.magnitude))])

    @background
    @check(source="standby", target="standby")
    async def select_center_of_mass(self) -> None:
        """Move the second crystal to the intensity-weighted mean angle of the last scan."""
        angles, intensities = self.get_last_tune_scan()
        weights = intensities.magnitude
        if not np.sum(weights) > 0:
            raise ValueError("the last tune scan has no intensity: no center of mass")
        await self._move_second_crystal(
            float(np.sum(angles.magnitude * weights) / np.sum(weights)) * angles.units)

    @transition(immediate="moving", target="standby")
    async def _move_second_crystal(self, angle: pint.Quantity) -> None:
        await self._motor_2["position"].set(angle)


def _degrees(value: Any, what: str) -> pint.Quantity:
    try:
        return value.to(q.deg)
    except (AttributeError, pint.DimensionalityError):
        raise UnitError(f"{what}: {value!r} cannot be expressed in deg") from None


__all__ = [
    "DoubleMonochromator",
    "Monochromator",
    "energy_to_wavelength",
    "wavelength_to_energy",
]
