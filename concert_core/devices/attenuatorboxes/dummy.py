"""A simulated attenuator box (see :class:`~concert_core.devices.elementselectors.dummy.
TimedSelection` for timing, faults and emergency stop)."""

from __future__ import annotations

import pint

from concert_core.devices.attenuatorboxes.base import AttenuatorBox as BaseAttenuatorBox
from concert_core.devices.elementselectors.dummy import FAULTS, TimedSelection


class AttenuatorBox(TimedSelection, BaseAttenuatorBox):
    """A dummy attenuator box."""

    async def __ainit__(self, attenuators: list[str] | None = None,
                        attenuator: str | None = None,
                        slot_time: pint.Quantity | None = None) -> None:
        """Defaults: ``none, Al_0.5mm, Al_1mm, Cu_0.1mm, Cu_0.5mm``, the first selected,
        0.05 s per slot."""
        await super().__ainit__(["none", "Al_0.5mm", "Al_1mm", "Cu_0.1mm", "Cu_0.5mm"]
                                if attenuators is None else attenuators)
        await self._setup_selection(attenuator, slot_time)

    _get_attenuator = TimedSelection._get_selected
    _set_attenuator = TimedSelection._select


__all__ = ["FAULTS", "AttenuatorBox"]
