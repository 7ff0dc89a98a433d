"""Motors: parameters, state machine, simulated timing, hard limits, faults, notifications."""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import time
import typing
import weakref

import pytest

from concert_core.coroutines import timerfd
from concert_core.devices.motors import base, dummy
from concert_core.errors import (
    HardLimitError,
    LockError,
    SoftLimitError,
    StateError,
    TransitionNotAllowed,
    UnitError,
)
from concert_core.quantities import q
from tests.support import overshoots

MOTOR_CLASSES = [dummy.LinearMotor, dummy.ContinuousLinearMotor, dummy.RotationMotor,
                 dummy.ContinuousRotationMotor]


def unit_of(cls: type) -> object:
    return q.mm if issubclass(cls, base.LinearMotor) else q.deg


async def until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


# -- parameters ------------------------------------------------------------------------
@pytest.mark.parametrize("cls", MOTOR_CLASSES)
async def test_defaults_units_and_help(cls: type) -> None:
    motor = await cls()
    unit = unit_of(cls)
    assert motor["position"].unit == unit
    assert motor["position"].writable and motor["position"].help
    assert await motor.get_position() == 0 * unit
    assert await motor.get_state() == "standby"
    if "velocity" in motor:
        assert motor["velocity"].unit == unit / q.s
        assert motor["velocity"].writable and motor["velocity"].help
        assert await motor.get_velocity() == 0 * unit / q.s
    assert not motor["state"].writable


async def test_position_converts_units() -> None:
    motor = await dummy.LinearMotor(position=1 * q.mm)
    await motor.set_position(1500 * q.um)
    assert (await motor.get_position()).magnitude == pytest.approx(1.5)
    rotation = await dummy.RotationMotor()
    await rotation.set_position(0.1 * q.rad)
    assert (await rotation.get_position()).to(q.rad).magnitude == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [1 * q.s, 3.0, 2 * q.deg])
async def test_unit_error_leaves_position(bad: object) -> None:
    motor = await dummy.LinearMotor(position=1 * q.mm)
    with pytest.raises(UnitError):
        await motor.set_position(bad)
    with pytest.raises(UnitError):
        await motor.move(bad)
    assert await motor.get_position() == 1 * q.mm
    assert await motor.get_state() == "standby"


async def test_rotation_refuses_lengths() -> None:
    motor = await dummy.ContinuousRotationMotor()
    with pytest.raises(UnitError):
        await motor.set_position(1 * q.mm)
    with pytest.raises(UnitError):
        await motor.set_velocity(1 * q.mm / q.s)
    assert await motor.get_position() == 0 * q.deg


async def test_soft_limits_refuse_before_moving() -> None:
    motor = await dummy.LinearMotor(position=1 * q.mm)
    await motor["position"].set_lower(-2 * q.mm)
    await motor["position"].set_upper(2 * q.mm)
    with pytest.raises(SoftLimitError):
        await motor.set_position(3 * q.mm)
    task = motor.move(1.5 * q.mm)
    await asyncio.sleep(0)
    assert task.done()  # refused in the task's first step, nothing moved
    with pytest.raises(SoftLimitError):
        await task
    assert await motor.get_position() == 1 * q.mm
    assert await motor.get_target_position() == 1 * q.mm
    assert await motor.get_state() == "standby"
    await motor.move(-3 * q.mm)
    assert await motor.get_position() == -2 * q.mm


async def test_lock_refuses() -> None:
    motor = await dummy.LinearMotor()
    motor["position"].lock()
    with pytest.raises(LockError):
        await motor.move(1 * q.mm)
    assert await motor.get_position() == 0 * q.mm
    motor["position"].unlock()
    await motor.move(1 * q.mm)
    assert await motor.get_position() == 1 * q.mm


@pytest.mark.parametrize(
    "kwargs",
    [
        {"update_interval": 0.2 * q.s},
        {"update_interval": 0 * q.s},
        {"speed": 0 * q.mm / q.s},
        {"position": 5 * q.mm, "upper_hard_limit": 2 * q.mm},
        {"lower_hard_limit": 2 * q.mm, "upper_hard_limit": 1 * q.mm},
    ],
)
async def test_constructor_refuses_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        await dummy.LinearMotor(**kwargs)


async def test_constructor_refuses_bad_units() -> None:
    with pytest.raises(UnitError):
        await dummy.LinearMotor(speed=1 * q.deg / q.s)
    with pytest.raises(UnitError):
        await dummy.RotationMotor(position=1 * q.mm)


