"""Photodiodes measure light intensity as an output voltage.

``intensity`` (V) is read-only. Implementations provide ``_get_intensity``.
"""

from __future__ import annotations

from typing import Any

from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError
from concert_core.parameter import Quantity
from concert_core.quantities import q


class PhotoDiode(Device):
    """A photodiode with a voltage output signal."""

    intensity = Quantity(q.V, help="Measured light intensity (output voltage of the diode)")

    async def _get_intensity(self) -> Any:
        raise AccessorNotImplementedError("intensity")


__all__ = ["PhotoDiode"]
