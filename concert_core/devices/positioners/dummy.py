"""Simulated positioners built from simulated motors (x, y, z translation and rotation)."""

from __future__ import annotations

from typing import Any

import pint

from concert_core.devices.base import Device
from concert_core.devices.motors.dummy import LinearMotor, RotationMotor
from concert_core.devices.positioners import base, imaging
from concert_core.parameter import Quantity
from concert_core.quantities import q


async def _dummy_axes(
    speed: pint.Quantity | None,
    angular_speed: pint.Quantity | None,
    update_interval: pint.Quantity | None,
) -> list[base.Axis]:
    axes = []
    for coordinate in base.COORDINATES:
        motor = await LinearMotor(speed=speed, update_interval=update_interval)
        axes.append(await base.Axis(coordinate, motor))
    for coordinate in base.COORDINATES:
        motor = await RotationMotor(speed=angular_speed, update_interval=update_interval)
        axes.append(await base.Axis(coordinate, motor))
    return axes


class Positioner(base.Positioner):
    """A positioner with simulated linear and rotation motors on x, y and z."""

    async def __ainit__(
        self,
        position: pint.Quantity | None = None,
        speed: pint.Quantity | None = None,
        angular_speed: pint.Quantity | None = None,
        update_interval: pint.Quantity | None = None,
    ) -> None:
        """``position`` is the global position (metadata); ``speed`` (100 mm/s),
        ``angular_speed`` (100 deg/s) and ``update_interval`` go to the motors."""
        axes = await _dummy_axes(speed, angular_speed, update_interval)
        await super().__ainit__(axes, position=position)


class PixelSize(Device):
    """A stand-in detector with a fixed effective pixel size."""

    pixel_width = Quantity(q.um, help="Effective pixel width")
    pixel_height = Quantity(q.um, help="Effective pixel height")

    async def __ainit__(self, pixel_size: pint.Quantity | None = None) -> None:
        await super().__ainit__()
        self._size = self["pixel_width"].parameter.convert(
            1 * q.um if pixel_size is None else pixel_size, "pixel_size"
        )

    async def _get_pixel_width(self) -> pint.Quantity:
        return self._size

    async def _get_pixel_height(self) -> pint.Quantity:
        return self._size


class ImagingPositioner(imaging.Positioner):
    """An imaging positioner with simulated motors on x, y and z.

    Without a ``detector`` the pixel size is ``pixel_size`` (1 um) in both directions.
    """

    async def __ainit__(
        self,
        detector: Any = None,
        position: pint.Quantity | None = None,
        pixel_size: pint.Quantity | None = None,
        speed: pint.Quantity | None = None,
        angular_speed: pint.Quantity | None = None,
        update_interval: pint.Quantity | None = None,
    ) -> None:
        if detector is None:
            detector = await PixelSize(pixel_size)
        axes = await _dummy_axes(speed, angular_speed, update_interval)
        await super().__ainit__(axes, detector, position=position)


__all__ = ["ImagingPositioner", "PixelSize", "Positioner"]
