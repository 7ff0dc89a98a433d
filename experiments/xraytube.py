"""Imaging experiments with an X-ray tube: the beam is switched by the ``xray_tube``.

Every class of :mod:`experiments.imaging` has a variant here taking ``xray_tube`` right
after ``camera``. The stepped tomography covers 360° by default (a cone beam needs the full
rotation).
"""

from __future__ import annotations

import inspect
from typing import Any

from concert_core.devices.xraytubes.base import XRayTube
from concert_core.quantities import q
from experiments import imaging
from experiments.sources import variant


class XRayTubeMixin:
    """Exposure by switching the tube on (flats, projections) and off (darks)."""

    _xray_tube: XRayTube

    async def start_sample_exposure(self) -> None:
        """Switch the tube on (if it is not on)."""
        if await self._xray_tube.get_state() != "on":
            await self._xray_tube.on()

    async def stop_sample_exposure(self) -> None:
        """Switch the tube off (if it is not off)."""
        if await self._xray_tube.get_state() != "off":
            await self._xray_tube.off()


_TUBE = inspect.Parameter("xray_tube", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=XRayTube)


def _tube(base: type, doc: str, **defaults: Any) -> Any:
    return variant(base, XRayTubeMixin, _TUBE, defaults=defaults, doc=doc)


Radiography = _tube(imaging.Radiography, "Radiography with an X-ray tube.")
SteppedTomography = _tube(imaging.SteppedTomography, "Stepped tomography with an X-ray tube.",
                          angular_range=360 * q.deg)
ContinuousTomography = _tube(imaging.ContinuousTomography,
                             "Continuous tomography with an X-ray tube.")
SteppedSpiralTomography = _tube(imaging.SteppedSpiralTomography,
                                "Stepped spiral tomography with an X-ray tube.")
ContinuousSpiralTomography = _tube(imaging.ContinuousSpiralTomography,
                                   "Continuous spiral tomography with an X-ray tube.")
GratingInterferometryStepping = _tube(imaging.GratingInterferometryStepping,
                                      "Grating interferometry stepping with an X-ray tube.")

__all__ = [
    "ContinuousSpiralTomography",
    "ContinuousTomography",
    "GratingInterferometryStepping",
    "Radiography",
    "SteppedSpiralTomography",
    "SteppedTomography",
    "XRayTubeMixin",
]
