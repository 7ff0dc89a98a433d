"""Small, fast local dummy devices for the experiment tests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from concert_core.devices.cameras.dummy import Camera
from concert_core.devices.motors.dummy import (
    ContinuousLinearMotor,
    ContinuousRotationMotor,
    LinearMotor,
)
from concert_core.devices.shutters.dummy import Shutter
from concert_core.devices.storagerings.dummy import StorageRing
from concert_core.devices.xraytubes.dummy import XRayTube
from concert_core.quantities import q


@pytest.fixture
async def devices() -> SimpleNamespace:
    """64x64 camera with 1 ms exposure, fast motors, a quick shutter, tube and ring."""
    return SimpleNamespace(
        camera=await Camera(width=64, height=64, exposure_time=1 * q.ms, frame_rate=500 / q.s,
                            seed=1),
        flat_motor=await LinearMotor(speed=10_000 * q.mm / q.s),
        tomo_motor=await ContinuousRotationMotor(speed=100_000 * q.deg / q.s),
        vertical_motor=await ContinuousLinearMotor(speed=10_000 * q.mm / q.s),
        stepping_motor=await LinearMotor(speed=10_000 * q.mm / q.s),
        shutter=await Shutter(motion_time=1 * q.ms),
        ring=await StorageRing(),
        tube=await XRayTube(ramp_time=1 * q.ms),
    )
