"""Cameras: parameters, state machine, triggering, timing, frames, file camera, memory, faults."""

import asyncio
import gc
import time
import weakref

import numpy as np
import pytest
import tifffile

from concert_core.devices.cameras import dummy
from concert_core.devices.cameras.base import CameraError, FramesExhaustedError
from concert_core.errors import (
    SelectionError,
    SoftLimitError,
    StateError,
    TransitionNotAllowed,
    UnitError,
    WriteAccessError,
)
from concert_core.helpers import ImageWithMetadata
from concert_core.quantities import q


async def make_camera(**kwargs):
    kwargs.setdefault("width", 64)
    kwargs.setdefault("height", 48)
    kwargs.setdefault("frame_rate", 1000 / q.s)
    kwargs.setdefault("exposure_time", 0.1 * q.ms)
    kwargs.setdefault("grab_timeout", 0.2 * q.s)
    kwargs.setdefault("seed", 1)
    return await dummy.Camera(**kwargs)


# -- parameters ---------------------------------------------------------------------------------
async def test_defaults_give_a_working_camera():
    camera = await dummy.Camera()
    assert await camera.get_state() == "standby"
    assert await camera.get_sensor_width() == 640 * q.pixel
    assert await camera.get_sensor_height() == 480 * q.pixel
    assert await camera.get_roi_width() == 640 * q.pixel
    assert (await camera.get_exposure_time()).units == q.s
    assert (await camera.get_frame_rate()).units == 1 / q.s
    assert await camera.get_sensor_pixel_width() == 6.5 * q.um
    assert camera["roi_x0"].symbol == "pixel"
    assert await camera.get_trigger_source() == "AUTO"
    assert await camera.get_buffered() is False
    assert camera.trigger_sources.SOFTWARE == "SOFTWARE"
    assert list(camera.trigger_sources) == ["AUTO", "SOFTWARE", "EXTERNAL"]
    async with camera.recording():
        frame = await camera.grab()
    assert frame.shape == (480, 640) and frame.dtype == np.uint16


async def test_units_and_limits_are_enforced_and_values_kept():
    camera = await make_camera()
    await camera.set_exposure_time(2 * q.ms)
    assert await camera.get_exposure_time() == 0.002 * q.s
    with pytest.raises(UnitError):
        await camera.set_exposure_time(1 * q.mm)
    with pytest.raises(SoftLimitError):
        await camera.set_exposure_time(-1 * q.ms)
    with pytest.raises(SoftLimitError):
        await camera.set_frame_rate(-5 / q.s)
    with pytest.raises(ValueError, match="positive"):
        await camera.set_frame_rate(0 / q.s)
    with pytest.raises(UnitError):
        await camera.set_roi_width(10 * q.mm)
    with pytest.raises(ValueError, match="whole number"):
        await camera.set_roi_width(10.5 * q.pixel)
    with pytest.raises(SelectionError):
        await camera.set_trigger_source("TTL")
    with pytest.raises(WriteAccessError):
        await camera.set_sensor_width(10 * q.pixel)
    with pytest.raises(WriteAccessError):
        await camera.set_frames_grabbed(3)
    with pytest.raises(ValueError):
        await camera.set_buffered("yes")
    assert await camera.get_exposure_time() == 0.002 * q.s
    assert await camera.get_frame_rate() == 1000 / q.s
    assert await camera.get_roi_width() == 64 * q.pixel
    assert await camera.get_trigger_source() == "AUTO"
    assert await camera.get_buffered() is False


async def test_roi_must_stay_on_the_sensor():
    camera = await make_camera()
    with pytest.raises(SoftLimitError):
        await camera.set_roi_x0(1 * q.pixel)  # full width: no room to move
    with pytest.raises(SoftLimitError):
        await camera.set_roi_width(65 * q.pixel)
    with pytest.raises(SoftLimitError):
        await camera.set_roi_height(0 * q.pixel)
    with pytest.raises(SoftLimitError):
        await camera.set_roi_y0(-1 * q.pixel)
    await camera.set_roi_width(20 * q.pixel)
    await camera.set_roi_x0(44 * q.pixel)
    with pytest.raises(SoftLimitError):
        await camera.set_roi_x0(45 * q.pixel)
    with pytest.raises(SoftLimitError):
        await camera.set_roi_width(21 * q.pixel)
    assert await camera["roi_x0"].get_limits() == (0 * q.pixel, 44 * q.pixel)
    assert await camera["roi_width"].get_upper() == 20 * q.pixel
    assert (await camera.get_roi_x0(), await camera.get_roi_width()) == (44 * q.pixel,
                                                                         20 * q.pixel)


