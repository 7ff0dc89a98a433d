"""Detectors: effective pixel size, read-only parameters, the wrapped camera, faults."""

import gc
import weakref

import pytest

from concert_core.devices.cameras import dummy as cameras
from concert_core.devices.detectors import dummy
from concert_core.errors import StateError, TransitionNotAllowed, WriteAccessError
from concert_core.quantities import q


async def test_default_detector():
    detector = await dummy.Detector()
    assert await detector.get_magnification() == 1 * q.dimensionless
    assert await detector.get_pixel_width() == 6.5 * q.um
    assert isinstance(detector.camera, cameras.Camera)
    assert detector["pixel_width"].symbol == "µm"


async def test_pixel_size_is_the_sensor_pixel_over_the_magnification():
    camera = await cameras.Camera(width=32, height=16, sensor_pixel_width=6.5 * q.um,
                                  sensor_pixel_height=13 * q.um)
    detector = await dummy.Detector(magnification=10.0, camera=camera)
    assert detector.camera is camera
    assert await detector.get_magnification() == 10 * q.dimensionless
    assert (await detector.get_pixel_width()).magnitude == pytest.approx(0.65)
    assert (await detector.get_pixel_height()).magnitude == pytest.approx(1.3)
    assert (await detector.get_pixel_width()).units == q.um


async def test_detector_parameters_are_read_only():
    detector = await dummy.Detector(magnification=2.0)
    for name, value in (("magnification", 3 * q.dimensionless), ("pixel_width", 1 * q.um),
                        ("pixel_height", 1 * q.um)):
        assert not detector[name].writable
        with pytest.raises(WriteAccessError):
            await detector[name].set(value)
    assert await detector.get_magnification() == 2 * q.dimensionless


async def test_invalid_magnification():
    for magnification in (0.0, -2.0):
        with pytest.raises(ValueError, match="positive"):
            await dummy.Detector(magnification=magnification)


async def test_the_camera_records_through_the_detector():
    camera = await cameras.Camera(width=32, height=16, frame_rate=1000 / q.s,
                                  exposure_time=0.1 * q.ms)
    detector = await dummy.Detector(magnification=4.0, camera=camera)
    async with detector.camera.recording():
        frame = await detector.camera.grab()
    assert frame.shape == (16, 32)


async def test_faults_and_emergency_stop_reach_the_camera():
    camera = await cameras.Camera(width=32, height=16, frame_rate=1000 / q.s)
    detector = await dummy.Detector(camera=camera)
    with pytest.raises(ValueError, match="grab, start"):
        await detector.inject_fault("lens")
    await detector.inject_fault("start")
    with pytest.raises(StateError):
        await camera.start_recording()
    assert await camera.get_state() == "error"
    await detector.clear_fault()
    await camera.start_recording()
    await detector.emergency_stop()
    assert await camera.get_state() == "standby"
    with pytest.raises(TransitionNotAllowed):
        await camera.grab()


async def test_a_dropped_detector_is_garbage_collected():
    detector = await dummy.Detector(magnification=2.0)
    await detector.get_pixel_width()
    ref = weakref.ref(detector)
    camera_ref = weakref.ref(detector.camera)
    del detector
    gc.collect()
    assert ref() is None and camera_ref() is None
