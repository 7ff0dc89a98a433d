"""Positioners: axes, vector motion, combined state, pixel moves, refusals."""

from __future__ import annotations

import asyncio
import gc
import math
import time
import weakref

import numpy as np
import pint
import pytest

from concert_core.arguments import argument_units
from concert_core.devices.base import Device
from concert_core.devices.motors.dummy import ContinuousRotationMotor, LinearMotor, RotationMotor
from concert_core.devices.positioners import dummy, imaging
from concert_core.devices.positioners.base import Axis, Positioner
from concert_core.errors import (
    HardLimitError,
    SoftLimitError,
    TransitionNotAllowed,
    UnitError,
)
from concert_core.parameter import Quantity
from concert_core.quantities import q


def mm(*values: float) -> pint.Quantity:
    return q.Quantity(np.array(values, dtype=float), q.mm)


def deg(*values: float) -> pint.Quantity:
    return q.Quantity(np.array(values, dtype=float), q.deg)


def assert_vector(value: pint.Quantity, expected: pint.Quantity) -> None:
    assert value.units == expected.units
    np.testing.assert_allclose(value.magnitude, expected.magnitude, equal_nan=True)


class Detector(Device):
    """Stand-in for a detector: only the effective pixel size."""

    pixel_width = Quantity(q.um, help="effective pixel width")
    pixel_height = Quantity(q.um, help="effective pixel height")

    async def __ainit__(self, width: pint.Quantity, height: pint.Quantity) -> None:
        await super().__ainit__()
        self._width, self._height = width, height

    async def _get_pixel_width(self) -> pint.Quantity:
        return self._width

    async def _get_pixel_height(self) -> pint.Quantity:
        return self._height


async def xy_positioner(**motor_kwargs: object) -> tuple[Positioner, LinearMotor, LinearMotor]:
    x = await LinearMotor(**motor_kwargs)
    y = await LinearMotor(**motor_kwargs)
    positioner = await Positioner([await Axis("x", x), await Axis("y", y, direction=-1)])
    return positioner, x, y


# -- construction ----------------------------------------------------------------------
async def test_axis_validates() -> None:
    motor = await LinearMotor()
    with pytest.raises(ValueError):
        await Axis("w", motor)
    with pytest.raises(ValueError):
        await Axis("x", motor, direction=2)
    axis = await Axis("z", motor, direction=-1, position=mm(0, 0, 1))
    await axis.set_position(2 * q.mm)
    assert await motor.get_position() == -2 * q.mm
    assert await axis.get_position() == 2 * q.mm
    assert axis.kind == "translation"
    assert (await Axis("x", await RotationMotor())).kind == "rotation"


async def test_duplicate_axes_refused() -> None:
    axes = [await Axis("x", await LinearMotor()), await Axis("x", await LinearMotor())]
    with pytest.raises(ValueError):
        await Positioner(axes)


async def test_dummy_defaults() -> None:
    positioner = await dummy.Positioner(position=mm(1, 2, 3))
    assert positioner["position"].unit == q.mm and positioner["position"].help
    assert positioner["orientation"].unit == q.deg and positioner["orientation"].help
    assert_vector(await positioner.get_position(), mm(0, 0, 0))
    assert_vector(await positioner.get_orientation(), deg(0, 0, 0))
    assert await positioner.get_state() == "standby"
    assert_vector(positioner.global_position, mm(1, 2, 3))
    assert sorted(positioner.translators) == sorted(positioner.rotators) == ["x", "y", "z"]


# -- motion ----------------------------------------------------------------------------
async def test_move_and_directions() -> None:
    positioner = await dummy.Positioner()
    await positioner.move(mm(1, 2, 3))
    assert_vector(await positioner.get_position(), mm(1, 2, 3))
    await positioner.right(1 * q.mm)
    await positioner.up(500 * q.um)
    await positioner.forward(1 * q.mm)
    assert_vector(await positioner.get_position(), mm(2, 2.5, 4))
    await positioner.left(2 * q.mm)
    await positioner.down(0.5 * q.mm)
    await positioner.back(4 * q.mm)
    assert_vector(await positioner.get_position(), mm(0, 2, 0))
    await positioner.move([1 * q.mm, 0 * q.mm, 1000 * q.um])  # a list of quantities works
    assert_vector(await positioner.get_position(), mm(1, 2, 1))
    await positioner.set_position(mm(np.nan, 0, np.nan))  # nan: leave that axis
    assert_vector(await positioner.get_position(), mm(1, 0, 1))


async def test_rotate() -> None:
    positioner = await dummy.Positioner()
    await positioner.rotate(deg(10, -20, 30))
    await positioner.rotate(q.Quantity(np.array([0, 0, math.pi / 6]), q.rad))
    assert_vector(await positioner.get_orientation(), deg(10, -20, 60))
    await positioner.set_orientation(deg(0, 0, 0))
    assert_vector(await positioner.get_orientation(), deg(0, 0, 0))
    assert_vector(await positioner.get_position(), mm(0, 0, 0))