async def test_roi_limit_observers_follow_the_other_roi_parameter():
    camera = await make_camera()
    seen = []
    camera["roi_x0"].subscribe_limits(lambda value: seen.append("x0"))
    await camera.set_roi_width(10 * q.pixel)
    assert seen == ["x0"]
    assert await camera["roi_x0"].get_upper() == 54 * q.pixel


# -- state machine ------------------------------------------------------------------------------
async def test_recording_transitions_and_refusals():
    camera = await make_camera()
    with pytest.raises(TransitionNotAllowed):
        await camera.stop_recording()
    with pytest.raises(TransitionNotAllowed):
        await camera.grab()
    with pytest.raises(TransitionNotAllowed):
        await camera.trigger()
    await camera.start_recording()
    assert await camera.get_state() == "recording"
    with pytest.raises(TransitionNotAllowed):
        await camera.start_recording()
    with pytest.raises(TransitionNotAllowed, match="SOFTWARE"):
        await camera.trigger()  # AUTO
    with pytest.raises(TransitionNotAllowed):
        await camera.set_roi_width(10 * q.pixel)
    with pytest.raises(TransitionNotAllowed):
        await camera.set_roi_x0(0 * q.pixel)
    with pytest.raises(TransitionNotAllowed):
        await camera.set_trigger_source("SOFTWARE")
    with pytest.raises(TransitionNotAllowed):
        await camera.set_buffered(True)
    assert await camera.get_roi_width() == 64 * q.pixel
    assert await camera.get_trigger_source() == "AUTO"
    assert await camera.get_state() == "recording"
    await camera.stop_recording()
    assert await camera.get_state() == "standby"


async def test_recording_context_and_state_observers():
    camera = await make_camera()
    states = []
    camera["state"].subscribe(lambda value, new: states.append(new))
    async with camera.recording():
        assert await camera.get_state() == "recording"
        await camera.grab()
    assert await camera.get_state() == "standby"
    assert states == ["recording", "standby"]


# -- frames -------------------------------------------------------------------------------------
async def test_grab_returns_owned_frames_with_metadata():
    camera = await make_camera()
    async with camera.recording():
        first = await camera.grab()
        second = await camera.grab()
    assert isinstance(first, ImageWithMetadata)
    assert not np.shares_memory(first, second)
    kept = first.copy()
    first[:] = 0  # the caller owns it; the camera's next frame is unaffected
    assert second.mean() > 0 and kept.mean() > 0
    meta = second.metadata
    assert set(meta) >= {"index", "exposure_time", "timestamp", "roi", "trigger_source"}
    assert meta["index"] > first.metadata["index"]
    assert meta["exposure_time"] == pytest.approx(1e-4)
    assert meta["roi"] == [0, 0, 64, 48]
    assert meta["trigger_source"] == "AUTO"
    assert abs(meta["timestamp"] - time.time()) < 5
    assert await camera.get_frames_grabbed() == 2


async def test_intensity_scales_with_exposure_time():
    camera = await make_camera(width=256, height=256)
    means = []
    for exposure in (0.1 * q.ms, 0.2 * q.ms):  # the background is at 0.1 ms
        await camera.set_exposure_time(exposure)
        async with camera.recording():
            means.append(float((await camera.grab()).mean()))
    assert means[1] / means[0] == pytest.approx(2, rel=0.03)


async def test_frames_are_noisy_but_simulate_false_returns_the_background():
    background = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    noisy = await make_camera(background=background.astype(float) + 1000)
    async with noisy.recording():
        a, b = await noisy.grab(), await noisy.grab()
    difference = a.astype(float) - b.astype(float)
    assert difference.std() == pytest.approx(np.sqrt(2 * a.mean()), rel=0.2)  # Poisson-like
    plain = await make_camera(background=background, simulate=False)
    async with plain.recording():
        frame = await plain.grab()
        np.testing.assert_array_equal(frame, background)
        frame[:] = 0  # a copy: the camera's background is untouched
        np.testing.assert_array_equal(await plain.grab(), background)
    assert background[1, 1] == 65


async def test_roi_crops_the_frame():
    background = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    camera = await make_camera(background=background, simulate=False)
    await camera.set_roi_width(20 * q.pixel)
    await camera.set_roi_height(10 * q.pixel)
    await camera.set_roi_x0(5 * q.pixel)
    await camera.set_roi_y0(30 * q.pixel)
    async with camera.recording():
        frame = await camera.grab()
    assert frame.shape == (10, 20)
    np.testing.assert_array_equal(frame, background[30:40, 5:25])
    assert frame.metadata["roi"] == [5, 30, 20, 10]
    simulated = await make_camera()
    await simulated.set_roi_width(16 * q.pixel)
    await simulated.set_roi_height(8 * q.pixel)
    async with simulated.recording():
        assert (await simulated.grab()).shape == (8, 16)


