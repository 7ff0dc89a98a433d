"""Attenuator boxes put one of several attenuators (filter materials) into the beam.

``attenuator`` is a per-device Selection (see
:class:`~concert_core.devices.elementselectors.base.SelectorDevice`): writable in
``standby``; changing takes time (state ``moving``). Implementations provide
``_get_attenuator``/``_set_attenuator`` and ``_reset``.
"""

from __future__ import annotations

from typing import Any

from concert_core.devices.elementselectors.base import SelectorDevice
from concert_core.errors import AccessorNotImplementedError


class AttenuatorBox(SelectorDevice):
    """Attenuator box base class."""

    selection_name = "attenuator"
    selection_help = "Attenuator (filter) in the beam"

    async def _get_attenuator(self) -> Any:
        raise AccessorNotImplementedError("attenuator")

    async def _set_attenuator(self, attenuator: Any) -> None:
        raise AccessorNotImplementedError("attenuator")


__all__ = ["AttenuatorBox"]
