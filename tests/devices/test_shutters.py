"""Tests of the shutter family and its dummy."""

from __future__ import annotations

import asyncio
import time

import pytest

from concert_core.devices.shutters import Shutter as BaseShutter
from concert_core.devices.shutters.dummy import Shutter
from concert_core.errors import StateError, TransitionNotAllowed
from concert_core.quantities import q


async def make(**kwargs) -> Shutter:
    return await Shutter(motion_time=kwargs.pop("motion_time", 0.02 * q.s), **kwargs)


async def test_is_a_shutter_and_starts_closed() -> None:
    shutter = await make()
    assert isinstance(shutter, BaseShutter)
    assert await shutter.get_state() == "closed"
    assert await (await make(state="open")).get_state() == "open"
    with pytest.raises(ValueError):
        await Shutter(state="ajar")


async def test_open_close_take_time_and_pass_through_moving() -> None:
    shutter = await make(motion_time=0.05 * q.s)
    states = []
    shutter["state"].subscribe(lambda _, value: states.append(value))
    began = time.monotonic()
    task = shutter.open()
    assert isinstance(task, asyncio.Task)
    await asyncio.sleep(0.01)
    assert await shutter.get_state() == "moving"
    await task
    assert 0.04 < time.monotonic() - began < 1.0
    assert await shutter.get_state() == "open"
    await shutter.close()
    assert await shutter.get_state() == "closed"
    assert states == ["moving", "open", "moving", "closed"]


async def test_refusals_leave_state_unchanged() -> None:
    shutter = await make()
    with pytest.raises(TransitionNotAllowed):
        await shutter.close()
    assert await shutter.get_state() == "closed"
    await shutter.open()
    with pytest.raises(TransitionNotAllowed):
        await shutter.open()
    assert await shutter.get_state() == "open"
    task = shutter.close()
    await asyncio.sleep(0.005)
    with pytest.raises(TransitionNotAllowed):
        await shutter.open()  # while moving
    await task
    assert await shutter.get_state() == "closed"


async def test_jam_fault_and_reset() -> None:
    shutter = await make()
    with pytest.raises(ValueError, match="jam"):
        await shutter.inject_fault("melt")
    await shutter.inject_fault("jam")
    with pytest.raises(StateError):
        await shutter.open()
    assert await shutter.get_state() == "error"
    assert "jammed" in shutter["state"].message
    with pytest.raises(TransitionNotAllowed):
        await shutter.open()
    await shutter.reset()
    assert await shutter.get_state() == "closed"
    await shutter.open()  # the jam happened once
    assert await shutter.get_state() == "open"


async def test_slow_fault() -> None:
    shutter = await make(motion_time=0.01 * q.s)
    await shutter.inject_fault("slow")
    began = time.monotonic()
    await shutter.open()
    assert time.monotonic() - began >= 0.09
    await shutter.clear_fault()
    took = []
    for _ in range(3):  # the fastest of three: a stalled host only makes motions later
        began = time.monotonic()
        await shutter.close()
        took.append(time.monotonic() - began)
        await shutter.open()
    assert min(took) < 0.09


async def test_emergency_stop_closes() -> None:
    shutter = await make(motion_time=1 * q.s)
    task = shutter.open()
    await asyncio.sleep(0.02)
    began = time.monotonic()
    await shutter.emergency_stop()
    assert time.monotonic() - began < 0.5
    assert task.cancelled()
    assert await shutter.get_state() == "closed"
    shutter = await make(state="open")
    await shutter.emergency_stop()
    assert await shutter.get_state() == "closed"
