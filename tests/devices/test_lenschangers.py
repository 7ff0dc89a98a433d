"""Tests of the lens changer family and its dummy."""

from __future__ import annotations

import asyncio
import time

import pytest

from concert_core.devices.lenschangers import LensChanger as BaseLensChanger
from concert_core.devices.lenschangers.dummy import LensChanger
from concert_core.errors import SelectionError, StateError, TransitionNotAllowed
from concert_core.quantities import q


async def test_objective_selection_timing_and_refusals() -> None:
    changer = await LensChanger(objective="5x", slot_time=0.03 * q.s)
    assert isinstance(changer, BaseLensChanger)
    assert changer["objective"].values == ["2x", "5x", "10x", "20x"]
    assert await changer.get_objective() == "5x"
    began = time.monotonic()
    task = asyncio.create_task(changer.set_objective("20x"))
    await asyncio.sleep(0.01)
    assert await changer.get_state() == "moving"
    with pytest.raises(TransitionNotAllowed):
        await changer.set_objective("2x")
    await task
    assert 0.05 < time.monotonic() - began < 1
    assert await changer.get_objective() == "20x"
    with pytest.raises(SelectionError):
        await changer.set_objective("50x")
    assert await changer.get_objective() == "20x"


async def test_fault_and_emergency_stop() -> None:
    changer = await LensChanger(slot_time=0.01 * q.s)
    await changer.inject_fault("stall")
    with pytest.raises(StateError):
        await changer.set_objective("10x")
    assert await changer.get_state() == "error" and await changer.get_objective() == "2x"
    await changer.reset()
    changer._slot_time = 1.0
    task = asyncio.create_task(changer.set_objective("10x"))
    await asyncio.sleep(0.02)
    await changer.emergency_stop()
    assert task.cancelled() and await changer.get_objective() == "2x"
    assert await changer.get_state() == "standby"