async def test_axis_direction_and_missing_axes() -> None:
    positioner, x, y = await xy_positioner()
    await positioner.move(mm(1, 2, 0))
    assert await x.get_position() == 1 * q.mm
    assert await y.get_position() == -2 * q.mm
    assert_vector(await positioner.get_position(), mm(1, 2, np.nan))
    assert_vector(await positioner.get_orientation(), deg(np.nan, np.nan, np.nan))
    await positioner.move(mm(0, 0, np.nan))
    with pytest.raises(ValueError, match="'z'"):
        await positioner.move(mm(1, 1, 1))
    with pytest.raises(ValueError, match="'z'"):
        await positioner.forward(1 * q.mm)
    with pytest.raises(ValueError):
        await positioner.rotate(deg(1, 0, 0))
    with pytest.raises(ValueError):
        await positioner.set_position(mm(0, 0, 5))
    assert_vector(await positioner.get_position(), mm(1, 2, np.nan))


async def test_axes_move_together_in_time() -> None:
    positioner, _x, _y = await xy_positioner(speed=20 * q.mm / q.s)
    began = time.monotonic()
    task = positioner.move(mm(2, 2, 0))  # 0.1 s on each axis, in parallel
    await asyncio.sleep(0.04)
    assert await positioner.get_state() == "moving"
    during = (await positioner.get_position()).magnitude
    assert 0 < during[0] < 2 and 0 < during[1] < 2
    await task
    assert 0.095 <= time.monotonic() - began < 0.18 + 0.3
    assert await positioner.get_state() == "standby"


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.move(q.Quantity(np.array([1, 0, 0]), q.deg)),
        lambda p: p.rotate(mm(1, 0, 0)),
        lambda p: p.right(1 * q.deg),
        lambda p: p.up(1.0),
        lambda p: p.set_position(deg(1, 1, 1)),
    ],
)
async def test_unit_errors_move_nothing(call) -> None:
    positioner = await dummy.Positioner()
    with pytest.raises(UnitError):
        await call(positioner)
    assert_vector(await positioner.get_position(), mm(0, 0, 0))
    assert_vector(await positioner.get_orientation(), deg(0, 0, 0))


async def test_wrong_shape() -> None:
    positioner = await dummy.Positioner()
    with pytest.raises(ValueError):
        await positioner.move(mm(1, 2))
    with pytest.raises(ValueError):
        await positioner.right(mm(1, 2, 3))


async def test_limits_refuse_before_any_axis_moves() -> None:
    positioner, x, y = await xy_positioner()
    await y["position"].set_lower(-1 * q.mm)  # y axis is inverted: +y beyond 1 mm is refused
    task = positioner.move(mm(1, 2, 0))
    await asyncio.sleep(0)
    assert task.done()
    with pytest.raises(SoftLimitError):
        await task
    assert await x.get_position() == 0 * q.mm and await y.get_position() == 0 * q.mm
    await positioner["position"].set_upper(mm(5, 5, 5))
    with pytest.raises(SoftLimitError):
        await positioner.right(6 * q.mm)
    assert await x.get_position() == 0 * q.mm


async def test_disabled_motor_refuses() -> None:
    positioner, x, y = await xy_positioner()
    await y.disable()
    assert await positioner.get_state() == "disabled"
    with pytest.raises(TransitionNotAllowed):
        await positioner.right(1 * q.mm)
    assert await x.get_position() == 0 * q.mm
    await y.enable()
    await positioner.right(1 * q.mm)
    assert await x.get_position() == 1 * q.mm


async def test_hard_limit_of_one_axis() -> None:
    x = await LinearMotor(upper_hard_limit=1 * q.mm)
    y = await LinearMotor()
    positioner = await Positioner([await Axis("x", x), await Axis("y", y)])
    with pytest.raises(HardLimitError):
        await positioner.move(mm(2, 2, 0))
    assert await positioner.get_state() == "hard-limit"
    assert_vector(await positioner.get_position(), mm(1, 2, np.nan))  # y got there
    await positioner.left(0.5 * q.mm)
    assert await positioner.get_state() == "standby"


async def test_stop_and_emergency_stop() -> None:
    positioner, _x, _y = await xy_positioner(speed=10 * q.mm / q.s)
    task = positioner.move(mm(3, 3, 0))
    await asyncio.sleep(0.05)
    await positioner.stop()
    await task
    assert await positioner.get_state() == "standby"
    stopped = (await positioner.get_position()).magnitude
    assert 0 < stopped[0] < 3 and 0 < stopped[1] < 3
    task = positioner.move(mm(3, 3, 0))
    await asyncio.sleep(0.05)
    await positioner.emergency_stop()
    await task
    assert await positioner.get_state() == "standby"
    assert 0 < (await positioner.get_position()).magnitude[0] < stopped[0] + 3


