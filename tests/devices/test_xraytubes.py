"""Tests of the x-ray tube family and its dummy."""

from __future__ import annotations

import asyncio
import time

import pytest

from concert_core.devices.xraytubes import XRayTube as BaseXRayTube
from concert_core.devices.xraytubes.dummy import XRayTube
from concert_core.errors import (
    LimitError,
    SoftLimitError,
    StateError,
    TransitionNotAllowed,
    UnitError,
    WriteAccessError,
)
from concert_core.quantities import q


async def make(**kwargs) -> XRayTube:
    return await XRayTube(ramp_time=kwargs.pop("ramp_time", 0.05 * q.s), **kwargs)


async def test_parameters_units_and_power() -> None:
    tube = await make()
    assert isinstance(tube, BaseXRayTube)
    assert await tube.get_state() == "off"
    assert await tube.get_voltage() == 0 * q.kV  # nothing while off
    assert await tube.get_target_voltage() == 40 * q.kV
    await tube.on()
    assert await tube.get_state() == "on"
    assert await tube.get_voltage() == 40 * q.kV
    assert await tube.get_current() == 1 * q.mA
    power = await tube.get_power()
    assert power.units == q.W
    assert power.magnitude == pytest.approx(40)
    assert not tube["power"].writable
    with pytest.raises(WriteAccessError):
        await tube.set_power(1 * q.W)


async def test_refusals_leave_values_unchanged() -> None:
    tube = await make()
    with pytest.raises(UnitError):
        await tube.set_voltage(10 * q.mm)
    with pytest.raises(SoftLimitError):
        await tube.set_voltage(61 * q.kV)
    with pytest.raises(SoftLimitError):
        await tube.set_current(-1 * q.mA)
    with pytest.raises(SoftLimitError):
        await tube.set_current(2.6 * q.mA)
    assert await tube.get_target_voltage() == 40 * q.kV
    assert await tube.get_target_current() == 1 * q.mA
    await tube.set_current(2 * q.mA)
    with pytest.raises(LimitError, match="maximum power"):
        await tube.set_voltage(55 * q.kV)  # 110 W
    assert await tube.get_target_voltage() == 40 * q.kV
    with pytest.raises(TransitionNotAllowed):
        await tube.off()
    assert await tube.get_state() == "off"
    await tube.on()
    with pytest.raises(TransitionNotAllowed):
        await tube.on()
    task = tube.off()
    await asyncio.sleep(0.01)
    with pytest.raises(TransitionNotAllowed):
        await tube.set_voltage(20 * q.kV)  # while ramping
    await task
    assert await tube.get_target_voltage() == 40 * q.kV
    assert await tube.get_state() == "off"


async def test_ramp_takes_time_and_announces() -> None:
    tube = await make(ramp_time=0.3 * q.s)
    seen = []
    tube["voltage"].subscribe(lambda _, value: seen.append(value.magnitude))
    began = time.monotonic()
    task = tube.on()
    await asyncio.sleep(0.1)
    assert await tube.get_state() == "moving"
    assert 0 * q.kV < await tube.get_voltage() < 40 * q.kV
    await task
    assert 0.25 < time.monotonic() - began < 2
    assert len(seen) >= 4 and seen == sorted(seen) and seen[-1] == pytest.approx(40)
    # a set-point change while on ramps too and ends on 'on'
    await tube.set_voltage(20 * q.kV)
    assert (await tube.get_voltage()).m_as(q.kV) == pytest.approx(20)
    assert await tube.get_state() == "on"


async def test_set_points_while_off_are_kept() -> None:
    tube = await make()
    await tube.set_voltage(30 * q.kV)
    assert await tube.get_voltage() == 0 * q.kV
    await tube.on()
    assert (await tube.get_voltage()).m_as(q.kV) == pytest.approx(30)


async def test_faults() -> None:
    tube = await make()
    with pytest.raises(ValueError, match="arc"):
        await tube.inject_fault("meltdown")
    await tube.inject_fault("interlock")
    with pytest.raises(StateError, match="interlock"):
        await tube.on()
    assert await tube.get_state() == "off"
    assert "interlock" in tube["state"].message
    await tube.clear_fault()
    await tube.inject_fault("arc")
    with pytest.raises(StateError, match="arc"):
        await tube.on()
    assert await tube.get_state() == "error"
    assert await tube.get_voltage() == 0 * q.kV
    with pytest.raises(TransitionNotAllowed):
        await tube.on()
    await tube.reset()
    assert await tube.get_state() == "off"
    await tube.on()
    assert await tube.get_state() == "on"


async def test_emergency_stop() -> None:
    tube = await make(ramp_time=2 * q.s)
    task = tube.on()
    await asyncio.sleep(0.05)
    await tube.emergency_stop()
    assert task.cancelled()
    assert await tube.get_state() == "off"
    assert await tube.get_voltage() == 0 * q.kV
    tube = await make()
    await tube.on()
    await tube.emergency_stop()
    assert await tube.get_state() == "off"
    assert await tube.get_power() == 0 * q.W
