"""A simulated sample changer (see :class:`~concert_core.devices.elementselectors.dummy.
TimedSelection` for faults and emergency stop). Every exchange takes ``exchange_time``."""

from __future__ import annotations

from typing import Any

import pint

from concert_core.devices.elementselectors.dummy import FAULTS, TimedSelection
from concert_core.devices.samplechangers.base import SampleChanger as BaseSampleChanger


class SampleChanger(TimedSelection, BaseSampleChanger):
    """A dummy sample changer: any exchange takes the same time (a robot, not a wheel)."""

    async def __ainit__(self, samples: list[str] | None = None, sample: str | None = None,
                        exchange_time: pint.Quantity | None = None) -> None:
        """Defaults: ``none, sample_1, sample_2, sample_3`` with ``none`` (empty holder)
        loaded, 0.2 s per exchange."""
        await super().__ainit__(["none", "sample_1", "sample_2", "sample_3"]
                                if samples is None else samples)
        await self._setup_selection(sample, exchange_time)

    _get_sample = TimedSelection._get_selected
    _set_sample = TimedSelection._select

    def _change_time(self, old: Any, new: Any) -> float:
        return self._slot_time


__all__ = ["FAULTS", "SampleChanger"]