# -- timing ----------------------------------------------------------------------------
async def test_move_takes_time_and_reports_on_the_way() -> None:
    motor = await dummy.LinearMotor(speed=20 * q.mm / q.s)
    began = time.monotonic()
    task = motor.move(4 * q.mm)  # 0.2 s
    await asyncio.sleep(0.05)
    assert await motor.get_state() == "moving"
    assert await motor.get_target_position() == 4 * q.mm
    halfway = (await motor.get_position()).magnitude
    assert 0 < halfway < 4
    await task
    elapsed = time.monotonic() - began
    assert 0.19 <= elapsed < 1.0
    assert await motor.get_position() == 4 * q.mm
    assert await motor.get_state() == "standby"


async def test_short_move_is_not_rounded_up_to_a_tick() -> None:
    motor = await dummy.LinearMotor(update_interval=0.05 * q.s)  # 100 mm/s
    took = []
    for step in range(1, 4):  # the fastest of three: a stalled host only makes moves later
        began = time.monotonic()
        await motor.move(0.1 * q.mm)  # 1 ms
        took.append(time.monotonic() - began)
        assert (await motor.get_position()).magnitude == pytest.approx(0.1 * step)
    assert min(took) < 0.03  # a tick would be 50 ms


async def test_sub_millisecond_move_is_neither_skipped_nor_rounded_to_a_timer() -> None:
    # 50 us of travel: a loop timer would take a whole millisecond; the simulation waits
    # the travel time by yielding, and never arrives early.
    motor = await dummy.RotationMotor(speed=36000 * q.deg / q.s)
    for target in (1.8, 3.6, 0.0):
        began = time.monotonic()
        await motor.set_position(target * q.deg)
        assert time.monotonic() - began >= 1.8 / 36000
        assert (await motor.get_position()).magnitude == pytest.approx(target)
        assert await motor.get_state() == "standby"


async def test_set_position_blocks_until_there() -> None:
    motor = await dummy.RotationMotor(speed=200 * q.deg / q.s)
    began = time.monotonic()
    await motor.set_position(20 * q.deg)  # 0.1 s
    assert 0.095 <= time.monotonic() - began < 0.8
    assert await motor.get_position() == 20 * q.deg


async def test_stop_midway() -> None:
    motor = await dummy.LinearMotor(position=1 * q.mm, speed=10 * q.mm / q.s)
    task = motor.move(5 * q.mm)
    await asyncio.sleep(0.1)
    await motor.stop()
    assert await motor.get_state() == "standby"
    stopped = (await motor.get_position()).magnitude
    assert 1 < stopped < 6
    await task  # a stopped move ends normally
    await asyncio.sleep(0.05)
    assert (await motor.get_position()).magnitude == stopped
    assert await motor.get_target_position() == 6 * q.mm
    await motor.stop()  # stopping a motor at rest is harmless
    assert await motor.get_state() == "standby"


async def test_cancelling_the_move_stops_the_motor() -> None:
    motor = await dummy.LinearMotor(speed=10 * q.mm / q.s)
    task = motor.move(-5 * q.mm)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await motor.get_state() == "standby"
    stopped = (await motor.get_position()).magnitude
    assert -5 < stopped < 0
    await asyncio.sleep(0.05)
    assert (await motor.get_position()).magnitude == stopped


async def test_emergency_stop() -> None:
    motor = await dummy.LinearMotor(speed=10 * q.mm / q.s)
    task = motor.move(5 * q.mm)
    await asyncio.sleep(0.05)
    await motor.emergency_stop()
    assert await motor.get_state() == "standby"
    assert 0 < (await motor.get_position()).magnitude < 5
    await task
    await motor.emergency_stop()  # harmless at rest
    continuous = await dummy.ContinuousRotationMotor()
    await continuous.set_velocity(50 * q.deg / q.s)
    await asyncio.sleep(0.05)
    await continuous.emergency_stop()
    assert await continuous.get_state() == "standby"
    assert await continuous.get_velocity() == 0 * q.deg / q.s
    assert (await continuous.get_position()).magnitude > 0


