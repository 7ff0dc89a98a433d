"""The trigger line between two Tango servers: a ConcertMotor's trigger_output pulses a
ConcertCamera's trigger_input during a StepScan, driven through remote TangoDevices."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import pytest

from concert_core.dataplane import ImageReceiver, TriggerError
from concert_core.errors import SoftLimitError
from concert_core.quantities import q
from concert_core.remote import TangoDevice

pytestmark = pytest.mark.tango

BIN = Path(sys.executable).parent
INSTANCE = "t4trigger"
SCAN_MOTOR = "t4trig/motor/scan"
REFUSING_MOTOR = "t4trig/motor/refuse"
CAMERA = "t4trig/camera/1"
NUM = 10


@pytest.fixture(scope="module")
def servers(tango_servers) -> None:
    """A motor server (two fast rotation motors) and a camera server (a small camera)."""
    motor_args = {"concert_args": [json.dumps({"speed": "36000 deg/s", "position": "5 deg"})]}
    camera_args = {"concert_args": [json.dumps({"width": 32, "height": 16,
                                                "exposure_time": "0.1 ms"})]}
    tango_servers.start_all([
        tango_servers.prepare(
            [BIN / "ConcertMotor", INSTANCE], "ConcertMotor", INSTANCE,
            {"RotationMotor": [SCAN_MOTOR, REFUSING_MOTOR]},
            {SCAN_MOTOR: motor_args, REFUSING_MOTOR: motor_args}, timeout=60),
        tango_servers.prepare(
            [BIN / "ConcertCamera", INSTANCE], "ConcertCamera", INSTANCE,
            {"Camera": [CAMERA]}, {CAMERA: camera_args}, timeout=60),
    ])


async def degrees(motor) -> float:
    return float((await motor.get_position()).to(q.deg).magnitude)


@contextlib.asynccontextmanager
async def scan_motor_and_camera():
    """The scan motor and the camera; afterwards the camera is unplugged, not recording and
    in trigger source AUTO again, and both proxies are disconnected."""
    motor = await TangoDevice(SCAN_MOTOR)
    camera = await TangoDevice(CAMERA)
    try:
        yield motor, camera
    finally:
        if await camera.get_state() == "recording":
            await camera.stop_recording()
        await camera.set_trigger_input("")
        await camera.set_trigger_source("AUTO")
        await motor.disconnect()
        await camera.disconnect()


async def test_step_scan_triggers_the_camera_across_servers(servers) -> None:
    async with scan_motor_and_camera() as (motor, camera):
        await motor.set_trigger_output("tcp://127.0.0.1:0")
        endpoint = await motor.get_trigger_output()
        assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":0")
        await camera.set_trigger_input(endpoint)
        assert await camera.get_trigger_input() == endpoint
        await camera.set_trigger_source("EXTERNAL")
        await camera.set_data_endpoint("tcp://127.0.0.1:0")
        start = await degrees(motor)
        async with ImageReceiver(await camera.get_data_endpoint(), timeout=10) as receiver:
            await camera.start_recording()
            # the next NUM frames, sent to the receiver (it returns when recording stops)
            sending = asyncio.ensure_future(camera.grab_send(NUM))
            await motor.step_scan(1 * q.deg, NUM, 1 * q.ms)
            assert await motor.get_state() == "standby"
            frames = [frame async for frame in receiver.frames()]
            assert len(frames) == NUM and receiver.complete
            assert all(frame.metadata["trigger_source"] == "EXTERNAL" for frame in frames)
            assert await camera.get_frames_grabbed() == NUM
            await camera.stop_recording()
            await sending
        assert await degrees(motor) == pytest.approx(start + NUM - 1)


async def test_step_scan_refusals_over_tango(servers) -> None:
    motor = await TangoDevice(REFUSING_MOTOR)
    position = motor["position"]
    try:
        start = await degrees(motor)
        await position.set_upper((start + 3) * q.deg)
        await motor.set_trigger_output("tcp://127.0.0.1:0")
        with pytest.raises(SoftLimitError):  # p0 + 9 deg lies beyond the limit
            await motor.step_scan(1 * q.deg, NUM, 0 * q.s)
        await motor.set_trigger_output("")
        with pytest.raises(TriggerError, match="trigger_output"):
            await motor.step_scan(1 * q.deg, 2, 0 * q.s)
        assert await degrees(motor) == pytest.approx(start)
        assert await motor.get_state() == "standby"
    finally:
        await position.set_upper(None)
        await motor.disconnect()


async def test_a_replugged_camera_gets_the_first_pulse_across_servers(servers) -> None:
    """Unplugged and plugged in again through Tango, the camera server's line gets the
    pulse of a one-step scan started right afterwards (a lost pulse would end in a grab
    timeout). The race this guards is provoked in-process in test_trigger_line.py."""
    async with scan_motor_and_camera() as (motor, camera):
        await motor.set_trigger_output("tcp://127.0.0.1:0")
        endpoint = await motor.get_trigger_output()
        await camera.set_trigger_source("EXTERNAL")
        await camera.set_data_endpoint("tcp://127.0.0.1:0")
        data = await camera.get_data_endpoint()
        await camera.set_trigger_input(endpoint)
        for _ in range(5):
            await camera.set_trigger_input("")
            await camera.set_trigger_input(endpoint)
            async with ImageReceiver(data, timeout=10) as receiver:
                await camera.start_recording()
                sending = asyncio.ensure_future(camera.grab_send(1))
                await motor.step_scan(1 * q.deg, 1, 0 * q.s)
                frames = [frame async for frame in receiver.frames()]
                await camera.stop_recording()
                await sending
            assert len(frames) == 1 and receiver.complete
