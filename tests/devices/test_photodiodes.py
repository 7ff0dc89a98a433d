"""Tests of the photodiode family and its dummy."""

from __future__ import annotations

import numpy as np
import pytest

from concert_core.devices.photodiodes import PhotoDiode as BasePhotoDiode
from concert_core.devices.photodiodes.dummy import PhotoDiode
from concert_core.errors import ReadAccessError, WriteAccessError
from concert_core.quantities import q


async def test_constant_intensity_read_only() -> None:
    diode = await PhotoDiode(intensity=2500 * q.mV)
    assert isinstance(diode, BasePhotoDiode)
    value = await diode.get_intensity()
    assert value.units == q.V and value.magnitude == pytest.approx(2.5)
    with pytest.raises(WriteAccessError):
        await diode.set_intensity(1 * q.V)
    assert (await diode.get_intensity()).magnitude == pytest.approx(2.5)
    with pytest.raises(ReadAccessError):
        await (await BasePhotoDiode()).get_intensity()
    with pytest.raises(ValueError):
        await PhotoDiode(noise=-1)


async def test_noise_and_clipping() -> None:
    diode = await PhotoDiode(intensity=1 * q.V, noise=0.1, seed=1)
    values = np.array([(await diode.get_intensity()).magnitude for _ in range(200)])
    assert 0.95 < values.mean() < 1.05
    assert 0.05 < values.std() < 0.15
    diode = await PhotoDiode(intensity=20 * q.V)
    assert await diode.get_intensity() == 10 * q.V


async def test_follow_a_function() -> None:
    diode = await PhotoDiode()
    state = {"x": 1.0}
    diode.follow(lambda: state["x"] * q.V)
    seen = []
    diode["intensity"].subscribe(lambda _, value: seen.append(value))
    assert await diode.get_intensity() == 1 * q.V
    state["x"] = 3.0
    assert await diode.get_intensity() == 3 * q.V
    assert seen == [1 * q.V, 3 * q.V]  # reads announce changes

    async def source() -> object:
        return 4 * q.V

    diode.follow(source)
    assert await diode.get_intensity() == 4 * q.V
    diode.follow(None)
    assert await diode.get_intensity() == 1 * q.V


async def test_faults() -> None:
    diode = await PhotoDiode()
    with pytest.raises(ValueError, match="disconnected"):
        await diode.inject_fault("blind")
    await diode.inject_fault("saturated")
    assert await diode.get_intensity() == 10 * q.V
    await diode.inject_fault("disconnected")
    with pytest.raises(ConnectionError):
        await diode.get_intensity()
    await diode.clear_fault()
    assert await diode.get_intensity() == 1 * q.V
