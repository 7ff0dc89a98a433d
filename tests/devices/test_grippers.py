"""Tests of the gripper family and its dummy."""

from __future__ import annotations

import asyncio
import time

import pytest

from concert_core.devices.grippers import Gripper as BaseGripper
from concert_core.devices.grippers.dummy import Gripper
from concert_core.errors import StateError, TransitionNotAllowed
from concert_core.quantities import q


async def make(**kwargs) -> Gripper:
    return await Gripper(motion_time=kwargs.pop("motion_time", 0.02 * q.s), **kwargs)


async def test_grip_release_timing_and_refusals() -> None:
    gripper = await make(motion_time=0.1 * q.s)
    assert isinstance(gripper, BaseGripper)
    assert await gripper.get_state() == "released"
    with pytest.raises(TransitionNotAllowed):
        await gripper.release()
    assert await gripper.get_state() == "released"
    began = time.monotonic()
    task = gripper.grip()
    await asyncio.sleep(0.03)
    assert await gripper.get_state() == "moving"
    with pytest.raises(TransitionNotAllowed):
        await gripper.release()
    await task
    assert 0.08 < time.monotonic() - began < 1
    assert await gripper.get_state() == "gripped"
    with pytest.raises(TransitionNotAllowed):
        await gripper.grip()
    assert await gripper.get_state() == "gripped"
    await gripper.release()
    assert await gripper.get_state() == "released"


async def test_faults_and_reset() -> None:
    gripper = await make()
    with pytest.raises(ValueError, match="slip"):
        await gripper.inject_fault("rust")
    await gripper.inject_fault("slip")
    with pytest.raises(StateError, match="slipped"):
        await gripper.grip()
    assert await gripper.get_state() == "error"
    with pytest.raises(TransitionNotAllowed):
        await gripper.grip()
    await gripper.reset()
    await gripper.grip()
    await gripper.inject_fault("jam")
    with pytest.raises(StateError, match="jammed"):
        await gripper.release()
    assert await gripper.get_state() == "error"
    await gripper.clear_fault()
    await gripper.reset()
    assert await gripper.get_state() == "released"


async def test_emergency_stop_keeps_previous_state() -> None:
    gripper = await make(motion_time=2 * q.s)
    task = gripper.grip()
    await asyncio.sleep(0.02)
    await gripper.emergency_stop()
    assert task.cancelled()
    assert await gripper.get_state() == "released"
    gripper = await make()
    await gripper.grip()
    gripper._motion_time = 2.0
    task = gripper.release()
    await asyncio.sleep(0.02)
    await gripper.emergency_stop()
    assert await gripper.get_state() == "gripped"
    await gripper.emergency_stop()  # nothing running: no change
    assert await gripper.get_state() == "gripped"
