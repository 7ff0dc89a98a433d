"""Tests of the pump family and its dummy."""

from __future__ import annotations

import asyncio
import time

import pytest

from concert_core.devices.pumps import Pump as BasePump
from concert_core.devices.pumps.dummy import Pump
from concert_core.errors import SoftLimitError, StateError, TransitionNotAllowed, UnitError
from concert_core.quantities import q


async def make(**kwargs) -> Pump:
    return await Pump(spin_time=kwargs.pop("spin_time", 0.02 * q.s), **kwargs)


async def test_flow_rate_units_and_limits() -> None:
    pump = await make()
    assert isinstance(pump, BasePump)
    assert await pump.get_flow_rate() == 10 * q.ml / q.min
    await pump.set_flow_rate(1 * q.ml / q.s)
    assert (await pump.get_flow_rate()).magnitude == pytest.approx(60)
    for value, error in [(1 * q.mm, UnitError), (-1 * q.ml / q.min, SoftLimitError),
                         (101 * q.ml / q.min, SoftLimitError)]:
        with pytest.raises(error):
            await pump.set_flow_rate(value)
    assert (await pump.get_flow_rate()).magnitude == pytest.approx(60)


async def test_start_stop_timing_and_refusals() -> None:
    pump = await make(spin_time=0.1 * q.s)
    with pytest.raises(TransitionNotAllowed):
        await pump.stop()
    assert await pump.get_state() == "standby"
    began = time.monotonic()
    task = pump.start()
    await asyncio.sleep(0.03)
    assert await pump.get_state() == "busy"
    with pytest.raises(TransitionNotAllowed):
        await pump.stop()
    await task
    assert 0.08 < time.monotonic() - began < 1
    assert await pump.get_state() == "pumping"
    with pytest.raises(TransitionNotAllowed):
        await pump.start()
    await pump.set_flow_rate(20 * q.ml / q.min)  # allowed while pumping
    await pump.stop()
    assert await pump.get_state() == "standby"


async def test_clog_fault() -> None:
    pump = await make()
    with pytest.raises(ValueError, match="clog"):
        await pump.inject_fault("leak")
    await pump.inject_fault("clog")
    with pytest.raises(StateError, match="clogged"):
        await pump.start()
    assert await pump.get_state() == "error"
    with pytest.raises(TransitionNotAllowed):
        await pump.set_flow_rate(5 * q.ml / q.min)
    assert await pump.get_flow_rate() == 10 * q.ml / q.min
    await pump.reset()
    await pump.start()
    await pump.inject_fault("clog")
    assert await pump.get_state() == "error"
    assert "clogged" in pump["state"].message
    await pump.reset()
    await pump.clear_fault()
    assert await pump.get_state() == "standby"


async def test_emergency_stop() -> None:
    pump = await make(spin_time=2 * q.s)
    task = pump.start()
    await asyncio.sleep(0.02)
    await pump.emergency_stop()
    assert task.cancelled()
    assert await pump.get_state() == "standby"
    pump = await make()
    await pump.start()
    await pump.emergency_stop()
    assert await pump.get_state() == "standby"
