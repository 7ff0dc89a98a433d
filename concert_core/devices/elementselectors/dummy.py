"""A simulated element selector; :class:`TimedSelection` is shared with the dummy attenuator
box, lens changer and sample changer."""

from __future__ import annotations

import asyncio
from typing import Any

import pint

from concert_core.devices.elementselectors.base import ElementSelector as BaseElementSelector
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import StateError
from concert_core.quantities import q
from concert_core.state import transition

#: Fault kinds of the dummy selection devices.
FAULTS = {
    "stall": "the next change stops halfway: state 'error' (StateError), selection unchanged",
}


class TimedSelection(SimulatedDevice):
    """Simulation of a slide or wheel: moving by ``n`` slots takes ``n * slot_time``.

    Mixed into dummies of :class:`~concert_core.devices.elementselectors.base.SelectorDevice`;
    the selection reads the old value until the change has arrived. An emergency stop
    halts a change (the old value stays selected, state ``standby``).
    """

    FAULTS = FAULTS

    async def _setup_selection(self, initial: Any, slot_time: pint.Quantity | None) -> None:
        choices = self[self.selection_name].values
        if initial is None:
            initial = choices[0]
        self._selected = await self[self.selection_name].validate(initial)
        self._slot_time = float((0.05 * q.s if slot_time is None else slot_time)
                                .to(q.s).magnitude)

    async def _get_selected(self) -> Any:
        return self._selected

    def _change_time(self, old: Any, new: Any) -> float:
        """Seconds a change from ``old`` to ``new`` takes (``slot_time`` per slot)."""
        choices = self[self.selection_name].values
        return abs(choices.index(new) - choices.index(old)) * self._slot_time

    @transition(immediate="moving", target="standby")
    async def _select(self, value: Any) -> None:
        if value == self._selected:
            return
        duration = self._change_time(self._selected, value)
        with self.operation():
            if self.take_fault("stall"):
                await asyncio.sleep(duration / 2)
                raise StateError("error", f"stalled between {self._selected!r} and {value!r}")
            await asyncio.sleep(duration)
        self._selected = value

    @transition(target="standby")
    async def _reset(self) -> None:
        pass

    async def _emergency_stop(self) -> None:
        await self.cancel_operation()


class ElementSelector(TimedSelection, BaseElementSelector):
    """A dummy element selector (a filter slide)."""

    async def __ainit__(self, elements: list[str] | None = None, element: str | None = None,
                        slot_time: pint.Quantity | None = None) -> None:
        """Defaults: elements ``empty, filter_1, filter_2, screen``, the first selected,
        0.05 s per slot."""
        await super().__ainit__(
            ["empty", "filter_1", "filter_2", "screen"] if elements is None else elements)
        await self._setup_selection(element, slot_time)

    _get_element = TimedSelection._get_selected
    _set_element = TimedSelection._select


__all__ = ["FAULTS", "ElementSelector", "TimedSelection"]