async def test_notifications_while_moving() -> None:
    motor = await dummy.LinearMotor(speed=10 * q.mm / q.s, update_interval=0.05 * q.s)
    seen: list[tuple[float, float]] = []
    states: list[str] = []
    motor["position"].subscribe(lambda _p, v: seen.append((time.monotonic(), v.magnitude)))
    motor["state"].subscribe(lambda _p, v: states.append(v))
    began = time.monotonic()
    await motor.move(3 * q.mm)  # 0.3 s
    duration = time.monotonic() - began
    during = [value for stamp, value in seen if 0 < value < 3]
    assert len(during) >= 10 * duration * 0.8  # >= 10 Hz with some slack for a busy machine
    assert during == sorted(during)
    assert seen[-1][1] == 3
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    assert max(gaps) < 0.1
    assert states == ["moving", "standby"]


async def test_two_moves_at_once_are_refused() -> None:
    motor = await dummy.LinearMotor(speed=10 * q.mm / q.s)
    first = motor.move(1 * q.mm)
    second = motor.move(1 * q.mm)
    with pytest.raises(TransitionNotAllowed):
        await second
    with pytest.raises(TransitionNotAllowed):
        await motor.set_position(3 * q.mm)
    with pytest.raises(TransitionNotAllowed):
        await motor.home()
    with pytest.raises(TransitionNotAllowed):
        await motor.disable()
    await first
    assert await motor.get_position() == 1 * q.mm


# -- enable / disable ------------------------------------------------------------------
async def test_disabled_motor_refuses_motion() -> None:
    motor = await dummy.ContinuousLinearMotor(position=2 * q.mm)
    await motor.disable()
    assert await motor.get_state() == "disabled"
    with pytest.raises(TransitionNotAllowed):
        await motor.move(1 * q.mm)
    with pytest.raises(TransitionNotAllowed):
        await motor.set_position(1 * q.mm)
    with pytest.raises(TransitionNotAllowed):
        await motor.home()
    with pytest.raises(TransitionNotAllowed):
        await motor.set_velocity(1 * q.mm / q.s)
    with pytest.raises(TransitionNotAllowed):
        await motor.disable()
    assert await motor.get_position() == 2 * q.mm
    assert await motor.get_state() == "disabled"
    await motor.enable()
    assert await motor.get_state() == "standby"
    with pytest.raises(TransitionNotAllowed):
        await motor.enable()
    await motor.move(1 * q.mm)
    assert await motor.get_position() == 3 * q.mm


# -- homing ----------------------------------------------------------------------------
async def test_home_moves_to_zero_at_speed() -> None:
    motor = await dummy.RotationMotor(position=-10 * q.deg, speed=100 * q.deg / q.s)
    began = time.monotonic()
    task = motor.home()
    await asyncio.sleep(0.03)
    assert await motor.get_state() == "moving"
    assert -10 < (await motor.get_position()).magnitude < 0
    await task
    assert 0.095 <= time.monotonic() - began < 0.8
    assert await motor.get_position() == 0 * q.deg
    assert await motor.get_state() == "standby"


# -- hard limits -----------------------------------------------------------------------
async def test_hard_limit_stops_and_move_back_works() -> None:
    motor = await dummy.LinearMotor(upper_hard_limit=2 * q.mm, lower_hard_limit=-1 * q.mm)
    with pytest.raises(HardLimitError):
        await motor.move(5 * q.mm)
    assert await motor.get_state() == "hard-limit"
    assert await motor.get_position() == 2 * q.mm
    assert "hard limit" in motor["state"].describe()
    # further out: refused at once, no motion
    with pytest.raises(HardLimitError):
        await motor.move(0.5 * q.mm)
    assert await motor.get_position() == 2 * q.mm
    assert await motor.get_state() == "hard-limit"
    await motor.move(-1 * q.mm)
    assert await motor.get_state() == "standby"
    assert await motor.get_position() == 1 * q.mm
    with pytest.raises(HardLimitError):
        await motor.set_position(-3 * q.mm)
    assert await motor.get_position() == -1 * q.mm
    assert await motor.get_state() == "hard-limit"
    await motor.home()
    assert await motor.get_state() == "standby"
    # exactly at the limit is fine
    await motor.set_position(2 * q.mm)
    assert await motor.get_state() == "standby"


async def test_hard_limit_takes_time_to_reach() -> None:
    motor = await dummy.LinearMotor(upper_hard_limit=2 * q.mm, speed=20 * q.mm / q.s)
    began = time.monotonic()
    task = motor.move(10 * q.mm)
    await asyncio.sleep(0.04)
    assert await motor.get_state() == "moving"
    with pytest.raises(HardLimitError):
        await task
    assert 0.095 <= time.monotonic() - began < 0.8