async def test_convert_is_applied_to_every_frame():
    background = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    camera = await make_camera(background=background, simulate=False)
    camera.convert = np.fliplr
    async with camera.recording():
        frame = await camera.grab()
    np.testing.assert_array_equal(frame, np.fliplr(background))
    assert frame.metadata["trigger_source"] == "AUTO"
    camera.convert = lambda image: np.asarray(image) * 2.0
    async with camera.recording():
        frame = await camera.grab()
    assert isinstance(frame, ImageWithMetadata) and frame.metadata["roi"] == [0, 0, 64, 48]
    np.testing.assert_array_equal(frame, background * 2.0)


async def test_dtype_and_float_frames():
    camera = await make_camera(dtype="float32")
    async with camera.recording():
        frame = await camera.grab()
    assert frame.dtype == np.float32 and frame.mean() > 0
    with pytest.raises(ValueError):
        await dummy.Camera(dtype="complex64")
    with pytest.raises(ValueError):
        await dummy.Camera(background=np.zeros(5))


# -- timing -------------------------------------------------------------------------------------
async def test_frame_rate_is_honoured():
    camera = await make_camera(frame_rate=50 / q.s, exposure_time=1 * q.ms)
    async with camera.recording():
        first = await camera.grab()
        began = time.monotonic()
        for _ in range(5):
            frame = await camera.grab()
        elapsed = time.monotonic() - began
    # Each grab waited for a new frame, 20 ms apart. A stalled test process skips frames
    # (a grab returns the newest): count the periods by index, and check that as many
    # passed on the clock, neither fewer (too fast) nor more (too slow).
    periods = frame.metadata["index"] - first.metadata["index"]
    assert periods >= 5
    assert frame.metadata["timestamp"] - first.metadata["timestamp"] == pytest.approx(
        periods * 0.02, abs=1e-5)
    assert periods * 0.02 - 0.025 <= elapsed <= periods * 0.02 + 0.05


async def test_exposure_longer_than_the_period_limits_the_rate():
    camera = await make_camera(frame_rate=1000 / q.s, exposure_time=20 * q.ms)
    async with camera.recording():
        await camera.grab()
        began = time.monotonic()
        for _ in range(3):
            await camera.grab()
        assert time.monotonic() - began >= 0.05


async def test_unbuffered_grab_returns_the_newest_frame_buffered_all_in_order():
    camera = await make_camera(frame_rate=200 / q.s, ring_size=100)
    async with camera.recording():
        await asyncio.sleep(0.1)
        frame = await camera.grab()
    assert frame.metadata["index"] >= 10  # older frames were dropped
    await camera.set_buffered(True)
    async with camera.recording():
        await asyncio.sleep(0.1)
        indices = [(await camera.grab()).metadata["index"] for _ in range(10)]
    assert indices == list(range(10))


async def test_changing_the_frame_rate_while_recording_restarts_the_clock():
    camera = await make_camera(frame_rate=20 / q.s)
    async with camera.recording():
        await camera.grab()
        await camera.set_frame_rate(500 / q.s)
        began = time.monotonic()
        for _ in range(5):
            await camera.grab()
        assert time.monotonic() - began < 0.2


async def test_stream_yields_frames_until_recording_stops():
    camera = await make_camera(frame_rate=200 / q.s)
    frames = []

    async def consume():
        async for frame in camera.stream():
            frames.append(frame)

    await camera.start_recording()
    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    await camera.stop_recording()
    await asyncio.wait_for(consumer, 1)
    assert 5 <= len(frames) <= 40
    assert [f.metadata["index"] for f in frames] == sorted(f.metadata["index"] for f in frames)
    assert [f async for f in camera.stream()] == []  # not recording: nothing


async def test_frame_counter_is_announced():
    camera = await make_camera(frame_rate=2000 / q.s)
    seen = []
    camera["frames_grabbed"].subscribe(lambda value, new: seen.append(new))
    async with camera.recording():
        for _ in range(20):
            await camera.grab()
    await asyncio.sleep(0.08)  # the last value follows within 50 ms
    assert seen[0] == 0 and seen[-1] == 20
    assert len(seen) < 20  # throttled
    assert await camera.get_frames_grabbed() == 20


