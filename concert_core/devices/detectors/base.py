"""Detectors: a camera behind optics that magnify the image onto the sensor.

The effective pixel size, the size of the sample area one pixel sees, is the camera's sensor
pixel size divided by the magnification. Simulated detectors are in
:mod:`concert_core.devices.detectors.dummy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pint

from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError
from concert_core.parameter import Quantity
from concert_core.quantities import q

if TYPE_CHECKING:
    from concert_core.devices.cameras.base import Camera


async def _pixel_width(detector: Detector) -> pint.Quantity:
    width = await detector.camera.get_sensor_pixel_width()
    return width / await detector.get_magnification()


async def _pixel_height(detector: Detector) -> pint.Quantity:
    height = await detector.camera.get_sensor_pixel_height()
    return height / await detector.get_magnification()


class Detector(Device):
    """A :attr:`camera` with optics of some :attr:`magnification`.

    ``pixel_width``/``pixel_height`` are the effective (sample-side) pixel size: the camera's
    sensor pixel size divided by the magnification. Implementations set ``camera`` and provide
    ``_get_magnification``.
    """

    magnification = Quantity(
        q.dimensionless, help="Magnification of the optics (sensor image size / object size)"
    )
    pixel_width = Quantity(
        q.um, fget=_pixel_width,
        help="Effective pixel width at the sample: sensor pixel width / magnification",
    )
    pixel_height = Quantity(
        q.um, fget=_pixel_height,
        help="Effective pixel height at the sample: sensor pixel height / magnification",
    )

    @property
    def camera(self) -> Camera:
        """The camera recording the magnified image."""
        camera = self.__dict__.get("_camera")
        if camera is None:
            raise AccessorNotImplementedError(f"{type(self).__name__} has no camera")
        return camera


__all__ = ["Detector"]
