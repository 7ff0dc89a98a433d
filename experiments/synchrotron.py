"""Imaging experiments at a synchrotron: the beam is switched by a ``shutter``.

Every class of :mod:`experiments.imaging` has a variant here taking ``shutter`` right after
``camera`` and, optionally, a ``storage_ring`` (last argument) whose current is written into
every frame's metadata (``ring_current`` in mA). The current is read again when the last
reading is older than ``RING_CURRENT_MAX_AGE`` (0.1 s; 0 reads it for every frame): a
ring's current changes over hours, and a read per frame would be a network round trip per
frame with a remote ring.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from concert_core.devices.shutters.base import Shutter
from concert_core.devices.storagerings.base import StorageRing
from concert_core.errors import TransitionNotAllowed
from concert_core.quantities import q
from experiments import imaging
from experiments.sources import variant

LOG = logging.getLogger(__name__)


async def _move_shutter(shutter: Shutter, target: str) -> None:
    """Open or close ``shutter`` (``target`` ``open`` or ``closed``); a shutter there
    already refuses the move (its state machine), which is fine. Asking first would cost a
    round trip to a remote shutter on every move; the refusal costs one when there is
    nothing to do."""
    try:
        await (shutter.open() if target == "open" else shutter.close())
    except TransitionNotAllowed as refusal:
        if await shutter.get_state() != target:
            raise
        LOG.debug("shutter %s already %s, its refusal ignored: %s", shutter, target, refusal)


class SynchrotronMixin:
    """Exposure through a shutter: open for flats and projections, closed for darks."""

    _shutter: Shutter
    _storage_ring: StorageRing | None
    #: Seconds a ring current reading stays valid for the frames' metadata.
    RING_CURRENT_MAX_AGE = 0.1
    _ring_reading: tuple[float, float] | None = None  # (loop time, mA)

    async def start_sample_exposure(self) -> None:
        """Open the shutter (if it is not open)."""
        await _move_shutter(self._shutter, "open")

    async def stop_sample_exposure(self) -> None:
        """Close the shutter (if it is not closed)."""
        await _move_shutter(self._shutter, "closed")

    async def _frame_metadata(self) -> dict[str, Any]:
        if self._storage_ring is None:
            return {}
        now = asyncio.get_running_loop().time()
        reading = self._ring_reading
        if reading is None or now - reading[0] >= self.RING_CURRENT_MAX_AGE:
            current = await self._storage_ring.get_current()
            reading = self._ring_reading = (now, float(current.to(q.mA).magnitude))
        return {"ring_current": reading[1]}


_SHUTTER = inspect.Parameter("shutter", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                             annotation=Shutter)
_RING = (inspect.Parameter("storage_ring", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           default=None, annotation="StorageRing | None"),)


def _synchrotron(base: type, doc: str) -> Any:
    return variant(base, SynchrotronMixin, _SHUTTER, _RING, doc=doc)


Radiography = _synchrotron(imaging.Radiography, "Radiography with a shutter.")
SteppedTomography = _synchrotron(imaging.SteppedTomography, "Stepped tomography with a shutter.")
ContinuousTomography = _synchrotron(imaging.ContinuousTomography,
                                    "Continuous tomography with a shutter.")
SteppedSpiralTomography = _synchrotron(imaging.SteppedSpiralTomography,
                                       "Stepped spiral tomography with a shutter.")
ContinuousSpiralTomography = _synchrotron(imaging.ContinuousSpiralTomography,
                                          "Continuous spiral tomography with a shutter.")
GratingInterferometryStepping = _synchrotron(imaging.GratingInterferometryStepping,
                                             "Grating interferometry stepping with a shutter.")

__all__ = [
    "ContinuousSpiralTomography",
    "ContinuousTomography",
    "GratingInterferometryStepping",
    "Radiography",
    "SteppedSpiralTomography",
    "SteppedTomography",
    "SynchrotronMixin",
]
