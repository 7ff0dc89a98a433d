"""Tests of the scales family and its dummies."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from concert_core.devices.scales import Scales as BaseScales
from concert_core.devices.scales import TarableScales as BaseTarableScales
from concert_core.devices.scales.dummy import Scales, TarableScales
from concert_core.errors import LimitError, TransitionNotAllowed, WriteAccessError
from concert_core.quantities import q


async def test_weight_read_only() -> None:
    scales = await Scales(load=0.5 * q.kg)
    assert isinstance(scales, BaseScales) and not isinstance(scales, BaseTarableScales)
    weight = await scales.get_weight()
    assert weight.units == q.g and weight.magnitude == pytest.approx(500)
    with pytest.raises(WriteAccessError):
        await scales.set_weight(1 * q.g)
    scales.place(3 * q.kg)
    with pytest.raises(LimitError, match="overload"):
        await scales.get_weight()
    assert not hasattr(scales, "tare")


async def test_noise() -> None:
    scales = await Scales(load=10 * q.g, noise=0.1 * q.g, seed=3)
    values = np.array([(await scales.get_weight()).magnitude for _ in range(200)])
    assert 9.95 < values.mean() < 10.05 and 0.05 < values.std() < 0.15


async def test_tare_takes_time_and_zeroes() -> None:
    scales = await TarableScales(load=100 * q.g, tare_time=0.1 * q.s)
    assert isinstance(scales, BaseTarableScales)
    seen = []
    scales["weight"].subscribe(lambda _, value: seen.append(value))
    began = time.monotonic()
    task = scales.tare()
    await asyncio.sleep(0.02)
    assert await scales.get_state() == "busy"
    with pytest.raises(TransitionNotAllowed):
        await scales.tare()
    await task
    assert 0.08 < time.monotonic() - began < 1
    assert await scales.get_state() == "standby"
    assert await scales.get_weight() == 0 * q.g
    assert seen[-1] == 0 * q.g
    scales.place(150 * q.g)
    assert await scales.get_weight() == 50 * q.g


async def test_faults() -> None:
    scales = await TarableScales(tare_time=0.01 * q.s)
    with pytest.raises(ValueError, match="drift"):
        await scales.inject_fault("broken")
    await scales.inject_fault("drift")
    await asyncio.sleep(0.1)
    assert 100.05 * q.g < await scales.get_weight() < 101 * q.g
    await scales.inject_fault("disconnected")
    with pytest.raises(ConnectionError):
        await scales.get_weight()
    with pytest.raises(ConnectionError):
        await scales.tare()  # a failed tare ends in 'error'
    assert await scales.get_state() == "error"
    with pytest.raises(TransitionNotAllowed):
        await scales.tare()
    await scales.clear_fault()
    await scales.reset()
    assert await scales.get_state() == "standby"
    assert await scales.get_weight() == 100 * q.g


async def test_emergency_stop_cancels_tare() -> None:
    scales = await TarableScales(tare_time=2 * q.s)
    task = scales.tare()
    await asyncio.sleep(0.02)
    await scales.emergency_stop()
    assert task.cancelled()
    assert await scales.get_state() == "standby"
    assert await scales.get_weight() == 100 * q.g