# -- triggering ---------------------------------------------------------------------------------
async def test_software_trigger_gives_exactly_one_frame_per_trigger():
    camera = await make_camera(exposure_time=30 * q.ms, grab_timeout=0.1 * q.s)
    await camera.set_trigger_source(camera.trigger_sources.SOFTWARE)
    async with camera.recording():
        began = time.monotonic()
        await camera.trigger()
        frame = await camera.grab()
        assert time.monotonic() - began >= 0.025  # waited for the exposure
        assert frame.metadata["trigger_source"] == "SOFTWARE"
        await camera.set_exposure_time(1 * q.ms)
        for _ in range(3):
            await camera.trigger()
        indices = [(await camera.grab()).metadata["index"] for _ in range(3)]
        assert indices == [1, 2, 3]
        began = time.monotonic()
        with pytest.raises(CameraError, match="trigger"):
            await camera.grab()  # no trigger pending: waits grab_timeout, then fails clearly
        assert time.monotonic() - began >= 0.09
        assert await camera.get_state() == "recording"


async def test_grab_waiting_for_a_trigger_gets_a_later_trigger():
    camera = await make_camera(grab_timeout=1 * q.s)
    await camera.set_trigger_source("SOFTWARE")
    async with camera.recording():
        grab = asyncio.create_task(camera.grab())
        await asyncio.sleep(0.02)
        assert not grab.done()
        await camera.trigger()
        frame = await asyncio.wait_for(grab, 1)
    assert frame.metadata["index"] == 0


async def test_external_trigger():
    camera = await make_camera(grab_timeout=0.05 * q.s)
    await camera.set_trigger_source("EXTERNAL")
    assert await camera.external_trigger() is False  # not recording: ignored
    async with camera.recording():
        with pytest.raises(TransitionNotAllowed):
            await camera.trigger()
        assert await camera.external_trigger() is True
        frame = await camera.grab()
        assert frame.metadata["trigger_source"] == "EXTERNAL"
        with pytest.raises(CameraError, match="external"):
            await camera.grab()
    await camera.set_trigger_source("AUTO")
    async with camera.recording():
        assert await camera.external_trigger() is False


# -- faults, emergency stop, garbage collection -------------------------------------------------
async def test_grab_fault_drives_the_camera_to_error():
    camera = await make_camera()
    with pytest.raises(ValueError, match="grab, start"):
        await camera.inject_fault("smoke")
    await camera.inject_fault("grab")
    await camera.start_recording()
    with pytest.raises(StateError, match="injected"):
        await camera.grab()
    assert await camera.get_state() == "error"
    assert "injected" in camera["state"].describe()
    with pytest.raises(TransitionNotAllowed):
        await camera.grab()
    with pytest.raises(TransitionNotAllowed):
        await camera.start_recording()
    await camera.clear_fault()
    assert await camera.get_state() == "standby"
    async with camera.recording():
        await camera.grab()


async def test_start_fault():
    camera = await make_camera()
    await camera.inject_fault("start")
    with pytest.raises(StateError, match="start"):
        await camera.start_recording()
    assert await camera.get_state() == "error"
    await camera.clear_fault()
    await camera.start_recording()
    assert await camera.get_state() == "recording"
    await camera.stop_recording()


async def test_clear_fault_drops_pending_faults():
    camera = await make_camera()
    await camera.inject_fault("grab")
    await camera.clear_fault()
    async with camera.recording():
        await camera.grab()
    assert await camera.get_state() == "standby"


async def test_emergency_stop_ends_recording_and_wakes_a_waiting_grab():
    camera = await make_camera(grab_timeout=5 * q.s)
    await camera.set_trigger_source("SOFTWARE")
    await camera.start_recording()
    grab = asyncio.create_task(camera.grab())
    await asyncio.sleep(0.02)
    await camera.emergency_stop()
    with pytest.raises(CameraError, match="stopped"):
        await asyncio.wait_for(grab, 1)
    assert await camera.get_state() == "standby"
    await camera.emergency_stop()  # harmless in standby
    assert await camera.get_state() == "standby"


async def test_stop_recording_wakes_a_waiting_stream():
    camera = await make_camera(frame_rate=1 / q.s)
    await camera.start_recording()
    frames = []

    async def consume():
        async for frame in camera.stream():
            frames.append(frame)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await camera.stop_recording()
    await asyncio.wait_for(consumer, 1)
    assert frames == []


