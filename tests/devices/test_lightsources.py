"""Tests of the light source family and its dummy."""

from __future__ import annotations

import pytest

from concert_core.devices.lightsources import LightSource as BaseLightSource
from concert_core.devices.lightsources.dummy import LightSource
from concert_core.errors import SoftLimitError, StateError, TransitionNotAllowed, UnitError
from concert_core.quantities import q


async def test_intensity_units_and_limits() -> None:
    light = await LightSource()
    assert isinstance(light, BaseLightSource)
    assert await light.get_intensity() == 1 * q.V
    await light.set_intensity(2500 * q.mV)
    assert (await light.get_intensity()).magnitude == pytest.approx(2.5)
    assert await light["intensity"].get_limits() == (0 * q.V, 5 * q.V)
    for value, error in [(6 * q.V, SoftLimitError), (-0.1 * q.V, SoftLimitError),
                         (1 * q.A, UnitError)]:
        with pytest.raises(error):
            await light.set_intensity(value)
    assert (await light.get_intensity()).magnitude == pytest.approx(2.5)


async def test_on_off_and_refusals() -> None:
    light = await LightSource()
    assert await light.get_state() == "off"
    with pytest.raises(TransitionNotAllowed):
        await light.off()
    await light.on()
    assert await light.get_state() == "on"
    with pytest.raises(TransitionNotAllowed):
        await light.on()
    await light.set_intensity(3 * q.V)
    await light.off()
    assert await light.get_state() == "off"


async def test_lamp_failure() -> None:
    light = await LightSource()
    with pytest.raises(ValueError, match="lamp_failure"):
        await light.inject_fault("dim")
    await light.on()
    await light.inject_fault("lamp_failure")
    assert await light.get_state() == "error"
    with pytest.raises(TransitionNotAllowed):
        await light.set_intensity(2 * q.V)
    assert await light.get_intensity() == 1 * q.V
    await light.reset()
    with pytest.raises(StateError, match="burnt"):
        await light.on()
    await light.clear_fault()
    await light.reset()
    await light.on()
    assert await light.get_state() == "on"


async def test_emergency_stop_switches_off() -> None:
    light = await LightSource()
    await light.on()
    await light.emergency_stop()
    assert await light.get_state() == "off"
