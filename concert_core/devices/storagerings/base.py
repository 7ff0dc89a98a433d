"""Storage rings: read-only information about the electron beam.

``current`` (mA), ``energy`` (GeV) and ``lifetime`` (h) can only be read. Implementations
provide ``_get_current``, ``_get_energy`` and ``_get_lifetime`` and announce changes of the
current themselves (``self['current'].notify(value)``) so observers need not poll.
"""

from __future__ import annotations

from typing import Any

from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError
from concert_core.parameter import Quantity
from concert_core.quantities import q


class StorageRing(Device):
    """Read-only access to storage ring information."""

    current = Quantity(q.mA, help="Ring current")
    energy = Quantity(q.GeV, help="Ring (electron) energy")
    lifetime = Quantity(q.h, help="Ring lifetime (1/e decay time of the current)")

    async def _get_current(self) -> Any:
        raise AccessorNotImplementedError("current")

    async def _get_energy(self) -> Any:
        raise AccessorNotImplementedError("energy")

    async def _get_lifetime(self) -> Any:
        raise AccessorNotImplementedError("lifetime")


__all__ = ["StorageRing"]