async def test_a_dropped_camera_is_garbage_collected():
    camera = await make_camera(frame_rate=500 / q.s)
    seen = []
    camera["frames_grabbed"].subscribe(lambda value, new: seen.append(new))
    async with camera.recording():
        for _ in range(3):
            await camera.grab()
    ref = weakref.ref(camera)
    del camera
    gc.collect()
    assert ref() is None
    await asyncio.sleep(0.06)  # a pending counter announcement finds the camera gone


# -- camera memory ------------------------------------------------------------------------------
async def test_buffered_camera_reads_out_what_it_recorded():
    camera = await dummy.BufferedCamera(width=32, height=16, frame_rate=200 / q.s,
                                        exposure_time=0.1 * q.ms, buffer_size=10)
    assert await camera.get_frames_in_buffer() == 0
    with pytest.raises(TransitionNotAllowed):
        await camera.stop_readout()
    async with camera.recording():
        with pytest.raises(TransitionNotAllowed):
            await camera.start_readout()
        await asyncio.sleep(0.1)
    stored = await camera.get_frames_in_buffer()
    assert stored == 10  # ~20 recorded, the newest 10 kept
    async with camera.readout():
        assert await camera.get_state() == "readout"
        frames = [await camera.grab() for _ in range(stored)]
        with pytest.raises(FramesExhaustedError):
            await camera.grab()
    assert await camera.get_state() == "standby"
    indices = [frame.metadata["index"] for frame in frames]
    assert indices == list(range(indices[0], indices[0] + 10)) and indices[0] >= 5
    assert all(frame.shape == (16, 32) for frame in frames)
    stamps = [frame.metadata["timestamp"] for frame in frames]
    assert np.allclose(np.diff(stamps), 0.005, atol=1e-5)


async def test_buffered_camera_stores_triggered_frames_and_emergency_stop_ends_readout():
    camera = await dummy.BufferedCamera(width=32, height=16, buffer_size=5)
    await camera.set_trigger_source("SOFTWARE")
    async with camera.recording():
        for _ in range(3):
            await camera.trigger()
        await asyncio.sleep(0.01)
    assert await camera.get_frames_in_buffer() == 3
    await camera.start_readout()
    assert (await camera.grab()).metadata["index"] == 0
    await camera.emergency_stop()
    assert await camera.get_state() == "standby"
    ref = weakref.ref(camera)
    del camera
    gc.collect()
    assert ref() is None


# -- file camera --------------------------------------------------------------------------------
@pytest.fixture
def tiff_sequence(tmp_path):
    frames = [np.full((6, 8), value, dtype=np.uint16) + np.arange(8, dtype=np.uint16)
              for value in (100, 200, 300, 400)]
    tifffile.imwrite(tmp_path / "a_000.tif", frames[0])
    tifffile.imwrite(tmp_path / "a_001.tif", np.stack(frames[1:3]))  # two pages
    tifffile.imwrite(tmp_path / "a_002.tiff", frames[3])
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, frames


async def test_file_camera_serves_the_sequence_in_order(tiff_sequence):
    directory, frames = tiff_sequence
    camera = await dummy.FileCamera(str(directory), frame_rate=1000 / q.s)
    assert camera.sequence_length == 4
    assert await camera.get_sensor_width() == 8 * q.pixel
    async with camera.recording():
        served = [await camera.grab() for _ in range(6)]  # loops
    for frame, expected in zip(served, frames + frames[:2], strict=True):
        np.testing.assert_array_equal(frame, expected)
    assert served[1].metadata["file"].endswith("a_001.tif") and served[2].metadata["page"] == 1
    assert served[0].dtype == np.uint16


async def test_file_camera_without_loop_ends_with_a_clear_error(tiff_sequence):
    directory, frames = tiff_sequence
    camera = await dummy.FileCamera(str(directory / "a_00[01].tif"), loop=False,
                                    frame_rate=1000 / q.s)
    assert camera.sequence_length == 3
    await camera.set_roi_width(4 * q.pixel)
    await camera.set_roi_x0(2 * q.pixel)
    async with camera.recording():
        streamed = [frame async for frame in camera.stream()]
        assert len(streamed) == 3
        np.testing.assert_array_equal(streamed[2], frames[2][:, 2:6])
        with pytest.raises(FramesExhaustedError, match="reset"):
            await camera.grab()
        await camera.reset()
        np.testing.assert_array_equal(await camera.grab(), frames[0][:, 2:6])


async def test_file_camera_refuses_a_path_without_tiffs(tmp_path):
    with pytest.raises(ValueError, match="no TIFF"):
        await dummy.FileCamera(str(tmp_path))
    with pytest.raises(ValueError, match="no TIFF"):
        await dummy.FileCamera(str(tmp_path / "*.tif"))
