"""Tests of the attenuator box family and its dummy."""

from __future__ import annotations

import asyncio
import time

import pytest

from concert_core.devices.attenuatorboxes import AttenuatorBox as BaseAttenuatorBox
from concert_core.devices.attenuatorboxes.dummy import AttenuatorBox
from concert_core.errors import SelectionError, StateError, TransitionNotAllowed
from concert_core.quantities import q


async def test_attenuator_selection_timing_and_refusals() -> None:
    box = await AttenuatorBox(slot_time=0.03 * q.s)
    assert isinstance(box, BaseAttenuatorBox)
    assert "element" not in box and "attenuator" in box
    assert await box.get_attenuator() == "none"
    began = time.monotonic()
    task = asyncio.create_task(box.set_attenuator("Al_1mm"))
    await asyncio.sleep(0.01)
    assert await box.get_state() == "moving"
    with pytest.raises(TransitionNotAllowed):
        await box.set_attenuator("none")
    await task
    assert 0.05 < time.monotonic() - began < 1
    assert await box.get_attenuator() == "Al_1mm"
    with pytest.raises(SelectionError):
        await box.set_attenuator("lead")
    assert await box.get_attenuator() == "Al_1mm"


async def test_fault_and_emergency_stop() -> None:
    box = await AttenuatorBox(attenuators=["a", "b", "c"], attenuator="c", slot_time=0.01 * q.s)
    await box.inject_fault("stall")
    with pytest.raises(StateError):
        await box.set_attenuator("a")
    assert await box.get_state() == "error" and await box.get_attenuator() == "c"
    await box.reset()
    box._slot_time = 1.0
    task = asyncio.create_task(box.set_attenuator("a"))
    await asyncio.sleep(0.02)
    await box.emergency_stop()
    assert task.cancelled() and await box.get_attenuator() == "c"
    assert await box.get_state() == "standby"