async def test_cancelling_a_move_stops_the_motors() -> None:
    positioner, _x, y = await xy_positioner(speed=10 * q.mm / q.s)
    task = positioner.up(3 * q.mm)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await y.get_state() == "standby"
    assert -3 < (await y.get_position()).magnitude < 0


async def test_notifications_while_moving() -> None:
    positioner, _x, _y = await xy_positioner(speed=10 * q.mm / q.s,
                                           update_interval=0.05 * q.s)
    positions: list[np.ndarray] = []
    states: list[str] = []
    positioner["position"].subscribe(lambda _p, v: positions.append(v.magnitude.copy()))
    positioner["state"].subscribe(lambda _p, v: states.append(v))
    began = time.monotonic()
    await positioner.right(3 * q.mm)  # 0.3 s
    duration = time.monotonic() - began
    moving = [p for p in positions if 0 < p[0] < 3]
    assert len(moving) >= 10 * duration * 0.8
    np.testing.assert_allclose(positions[-1], [3, 0, np.nan])
    assert states == ["moving", "standby"]


# -- imaging ---------------------------------------------------------------------------
async def test_imaging_moves_in_pixels() -> None:
    detector = await Detector(2 * q.um, 5 * q.um)
    axes = [await Axis(c, await LinearMotor()) for c in "xyz"]
    positioner = await imaging.Positioner(axes, detector)
    await positioner.move(q.Quantity(np.array([100, 200]), q.pixel))
    assert_vector(await positioner.get_position(), mm(0.2, 1.0, 0))
    await positioner.move_pixels(-100.0, 0.0)
    assert_vector(await positioner.get_position(), mm(0, 1.0, 0))
    await positioner.down(100 * q.pixel)
    await positioner.forward(1 * q.mm)  # lengths still work
    assert_vector(await positioner.get_position(), mm(0, 0.5, 1))
    with pytest.raises(ValueError, match="pixel"):
        await positioner.forward(1 * q.pixel)
    with pytest.raises(ValueError):
        await positioner.move(q.Quantity(np.array([1, 2, 3, 4]), q.pixel))
    assert_vector(await positioner.get_position(), mm(0, 0.5, 1))


async def test_imaging_pixel_size_per_pixel() -> None:
    class PerPixel(Device):
        pixel_width = Quantity(q.um / q.pixel, help="effective pixel width")
        pixel_height = Quantity(q.um / q.pixel, help="effective pixel height")

        async def _get_pixel_width(self) -> pint.Quantity:
            return 10 * q.um / q.pixel

        async def _get_pixel_height(self) -> pint.Quantity:
            return 10 * q.um / q.pixel

    positioner = await imaging.Positioner([await Axis("x", await LinearMotor())],
                                          await PerPixel())
    await positioner.right(50 * q.pixel)
    assert_vector(await positioner.get_position(), mm(0.5, np.nan, np.nan))


async def test_dummy_imaging_positioner() -> None:
    positioner = await dummy.ImagingPositioner(pixel_size=10 * q.um)
    await positioner.move_pixels(10.0, 20.0)
    assert_vector(await positioner.get_position(), mm(0.1, 0.2, 0))
    other = await dummy.ImagingPositioner(detector=await Detector(1 * q.um, 1 * q.um))
    await other.move_pixels(1000.0, 0.0)
    assert_vector(await other.get_position(), mm(1, 0, 0))


# -- published API and garbage collection ----------------------------------------------
def test_scalar_methods_are_publishable() -> None:
    for name in ("right", "left", "up", "down", "forward", "back"):
        method = getattr(imaging.Positioner, name)
        assert method.__concert_background__
        assert argument_units(method)["value"].unit(imaging.Positioner) == q.mm
    # vector methods stay Python-only: plain pint.Quantity, no InUnitOf
    assert argument_units(Positioner.move) == {}
    assert argument_units(Positioner.rotate) == {}
    assert imaging.Positioner.move_pixels.__concert_background__


async def test_dropped_positioner_is_collected() -> None:
    positioner, x, _y = await xy_positioner()
    await positioner.right(1 * q.mm)
    rotation = await ContinuousRotationMotor()
    dummy_positioner = await dummy.Positioner()
    await dummy_positioner.up(0.1 * q.mm)
    refs = [weakref.ref(positioner), weakref.ref(dummy_positioner)]
    del positioner, dummy_positioner
    gc.collect()
    assert all(ref() is None for ref in refs)
    await x.move(1 * q.mm)  # the motors outlive it and work on
    assert await x.get_position() == 2 * q.mm
    assert await rotation.get_state() == "standby"
