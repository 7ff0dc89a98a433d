"""A remote ``TangoDevice`` behaves like the local concert device it publishes.

The behaviour tests run twice: on a local ``dummy.LinearMotor`` and on a remote one, built
by :func:`concert_core.remote.TangoDevice` over a ``ConcertMotor`` server whose device has
the same ``concert_args``. Every test gets a motor of its own (the remote ones are all
served by one process). Change notifications are not required remotely.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from concert_core.dataplane import ImageReceiver
from concert_core.devices.cameras.dummy import Camera
from concert_core.devices.motors import dummy
from concert_core.errors import (
    HardLimitError,
    LockError,
    ParameterError,
    SoftLimitError,
    UnitError,
)
from concert_core.quantities import q
from concert_core.remote import TangoDevice
from tests.support import collect, spy_on

pytestmark = pytest.mark.tango

BIN = Path(sys.executable).parent
INSTANCE = "t4remote"
#: Constructor arguments of every motor, local and remote.
ARGS = {"position": "1 mm", "lower_hard_limit": "-20 mm", "upper_hard_limit": "20 mm",
        "speed": "50 mm/s"}
BEHAVIOURS = ["units", "move", "soft_limits", "unit_error", "hard_limit", "cancel", "home",
              "states", "values"]
CAMERA = "t4r/camera/1"
RESTART = "t4r/restart/1"


def motor_name(behaviour: str) -> str:
    return f"t4r/motor/{behaviour}"


@pytest.fixture(scope="module")
def servers(tango_servers) -> dict:
    """The motors, a camera and a motor server of its own for the restart test."""
    args = {"concert_args": [json.dumps(ARGS)]}
    processes = {
        "motors": tango_servers.prepare(
            [BIN / "ConcertMotor", INSTANCE], "ConcertMotor", INSTANCE,
            {"LinearMotor": [motor_name(name) for name in BEHAVIOURS]},
            {motor_name(name): args for name in BEHAVIOURS}, timeout=60),
        "camera": tango_servers.prepare(
            [BIN / "ConcertCamera", INSTANCE], "ConcertCamera", INSTANCE,
            {"Camera": [CAMERA]}, timeout=60),
        "restart": tango_servers.prepare(
            [BIN / "ConcertMotor", "t4restart2"], "ConcertMotor", "t4restart2",
            {"LinearMotor": [RESTART]}, {RESTART: args}, timeout=60),
    }
    tango_servers.start_all(list(processes.values()))
    return processes


@pytest.fixture(params=["local", "remote"])
async def make_motor(request, servers):
    """``await make_motor(behaviour)``: a fresh local motor or the remote one of that test."""
    made = []

    async def make(behaviour: str):
        if request.param == "local":
            return await dummy.LinearMotor(**{key: q.Quantity(value)
                                              for key, value in ARGS.items()})
        device = await TangoDevice(motor_name(behaviour))
        made.append(device)
        return device

    yield make
    for device in made:
        await device.disconnect()


async def position_mm(motor) -> float:
    return float((await motor.get_position()).to(q.mm).magnitude)


# -- behaviours ----------------------------------------------------------------------------
async def test_set_get_position_with_units(make_motor) -> None:
    motor = await make_motor("units")
    assert await position_mm(motor) == pytest.approx(1.0)
    await motor.set_position(1500 * q.um)
    assert await position_mm(motor) == pytest.approx(1.5)
    assert (await motor.get_position()).to(q.um).magnitude == pytest.approx(1500)
    assert (await motor.get_target_position()).to(q.mm).magnitude == pytest.approx(1.5)
    await motor.set_position(0.002 * q.m)
    assert await position_mm(motor) == pytest.approx(2.0)
    assert motor["position"].unit == q.mm
    assert await motor.get_state() == "standby"


async def test_relative_move(make_motor) -> None:
    motor = await make_motor("move")
    await motor.move(2 * q.mm)
    assert await position_mm(motor) == pytest.approx(3.0)
    await motor.move(-500 * q.um)
    assert await position_mm(motor) == pytest.approx(2.5)
    assert await motor.get_state() == "standby"


async def test_soft_limits_refuse_and_leave_the_value(make_motor) -> None:
    motor = await make_motor("soft_limits")
    position = motor["position"]
    await position.set_lower(-2 * q.mm)
    await position.set_upper(2 * q.mm)
    try:
        assert await position.get_limits() == (-2 * q.mm, 2 * q.mm)
        with pytest.raises(SoftLimitError, match="position = 3"):  # names the value
            await motor.set_position(3 * q.mm)
        with pytest.raises(SoftLimitError):
            await motor.move(1.5 * q.mm)
        assert await position_mm(motor) == pytest.approx(1.0)
        assert await motor.get_state() == "standby"
        await motor.move(-3 * q.mm)
        assert await position_mm(motor) == pytest.approx(-2.0)
    finally:
        await position.set_lower(None)
        await position.set_upper(None)
    assert await position.get_limits() == (None, None)


@pytest.mark.parametrize("bad", [1 * q.s, 2 * q.deg])
async def test_unit_error(make_motor, bad) -> None:
    motor = await make_motor("unit_error")
    with pytest.raises(UnitError):
        await motor.set_position(bad)
    with pytest.raises(UnitError):
        await motor.move(bad)
    assert await position_mm(motor) == pytest.approx(1.0)
    assert await motor.get_state() == "standby"


async def test_hard_limit_then_back(make_motor) -> None:
    motor = await make_motor("hard_limit")
    with pytest.raises(HardLimitError):
        await motor.set_position(25 * q.mm)  # the hard limit is at 20 mm
    assert await motor.get_state() == "hard-limit"
    assert await position_mm(motor) == pytest.approx(20.0)
    await motor.set_position(5 * q.mm)
    assert await motor.get_state() == "standby"
    assert await position_mm(motor) == pytest.approx(5.0)


async def test_stop_midway_by_cancelling(make_motor) -> None:
    motor = await make_motor("cancel")
    task = asyncio.ensure_future(motor.set_position(15 * q.mm))  # 0.28 s
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped = await position_mm(motor)
    assert 1.0 < stopped < 15.0
    await asyncio.sleep(0.2)
    assert await position_mm(motor) == pytest.approx(stopped)
    assert await motor.get_state() == "standby"


async def test_home(make_motor) -> None:
    motor = await make_motor("home")
    await motor.set_position(3 * q.mm)
    await motor.home()
    assert await position_mm(motor) == pytest.approx(0.0)
    assert await motor.get_state() == "standby"


async def test_state_transitions(make_motor) -> None:
    motor = await make_motor("states")
    assert await motor.get_state() == "standby"
    task = asyncio.ensure_future(motor.set_position(11 * q.mm))  # 0.2 s
    seen = set()
    while not task.done():
        seen.add(await motor.get_state())
        await asyncio.sleep(0.01)
    await task
    assert "moving" in seen
    assert await motor.get_state() == "standby"
    assert await position_mm(motor) == pytest.approx(11.0)


# -- remote only ---------------------------------------------------------------------------
async def test_read_values_in_one_call(make_motor) -> None:
    # Remote: one read_attributes round trip; the values are those single reads give.
    motor = await make_motor("values")
    await motor.set_position(3 * q.mm)
    values = await motor.read_values()
    assert set(values) == {value.name for value in motor if value.readable}
    assert values["position"].to(q.mm).magnitude == pytest.approx(3.0)
    assert values["state"] == "standby"
    for name, value in values.items():
        if name not in ("position", "state"):
            assert value == await motor[name].get(), name
    assert list(await motor.read_values(["state", "position"])) == ["position", "state"]
    # A parameter that cannot be read maps to its error; the others are still read.
    mixed = await motor.read_values(["position", "no_such_parameter"])
    assert isinstance(mixed["no_such_parameter"], ParameterError)
    assert mixed["position"].to(q.mm).magnitude == pytest.approx(3.0)


@pytest.fixture(params=["local", "remote"])
async def camera(request, servers):
    """A local dummy camera, or the remote one (its settings put back afterwards)."""
    if request.param == "local":
        yield await Camera()
        return
    device = await TangoDevice(CAMERA)
    saved = await device.read_values(["exposure_time", "frame_rate", "trigger_source"])
    try:
        yield device
    finally:
        for value in device:
            value.unlock()
        await device.write_values(saved)
        await device.disconnect()


async def test_write_values_in_order_and_refusals_write_nothing(camera) -> None:
    await camera.write_values({"exposure_time": 3 * q.ms, "trigger_source": "EXTERNAL"})
    assert (await camera.get_exposure_time()).to(q.ms).magnitude == pytest.approx(3)
    assert await camera.get_trigger_source() == "EXTERNAL"
    # Refused before anything is written: a unit, a lock, a limit of the first value.
    with pytest.raises(UnitError):
        await camera.write_values({"exposure_time": 5 * q.ms, "frame_rate": 2 * q.mm})
    camera["trigger_source"].lock()
    with pytest.raises(LockError):
        await camera.write_values({"exposure_time": 6 * q.ms, "trigger_source": "AUTO"})
    camera["trigger_source"].unlock()
    with pytest.raises(SoftLimitError):
        await camera.write_values({"exposure_time": -1 * q.ms, "trigger_source": "AUTO"})
    assert (await camera.get_exposure_time()).to(q.ms).magnitude == pytest.approx(3)
    assert await camera.get_trigger_source() == "EXTERNAL"
    await camera.write_values({"trigger_source": "SOFTWARE"})
    assert await camera.get_trigger_source() == "SOFTWARE"


async def test_remote_reads_and_writes_go_in_one_round_trip(servers) -> None:
    camera = await TangoDevice(CAMERA)
    try:
        source = await camera.get_trigger_source()
        reads = spy_on(camera.proxy, "read_attributes")
        writes = spy_on(camera.proxy, "write_read_attributes")
        values = await camera.read_values(["state", "exposure_time", "trigger_source"])
        assert reads == [("exposure_time", "trigger_source", "Status")]
        assert values["state"] == "standby" and values["trigger_source"] == source
        await camera.write_values({"trigger_source": "EXTERNAL", "frame_rate": 50 / q.s})
        assert writes == [("trigger_source", "frame_rate")]
        assert await camera.get_trigger_source() == "EXTERNAL"
        assert (await camera.get_frame_rate()).magnitude == pytest.approx(50)
        await camera.write_values({"trigger_source": source})
    finally:
        await camera.disconnect()


async def test_remote_long_methods_start_at_once_and_tell_their_start(servers) -> None:
    # As a local @background method, a long one returns its running task; its
    # ``started`` future gives the state the device answered in.
    camera = await TangoDevice(CAMERA)
    try:
        await camera.set_data_endpoint("tcp://127.0.0.1:0")
        async with ImageReceiver(await camera.get_data_endpoint(), timeout=10) as receiver:
            sending = camera.grab_send(3)
            assert isinstance(sending, asyncio.Task)
            assert await sending.started == "recording"
            frames = await collect(receiver)
            await sending
        assert len(frames) == 3
        assert await camera.get_state() == "standby"
        with pytest.raises(ValueError):  # refused: the task carries the error
            await camera.grab_send(-1)
    finally:
        await camera.set_data_endpoint("")
        await camera.disconnect()


async def test_remote_camera(servers) -> None:
    camera = await TangoDevice(CAMERA)
    try:
        assert type(camera).__name__ == "RemoteCamera"
        await camera.set_exposure_time(5 * q.ms)
        assert (await camera.get_exposure_time()).to(q.ms).magnitude == pytest.approx(5)
        assert camera["exposure_time"].unit == q.s
        await camera.set_exposure_time(0.002 * q.s)
        assert (await camera.get_exposure_time()).to(q.us).magnitude == pytest.approx(2000)
        with pytest.raises(UnitError):
            await camera.set_exposure_time(1 * q.mm)
        assert await camera.get_state() == "standby"
        await camera.start_recording()
        assert await camera.get_state() == "recording"
        await camera.stop_recording()
        assert await camera.get_state() == "standby"
    finally:
        await camera.disconnect()


async def test_remote_reconnects_after_restart(servers) -> None:
    motor = await TangoDevice(RESTART)
    try:
        await motor.set_position(2 * q.mm)
        assert await position_mm(motor) == pytest.approx(2.0)
        await asyncio.to_thread(servers["restart"].restart)
        began = time.monotonic()
        while True:  # a new process: the dummy starts again at 1 mm
            try:
                assert await position_mm(motor) == pytest.approx(1.0)
                break
            except Exception:
                if time.monotonic() - began > 10:
                    raise
                await asyncio.sleep(0.2)
        await motor.set_position(4 * q.mm)
        assert await position_mm(motor) == pytest.approx(4.0)
        assert await motor.get_state() == "standby"
    finally:
        await motor.disconnect()


async def test_proxy_calls_run_off_the_loop_and_map_failures(servers) -> None:
    # Blocking proxy calls run in the loop's call threads, several at once, and a
    # DevFailed comes back as the concert error its reason names.
    import tango

    from concert_core.remote import MAX_CONCURRENT_CALLS, RemoteError, call

    proxy = await call(tango.DeviceProxy, motor_name("units"))
    seen: list[str] = []

    def read() -> float:
        seen.append(threading.current_thread().name)
        time.sleep(0.2)
        return proxy.read_attribute("position").value

    loop_thread = threading.current_thread().name
    began = time.monotonic()
    values = await asyncio.gather(*(call(read) for _ in range(4)))
    assert time.monotonic() - began < 0.6  # concurrent, not 4 x 0.2 s
    assert len(set(values)) == 1 and MAX_CONCURRENT_CALLS >= 4
    assert loop_thread not in seen and all(name.startswith("tango-call") for name in seen)
    with pytest.raises(RemoteError, match="no_such_attribute"):
        await call(proxy.read_attribute, "no_such_attribute")
    with pytest.raises(SoftLimitError):  # reason API_WAttrOutsideLimit
        config = await call(proxy.get_attribute_config, "position")
        config.max_value = "5"
        await call(proxy.set_attribute_config, config)
        try:
            await call(proxy.write_attribute, "position", 6.0)
        finally:
            config.max_value = "Not specified"
            await call(proxy.set_attribute_config, config)


async def test_without_state_events_long_operations_poll(servers, monkeypatch) -> None:
    # A device whose State events cannot be subscribed still works: the end of a motion
    # (here 40 ms, longer than the bridge's SETTLE) is found by reading State.
    import tango

    def refuse(*_args, **_kwargs):
        tango.Except.throw_exception("API_EventChannelNotExported", "no events here", "test")

    monkeypatch.setattr(tango.DeviceProxy, "subscribe_event", refuse)
    motor = await TangoDevice(motor_name("move"))
    try:
        assert motor._event_ids == []
        start = await position_mm(motor)
        began = time.monotonic()
        await motor.set_position((start + 2) * q.mm)
        assert time.monotonic() - began < 2.0
        assert await motor.get_state() == "standby"
        assert await position_mm(motor) == pytest.approx(start + 2)
    finally:
        await motor.disconnect()
