"""A positioner that also moves in detector pixels.

The detector is any object with ``pixel_width`` and ``pixel_height`` Quantity parameters
(effective pixel size: a length, or a length per pixel). Pixels map to x (width) and
y (height); z has no pixel size and must be 0 or nan in a pixel vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pint

from concert_core.coroutines.base import background
from concert_core.devices.positioners import base
from concert_core.errors import UnitError
from concert_core.quantities import q

_PIXEL = q.pixel.dimensionality


def _is_pixels(value: Any) -> bool:
    return isinstance(value, pint.Quantity) and value.dimensionality == _PIXEL


class Positioner(base.Positioner):
    """A :class:`~concert_core.devices.positioners.base.Positioner` that takes pixels too.

    :meth:`move` and the direction methods accept lengths or pixels (``q.pixel``);
    :meth:`move_pixels` takes plain pixel numbers (for Tango).
    """

    async def __ainit__(
        self, axes: list[base.Axis], detector: Any, position: pint.Quantity | None = None
    ) -> None:
        self.detector = detector
        await super().__ainit__(axes, position=position)

    async def _pixel_size(self, name: str) -> pint.Quantity:
        """The detector's effective pixel ``name`` (``pixel_width``/``pixel_height``) in mm."""
        size = await self.detector[name].get()
        if not isinstance(size, pint.Quantity):
            raise UnitError(f"detector {name} {size!r} is not a quantity")
        if size.dimensionality != q.mm.dimensionality:
            size = size * q.pixel
        try:
            return size.to(q.mm)
        except pint.DimensionalityError:
            raise UnitError(f"detector {name} {size:~} is not a length (per pixel)") from None

    async def pixels_to_length(self, pixels: pint.Quantity) -> pint.Quantity:
        """Convert a pixel vector (x, y) or (x, y, z) into a length 3-vector in mm."""
        try:
            magnitude = np.asarray(pixels.to(q.pixel).magnitude, dtype=float)
        except (AttributeError, pint.DimensionalityError):
            raise UnitError(f"{pixels!r} is not given in pixels") from None
        if magnitude.shape == (2,):
            magnitude = np.append(magnitude, 0.0)
        if magnitude.shape != (3,):
            raise ValueError(f"a pixel vector has 2 or 3 components, got {pixels:~}")
        if not (np.isnan(magnitude[2]) or magnitude[2] == 0):
            raise ValueError(f"z has no pixel size: its component must be 0 or nan, got {pixels:~}")
        width = await self._pixel_size("pixel_width")
        height = await self._pixel_size("pixel_height")
        return q.Quantity(
            np.array([magnitude[0] * width.magnitude, magnitude[1] * height.magnitude,
                      magnitude[2]]),
            q.mm,
        )

    async def _translate(self, delta: Any) -> None:
        if _is_pixels(delta):
            delta = await self.pixels_to_length(delta)
        await super()._translate(delta)

    @background
    async def move_pixels(self, x: float, y: float) -> None:
        """Move by ``x`` pixels along x and ``y`` pixels along y (starts a background task)."""
        await self._translate(q.Quantity(np.array([x, y, 0.0]), q.pixel))


__all__ = ["Positioner"]
