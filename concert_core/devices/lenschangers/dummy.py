"""A simulated lens changer (see :class:`~concert_core.devices.elementselectors.dummy.
TimedSelection` for timing, faults and emergency stop)."""

from __future__ import annotations

import pint

from concert_core.devices.elementselectors.dummy import FAULTS, TimedSelection
from concert_core.devices.lenschangers.base import LensChanger as BaseLensChanger


class LensChanger(TimedSelection, BaseLensChanger):
    """A dummy lens changer."""

    async def __ainit__(self, objectives: list[str] | None = None, objective: str | None = None,
                        slot_time: pint.Quantity | None = None) -> None:
        """Defaults: ``2x, 5x, 10x, 20x``, the first selected, 0.05 s per slot."""
        await super().__ainit__(["2x", "5x", "10x", "20x"] if objectives is None else objectives)
        await self._setup_selection(objective, slot_time)

    _get_objective = TimedSelection._get_selected
    _set_objective = TimedSelection._select


__all__ = ["FAULTS", "LensChanger"]
