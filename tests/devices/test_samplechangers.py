"""Tests of the sample changer family and its dummy."""

from __future__ import annotations

import asyncio
import time

import pytest

from concert_core.devices.samplechangers import SampleChanger as BaseSampleChanger
from concert_core.devices.samplechangers.dummy import SampleChanger
from concert_core.errors import SelectionError, StateError, TransitionNotAllowed
from concert_core.quantities import q


async def test_sample_exchange_timing_and_refusals() -> None:
    changer = await SampleChanger(exchange_time=0.05 * q.s)
    assert isinstance(changer, BaseSampleChanger)
    assert await changer.get_sample() == "none"
    for target in ("sample_3", "sample_2"):  # the same time whatever the distance
        began = time.monotonic()
        task = asyncio.create_task(changer.set_sample(target))
        await asyncio.sleep(0.01)
        assert await changer.get_state() == "moving"
        with pytest.raises(TransitionNotAllowed):
            await changer.set_sample("none")
        await task
        assert 0.04 < time.monotonic() - began < 0.5
        assert await changer.get_sample() == target
    with pytest.raises(SelectionError):
        await changer.set_sample("sample_9")
    assert await changer.get_sample() == "sample_2"


async def test_fault_and_emergency_stop() -> None:
    changer = await SampleChanger(samples=["A1", "A2"], exchange_time=0.02 * q.s)
    assert await changer.get_sample() == "A1"
    await changer.inject_fault("stall")
    with pytest.raises(StateError):
        await changer.set_sample("A2")
    assert await changer.get_state() == "error" and await changer.get_sample() == "A1"
    await changer.reset()
    changer._slot_time = 1.0
    task = asyncio.create_task(changer.set_sample("A2"))
    await asyncio.sleep(0.02)
    await changer.emergency_stop()
    assert task.cancelled() and await changer.get_sample() == "A1"
    assert await changer.get_state() == "standby"
