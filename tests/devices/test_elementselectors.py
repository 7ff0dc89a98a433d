"""Tests of the element selector family and its dummy (the shared timed selection)."""

from __future__ import annotations

import asyncio
import time

import pytest

from concert_core.devices.elementselectors import ElementSelector as BaseElementSelector
from concert_core.devices.elementselectors import SelectorDevice
from concert_core.devices.elementselectors.dummy import ElementSelector
from concert_core.errors import (
    ReadAccessError,
    SelectionError,
    StateError,
    TransitionNotAllowed,
)
from concert_core.quantities import q


async def make(**kwargs) -> ElementSelector:
    return await ElementSelector(slot_time=kwargs.pop("slot_time", 0.01 * q.s), **kwargs)


async def test_selection_per_device() -> None:
    selector = await make()
    assert isinstance(selector, BaseElementSelector) and isinstance(selector, SelectorDevice)
    assert selector["element"].values == ["empty", "filter_1", "filter_2", "screen"]
    assert selector["element"].writable and selector["element"].help
    assert await selector.get_element() == "empty"
    other = await make(elements=["a", "b"], element="b")
    assert other["element"].values == ["a", "b"]
    assert await other.get_element() == "b"
    assert selector["element"].values == ["empty", "filter_1", "filter_2", "screen"]
    with pytest.raises(SelectionError):
        await make(element="nothing")
    with pytest.raises(ReadAccessError):
        await (await BaseElementSelector(["x"])).get_element()


async def test_change_takes_time_per_slot() -> None:
    selector = await make(slot_time=0.05 * q.s)
    seen = []
    selector["element"].subscribe(lambda _, value: seen.append(value))
    began = time.monotonic()
    task = asyncio.create_task(selector.set_element("filter_2"))  # two slots
    await asyncio.sleep(0.02)
    assert await selector.get_state() == "moving"
    assert await selector.get_element() == "empty"
    with pytest.raises(TransitionNotAllowed):
        await selector.set_element("screen")
    await task
    assert 0.09 < time.monotonic() - began < 1
    assert await selector.get_element() == "filter_2"
    assert seen[-1] == "filter_2" and seen.count("filter_2") == 1
    assert await selector.get_state() == "standby"
    took = []
    for _ in range(3):  # the fastest of three: a stalled host only makes calls later
        began = time.monotonic()
        await selector.set_element("filter_2")  # already there
        took.append(time.monotonic() - began)
    assert min(took) < 0.04


async def test_refusals_leave_value_unchanged() -> None:
    selector = await make()
    for value in ("nothing", 1, None):
        with pytest.raises(SelectionError):
            await selector.set_element(value)
    assert await selector.get_element() == "empty"
    assert await selector.get_state() == "standby"


async def test_stall_fault_and_reset() -> None:
    selector = await make()
    with pytest.raises(ValueError, match="stall"):
        await selector.inject_fault("rust")
    await selector.inject_fault("stall")
    with pytest.raises(StateError, match="stalled"):
        await selector.set_element("screen")
    assert await selector.get_state() == "error"
    assert await selector.get_element() == "empty"
    with pytest.raises(TransitionNotAllowed):
        await selector.set_element("screen")
    await selector.reset()
    await selector.set_element("screen")
    assert await selector.get_element() == "screen"
    await selector.inject_fault("stall")
    await selector.clear_fault()
    await selector.set_element("empty")
    assert await selector.get_element() == "empty"


async def test_emergency_stop() -> None:
    selector = await make(slot_time=1 * q.s)
    task = asyncio.create_task(selector.set_element("screen"))
    await asyncio.sleep(0.02)
    await selector.emergency_stop()
    assert task.cancelled()
    assert await selector.get_state() == "standby"
    assert await selector.get_element() == "empty"