async def test_homing_into_a_hard_limit() -> None:
    motor = await dummy.LinearMotor(position=5 * q.mm, lower_hard_limit=2 * q.mm)
    with pytest.raises(HardLimitError):
        await motor.home()
    assert await motor.get_state() == "hard-limit"
    assert await motor.get_position() == 2 * q.mm


# -- faults ----------------------------------------------------------------------------
async def test_stall_fault() -> None:
    motor = await dummy.LinearMotor()
    await motor.inject_fault("stall")
    with pytest.raises(StateError) as info:
        await motor.move(4 * q.mm)
    assert not isinstance(info.value, HardLimitError)
    assert await motor.get_state() == "error"
    assert await motor.get_position() == 2 * q.mm  # stopped midway
    assert "stalled" in motor["state"].describe()
    for refused in (motor.move(1 * q.mm), motor.set_position(0 * q.mm), motor.home(),
                    motor.disable()):
        with pytest.raises(TransitionNotAllowed):
            await refused
    assert await motor.get_position() == 2 * q.mm
    await motor.reset()
    assert await motor.get_state() == "standby"
    await motor.move(1 * q.mm)  # the fault acted once
    assert await motor.get_position() == 3 * q.mm


async def test_home_fault_and_clear() -> None:
    motor = await dummy.LinearMotor(position=3 * q.mm)
    await motor.inject_fault("home")
    with pytest.raises(StateError):
        await motor.home()
    assert await motor.get_state() == "error"
    assert await motor.get_position() == 3 * q.mm
    await motor.reset()
    await motor.inject_fault("home")
    await motor.inject_fault("stall")
    await motor.clear_fault()
    await motor.home()
    assert await motor.get_position() == 0 * q.mm
    assert await motor.get_state() == "standby"


async def test_unknown_fault() -> None:
    motor = await dummy.LinearMotor()
    with pytest.raises(ValueError, match=r"home.*stall"):
        await motor.inject_fault("explode")


async def test_continuous_stall() -> None:
    motor = await dummy.ContinuousLinearMotor()
    await motor.inject_fault("stall")
    await motor.set_velocity(20 * q.mm / q.s)
    await until(lambda: motor["state"].last_value == "error")
    assert await motor.get_velocity() == 0 * q.mm / q.s
    assert (await motor.get_position()).magnitude == pytest.approx(2)


# -- continuous motion -----------------------------------------------------------------
@pytest.mark.parametrize("cls", [dummy.ContinuousLinearMotor, dummy.ContinuousRotationMotor])
async def test_velocity_moves_and_stops(cls: type) -> None:
    unit = unit_of(cls)
    motor = await cls(position=1 * unit)
    await motor.set_velocity(50 * unit / q.s)
    assert await motor.get_state() == "moving"
    assert await motor.get_velocity() == 50 * unit / q.s
    await asyncio.sleep(0.1)
    assert (await motor.get_position()).magnitude > 3
    await motor.set_velocity(0 * unit / q.s)
    assert await motor.get_state() == "standby"
    assert await motor.get_velocity() == 0 * unit / q.s
    stopped = await motor.get_position()
    await asyncio.sleep(0.03)
    assert await motor.get_position() == stopped


async def test_negative_velocity_moves_negative() -> None:
    motor = await dummy.ContinuousLinearMotor()
    await motor.set_velocity(-30 * q.mm / q.s)
    await asyncio.sleep(0.1)
    assert await motor.get_velocity() == -30 * q.mm / q.s
    position = (await motor.get_position()).magnitude
    assert -4 < position < -1.5
    await motor.stop()
    assert await motor.get_state() == "standby"
    assert await motor.get_velocity() == 0 * q.mm / q.s


async def test_velocity_change_while_moving() -> None:
    motor = await dummy.ContinuousRotationMotor()
    await motor.set_velocity(100 * q.deg / q.s)
    await asyncio.sleep(0.05)
    await motor.set_velocity(-100 * q.deg / q.s)
    assert await motor.get_state() == "moving"
    first = (await motor.get_position()).magnitude
    await asyncio.sleep(0.05)
    assert (await motor.get_position()).magnitude < first
    await motor.stop()


