"""A simulated detector: a dummy camera behind optics of fixed magnification.

Fault injection forwards to the camera (kinds ``"grab"`` and ``"start"``, see
:mod:`concert_core.devices.cameras.dummy`); emergency_stop stops the camera.
"""

from __future__ import annotations

import pint

from concert_core.devices.cameras import dummy as dummy_cameras
from concert_core.devices.cameras.base import Camera
from concert_core.devices.detectors import base
from concert_core.quantities import q


class Detector(base.Detector):
    """A detector with ``magnification`` and a ``camera`` (a new dummy camera by default)."""

    async def __ainit__(self, magnification: float = 1.0, camera: Camera | None = None) -> None:
        await super().__ainit__()
        magnification = float(magnification)
        if not magnification > 0:
            raise ValueError(f"magnification must be positive, got {magnification}")
        self._magnification = magnification
        self._camera = camera if camera is not None else await dummy_cameras.Camera()

    async def _get_magnification(self) -> pint.Quantity:
        return q.Quantity(self._magnification, q.dimensionless)

    async def inject_fault(self, kind: str) -> None:
        """Make the camera fail: ``"grab"`` (next grab) or ``"start"`` (next start_recording)."""
        await self._camera.inject_fault(kind)

    async def clear_fault(self) -> None:
        """Drop the camera's pending faults and bring it back from 'error' to 'standby'."""
        await self._camera.clear_fault()

    async def _emergency_stop(self) -> None:
        await self._camera.emergency_stop()


__all__ = ["Detector"]