async def test_continuous_hard_limit() -> None:
    motor = await dummy.ContinuousLinearMotor(lower_hard_limit=-1 * q.mm)
    velocities: list[float] = []
    motor["velocity"].subscribe(lambda _p, v: velocities.append(v.magnitude))
    await motor.set_velocity(-50 * q.mm / q.s)
    await until(lambda: motor["state"].last_value == "hard-limit")
    assert await motor.get_position() == -1 * q.mm
    assert await motor.get_velocity() == 0 * q.mm / q.s
    assert velocities[0] == -50 and velocities[-1] == 0
    with pytest.raises(HardLimitError):
        await motor.set_velocity(-10 * q.mm / q.s)
    assert await motor.get_state() == "hard-limit"
    assert await motor.get_position() == -1 * q.mm
    await motor.set_velocity(100 * q.mm / q.s)  # back inside
    assert await motor.get_state() == "moving"
    await asyncio.sleep(0.02)
    await motor.set_velocity(0 * q.mm / q.s)
    assert await motor.get_state() == "standby"
    assert (await motor.get_position()).magnitude > -1


async def test_velocity_during_positional_move_refused() -> None:
    motor = await dummy.ContinuousLinearMotor(speed=10 * q.mm / q.s)
    task = motor.move(1 * q.mm)
    await asyncio.sleep(0.02)
    assert await motor.get_velocity() == 10 * q.mm / q.s
    with pytest.raises(TransitionNotAllowed):
        await motor.set_velocity(5 * q.mm / q.s)
    await task
    assert await motor.get_position() == 1 * q.mm
    assert await motor.get_velocity() == 0 * q.mm / q.s


async def test_positional_motion_refused_while_continuous() -> None:
    motor = await dummy.ContinuousLinearMotor(velocity=10 * q.mm / q.s)
    assert await motor.get_state() == "moving"
    with pytest.raises(TransitionNotAllowed):
        await motor.move(1 * q.mm)
    await motor.stop()
    assert await motor.get_state() == "standby"


async def test_continuous_notifications() -> None:
    motor = await dummy.ContinuousRotationMotor(update_interval=0.05 * q.s)
    seen: list[float] = []
    motor["position"].subscribe(lambda _p, v: seen.append(time.monotonic()))
    await motor.set_velocity(10 * q.deg / q.s)
    await asyncio.sleep(0.32)
    await motor.stop()
    assert len(seen) >= 4  # >= 10 Hz over 0.32 s, with slack


# -- published API and garbage collection ----------------------------------------------
@pytest.mark.parametrize("cls", MOTOR_CLASSES)
def test_public_methods_are_annotated(cls: type) -> None:
    for name in ("move", "home", "stop", "enable", "disable", "reset", "emergency_stop",
                 "inject_fault", "clear_fault"):
        method = getattr(cls, name)
        hints = typing.get_type_hints(method, include_extras=True)
        assert hints["return"] is type(None), name
        params = [p for p in inspect.signature(method).parameters if p != "self"]
        assert all(p in hints for p in params), name
    assert cls.move.__concert_background__ and cls.home.__concert_background__
    hints = typing.get_type_hints(cls.__ainit__)
    assert all(p in hints for p in inspect.signature(cls.__ainit__).parameters if p != "self")


@pytest.mark.parametrize("cls", MOTOR_CLASSES)
async def test_dropped_motor_is_collected(cls: type) -> None:
    motor = await cls()
    unit = unit_of(cls)
    motor["position"].subscribe(lambda _p, _v: None)
    await motor.move(0.5 * unit)
    if "velocity" in motor:
        await motor.set_velocity(100 * unit / q.s)
        await asyncio.sleep(0.01)
        await motor.stop()
    ref = weakref.ref(motor)
    del motor
    await asyncio.sleep(0)
    gc.collect()
    assert ref() is None


async def test_hard_limit_before_a_stall() -> None:
    motor = await dummy.ContinuousLinearMotor(upper_hard_limit=0.5 * q.mm)
    await motor.inject_fault("stall")  # would act after 0.1 s = 5 mm; the limit comes first
    await motor.set_velocity(50 * q.mm / q.s)
    await until(lambda: motor["state"].last_value != "moving")
    assert await motor.get_state() == "hard-limit"
    assert await motor.get_position() == 0.5 * q.mm


@pytest.mark.skipif(not timerfd.available(), reason="no timerfd on this platform")
async def test_a_precise_pause_of_one_to_two_milliseconds_ends_on_time():
    # A scan's dwell of 1-2 ms: its last millisecond must not go to a loop timer either.
    motor = await dummy.LinearMotor()
    rounds = await overshoots(lambda seconds: motor._pause(seconds, precise=True), 0.0015)
    assert min(late[0] for late in rounds) >= 0  # never early
    # The best round's median; a loop timer: half a millisecond, typically.
    assert min(late[15] for late in rounds) < 0.0003
