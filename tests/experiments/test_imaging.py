"""Imaging experiments with local dummy devices: counts, order, metadata, files, cancel."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest
import tifffile

from concert_core.errors import SoftLimitError, StateError, TransitionNotAllowed
from concert_core.quantities import q
from experiments import Accumulator, ImageWriter, frames, synchrotron, xraytube
from experiments.imaging import (
    Radiography,
    tomo_angular_step,
    tomo_max_speed,
    tomo_projections_number,
)
from walkers import DirectoryWalker, HDF5Walker, read_hdf5


def metadata(accumulator: Accumulator, experiment, name: str) -> list[dict]:
    return [frame.metadata for frame in accumulator.items[experiment.get_acquisition(name)]]


def test_tomo_helpers():
    step = tomo_angular_step(1000)
    assert step.to(q.rad).magnitude == pytest.approx(np.arctan(2 / 1000))
    assert tomo_projections_number(1000) == int(np.ceil(np.pi / np.arctan(2 / 1000)))
    speed = tomo_max_speed(1000 * q.pixel, 100 / q.s)
    assert speed.to(q.deg / q.s).magnitude == pytest.approx(step.to(q.deg).magnitude * 100)
    with pytest.raises(ValueError):
        tomo_angular_step(0)


async def test_frames_restores_trigger_source(devices):
    camera = devices.camera
    got = [frame async for frame in frames(3, camera)]
    assert len(got) == 3 and got[0].shape == (64, 64)
    assert await camera.get_trigger_source() == "AUTO"
    assert await camera.get_state() == "standby"


async def test_abstract_experiment_needs_a_source(devices):
    experiment = await Radiography(None, devices.flat_motor, 0 * q.mm, 10 * q.mm,
                                   devices.camera, num_flats=1, num_darks=1, num_projections=1)
    with pytest.raises(NotImplementedError):
        await experiment.run()
    assert await experiment.get_state() == "error"


async def test_radiography_synchrotron(devices):
    experiment = await synchrotron.Radiography(
        None, devices.flat_motor, 1 * q.mm, 10 * q.mm, devices.camera, devices.shutter,
        num_flats=3, num_darks=2, num_projections=4, storage_ring=devices.ring)
    shutter_states = []

    async def watch(producer):
        async for _ in producer:
            shutter_states.append(await devices.shutter.get_state())

    from experiments import Consumer

    Consumer(experiment.acquisitions, watch)
    accumulator = Accumulator(experiment.acquisitions)
    await experiment.run()
    counts = {a.name: len(items) for a, items in accumulator.items.items()}
    assert counts == {"darks": 2, "flats": 3, "radios": 4}
    assert shutter_states == ["closed"] * 2 + ["open"] * 7
    radios = metadata(accumulator, experiment, "radios")
    assert [m["index"] for m in radios] == [0, 1, 2, 3]
    assert all(m["acquisition"] == "radios" and m["exposure_time"] == pytest.approx(1e-3)
               and 150 < m["ring_current"] <= 200 for m in radios)
    assert await devices.flat_motor.get_position() == 1 * q.mm
    assert await devices.shutter.get_state() == "closed"
    assert await devices.camera.get_state() == "standby"


async def test_sample_exposure_leaves_a_shutter_that_is_there_and_refuses_a_broken_one(
        devices, caplog):
    experiment = await synchrotron.Radiography(
        None, devices.flat_motor, 1 * q.mm, 10 * q.mm, devices.camera, devices.shutter,
        num_flats=1, num_darks=1, num_projections=1)
    shutter = devices.shutter
    with caplog.at_level(logging.DEBUG, logger="experiments.synchrotron"):
        await experiment.stop_sample_exposure()  # closed already: nothing to do
    assert await shutter.get_state() == "closed"
    notes = [record.getMessage() for record in caplog.records
             if record.name == "experiments.synchrotron"]
    assert len(notes) == 1 and notes[0].startswith(f"shutter {shutter} already closed, its "
                                                   "refusal ignored: ")
    await experiment.start_sample_exposure()
    await experiment.start_sample_exposure()  # open already
    assert await shutter.get_state() == "open"
    await experiment.stop_sample_exposure()
    assert await shutter.get_state() == "closed"
    await shutter.inject_fault("jam")
    with pytest.raises(StateError):
        await experiment.start_sample_exposure()
    assert await shutter.get_state() == "error"
    with pytest.raises(TransitionNotAllowed):  # neither there nor allowed to move
        await experiment.stop_sample_exposure()
    await shutter.reset()


async def test_camera_settings_go_back_while_the_finish_hook_runs(devices):
    experiment = await synchrotron.Radiography(
        None, devices.flat_motor, 1 * q.mm, 10 * q.mm, devices.camera, devices.shutter,
        num_flats=1, num_darks=1, num_projections=2)
    camera, events = devices.camera, []
    write_values, stop = camera.write_values, experiment.stop_sample_exposure

    async def slow_write(values):
        events.append(("write", dict(values)))
        await asyncio.sleep(0.05)
        await write_values(values)
        events.append(("written", dict(values)))

    async def close_shutter():
        events.append(("finish", None))
        await stop()

    camera.write_values, experiment.stop_sample_exposure = slow_write, close_shutter
    await experiment.run()
    assert await camera.get_trigger_source() == "AUTO"
    # Each acquisition: set up (SOFTWARE), restore (AUTO) during its finish hook.
    restores = [i for i, event in enumerate(events) if event == ("write", {"trigger_source":
                                                                          "AUTO"})]
    assert len(restores) == 3
    for index in restores[1:]:  # flats, radios (the darks' finish hook does nothing)
        assert events[index + 1] == ("finish", None)  # before the restore was written
        assert events[index + 2] == ("written", {"trigger_source": "AUTO"})

    # The flats' restore fails: their finish hook runs all the same (the shutter is also
    # closed by the run's cleanup, so the hook itself is watched).
    restores, finish_flats = [], experiment._finish_flats

    async def failing_write(values):
        if values == {"trigger_source": "AUTO"}:
            restores.append(values)
            if len(restores) == 2:
                raise RuntimeError("camera gone")
        await write_values(values)

    async def watched_finish_flats():
        events.append(("finish flats", None))
        await finish_flats()

    camera.write_values, experiment._finish_flats = failing_write, watched_finish_flats
    events.clear()
    with pytest.raises(RuntimeError, match="camera gone"):
        await experiment.run()
    assert len(restores) == 2  # the darks' went back, the flats' failed
    assert events.count(("finish flats", None)) == 1
    assert await devices.shutter.get_state() == "closed"


async def test_wait_grabbed_needs_no_count_once_the_send_ended_well():
    """Once ``grab_send(n)`` has ended well all n frames were grabbed: the wait answers n
    without reading the camera's counter; a failed send raises its error."""
    from concert_core.dataplane import ImageReceiver
    from concert_core.devices.cameras.base import CameraError
    from concert_core.devices.cameras.dummy import Camera
    from experiments.imaging import _wait_grabbed

    camera = await Camera(width=16, height=8, frame_rate=1000 / q.s)
    await camera.set_data_endpoint("tcp://127.0.0.1:0")
    reads = []
    get_frames_grabbed = camera.get_frames_grabbed

    async def counted() -> int:
        reads.append(await get_frames_grabbed())
        return reads[-1]

    camera.get_frames_grabbed = counted
    async with ImageReceiver(await camera.get_data_endpoint(), timeout=5) as receiver:
        sending = camera.grab_send(6)
        assert await _wait_grabbed(camera, sending, 2, 6) >= 2
        assert reads  # while it sends, the counter is read
        frames_ = [frame async for frame in receiver.frames()]
        await sending
        reads.clear()
        assert await _wait_grabbed(camera, sending, 6, 6) == 6 and reads == []
        assert len(frames_) == 6
    await camera.set_data_endpoint("")
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(CameraError("sensor gone"))
    with pytest.raises(CameraError, match="sensor gone"):
        await _wait_grabbed(camera, failed, 1, 6)


async def test_ring_current_is_read_again_once_older_than_its_max_age(devices):
    reads = 0
    get_current = devices.ring.get_current

    async def counted():
        nonlocal reads
        reads += 1
        return await get_current()

    devices.ring.get_current = counted
    experiment = await synchrotron.Radiography(
        None, devices.flat_motor, 1 * q.mm, 10 * q.mm, devices.camera, devices.shutter,
        num_flats=2, num_darks=2, num_projections=4, storage_ring=devices.ring)
    accumulator = Accumulator(experiment.acquisitions)
    experiment.RING_CURRENT_MAX_AGE = 3600  # one reading serves every frame of the run
    await experiment.run()
    assert reads == 1
    experiment.RING_CURRENT_MAX_AGE = 0  # every frame reads it
    await experiment.run()
    assert reads == 1 + 8
    radios = metadata(accumulator, experiment, "radios")
    assert all(150 < m["ring_current"] <= 200 for m in radios)


async def test_stepped_tomography_angles_order_and_swap(devices):
    experiment = await synchrotron.SteppedTomography(
        None, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=2, num_darks=2, num_projections=6,
        angular_range=180 * q.deg, start_angle=10 * q.deg)
    assert await experiment.get_angular_step() == 30 * q.deg
    order = []

    async def record(producer):
        async for frame in producer:
            order.append(frame.metadata["acquisition"])

    from experiments import Consumer

    Consumer(experiment.acquisitions, record)
    accumulator = Accumulator(experiment.acquisitions)
    await experiment.run()
    assert order == ["darks"] * 2 + ["flats"] * 2 + ["radios"] * 6
    angles = [m["rotation_angle"] for m in metadata(accumulator, experiment, "radios")]
    assert angles == pytest.approx([10, 40, 70, 100, 130, 160])
    assert await devices.tomo_motor.get_position() == 160 * q.deg
    # flats first, then darks
    experiment.swap(experiment.darks, experiment.flats)
    order.clear()
    await experiment.run()
    assert order[:4] == ["flats"] * 2 + ["darks"] * 2


async def test_stepped_tomography_hardware_trigger(devices, tmp_path):
    # The motor steps and pulses the camera (EXTERNAL): every projection at its angle,
    # written; the camera's trigger source and input are restored afterwards.
    walker = await HDF5Walker(str(tmp_path / "data.h5"))
    experiment = await synchrotron.SteppedTomography(
        walker, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=2, num_darks=2, num_projections=6,
        start_angle=10 * q.deg, storage_ring=devices.ring, hardware_trigger=True)
    assert await experiment.get_hardware_trigger() is True
    ImageWriter(experiment.acquisitions, walker)
    await experiment.run()
    await walker.close()
    data, meta = read_hdf5(str(tmp_path / "data.h5"), "/scan_0001/radios/frames")
    assert data.shape == (6, 64, 64)
    assert [m["rotation_angle"] for m in meta] == pytest.approx([10, 40, 70, 100, 130, 160])
    assert [m["index"] for m in meta] == list(range(6))
    assert all("ring_current" in m for m in meta)
    assert await devices.tomo_motor.get_position() == 160 * q.deg
    assert (await devices.tomo_motor.get_trigger_output()).startswith("tcp://127.0.0.1:")
    camera = devices.camera
    assert await camera.get_trigger_input() == ""
    assert await camera.get_trigger_source() == "AUTO"
    assert await camera.get_state() == "standby"


async def test_hardware_trigger_refusals(devices):
    experiment = await synchrotron.SteppedTomography(
        None, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=1, num_darks=1, num_projections=4)
    with pytest.raises(ValueError):
        await experiment.set_hardware_trigger("yes")
    assert await experiment.get_hardware_trigger() is False
    spiral = await synchrotron.SteppedSpiralTomography(
        None, devices.flat_motor, devices.tomo_motor, devices.vertical_motor, 0 * q.mm,
        10 * q.mm, devices.camera, devices.shutter, 0 * q.mm, 1 * q.mm, 1 * q.mm,
        num_flats=1, num_darks=1, num_projections=4)
    with pytest.raises(ValueError, match="two motors"):
        await spiral.set_hardware_trigger(True)
    assert await spiral.get_hardware_trigger() is False


async def test_hardware_trigger_scan_failure(devices):
    # A step scan the motor refuses (its soft limit is inside the range) fails the run
    # with the motor's error; the camera stops and gets its wiring back.
    motor = devices.tomo_motor
    await motor["position"].set_upper(100 * q.deg)
    experiment = await synchrotron.SteppedTomography(
        None, devices.flat_motor, motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=1, num_darks=1, num_projections=6, hardware_trigger=True)
    with pytest.raises(SoftLimitError, match="limit"):
        await experiment.run()
    assert await experiment.get_state() == "error"
    assert await motor.get_position() == 0 * q.deg
    camera = devices.camera
    assert await camera.get_state() == "standby"
    assert await camera.get_trigger_source() == "AUTO"
    assert await camera.get_trigger_input() == ""
    assert await devices.shutter.get_state() == "closed"


async def test_continuous_tomography(devices):
    experiment = await synchrotron.ContinuousTomography(
        None, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=1, num_darks=1, num_projections=10)
    assert (await experiment.get_velocity()).to(q.deg / q.s).magnitude == pytest.approx(9000)
    moving = []

    async def watch(producer):
        async for _ in producer:
            moving.append(await devices.tomo_motor.get_state())

    from experiments import Consumer

    Consumer([experiment.radios], watch)
    accumulator = Accumulator(experiment.acquisitions)
    await experiment.run()
    radios = metadata(accumulator, experiment, "radios")
    assert len(radios) == 10
    assert [m["rotation_angle"] for m in radios] == pytest.approx(np.arange(10) * 18)
    assert {m["trigger_source"] for m in radios} == {"AUTO"}
    assert set(moving) == {"moving"}
    assert await devices.tomo_motor.get_state() == "standby"
    assert (await devices.tomo_motor.get_velocity()).magnitude == 0
    assert await devices.camera.get_trigger_source() == "AUTO"


async def test_stepped_spiral_tomography(devices):
    experiment = await synchrotron.SteppedSpiralTomography(
        None, devices.flat_motor, devices.tomo_motor, devices.vertical_motor, 0 * q.mm,
        10 * q.mm, devices.camera, devices.shutter, start_position_vertical=1 * q.mm,
        sample_height=3 * q.mm, vertical_shift_per_tomogram=1 * q.mm, num_flats=1,
        num_darks=1, num_projections=4)
    assert await experiment.get_num_tomograms() == 3
    accumulator = Accumulator(experiment.acquisitions)
    await experiment.run()
    radios = metadata(accumulator, experiment, "radios")
    assert len(radios) == 12
    assert radios[5]["rotation_angle"] == pytest.approx(225)
    assert radios[5]["vertical_position"] == pytest.approx(1 + 5 * 0.25)
    assert (await devices.vertical_motor.get_position()).magnitude == pytest.approx(3.75)


async def test_continuous_spiral_tomography(devices):
    experiment = await synchrotron.ContinuousSpiralTomography(
        None, devices.flat_motor, devices.tomo_motor, devices.vertical_motor, 0 * q.mm,
        10 * q.mm, devices.camera, devices.shutter, start_position_vertical=0 * q.mm,
        sample_height=2 * q.mm, vertical_shift_per_tomogram=1 * q.mm, num_flats=1,
        num_darks=1, num_projections=5)
    assert (await experiment.get_vertical_velocity()).to(q.mm / q.s).magnitude == \
        pytest.approx(100)
    accumulator = Accumulator(experiment.acquisitions)
    await experiment.run()
    radios = metadata(accumulator, experiment, "radios")
    assert len(radios) == 10
    assert radios[-1]["vertical_position"] == pytest.approx(1.8)
    assert await devices.vertical_motor.get_state() == "standby"
    assert (await devices.vertical_motor.get_position()).magnitude > 0


async def test_grating_interferometry_stepping(devices):
    experiment = await synchrotron.GratingInterferometryStepping(
        None, devices.camera, devices.shutter, devices.flat_motor, devices.stepping_motor,
        flat_position=10 * q.mm, radio_position=0 * q.mm, grating_period=2 * q.um,
        num_darks=2, stepping_start_position=0 * q.um, num_periods=2,
        num_steps_per_period=4, propagation_distance=100 * q.mm)
    accumulator = Accumulator(experiment.acquisitions)
    await experiment.run()
    reference = metadata(accumulator, experiment, "reference_stepping")
    assert len(metadata(accumulator, experiment, "darks")) == 2
    assert [m["stepping_position"] for m in reference] == pytest.approx(np.arange(8) * 0.5)
    assert len(metadata(accumulator, experiment, "object_stepping")) == 8


@pytest.mark.parametrize("name", ["Radiography", "SteppedTomography", "ContinuousTomography"])
async def test_xraytube_variants(devices, name):
    cls = getattr(xraytube, name)
    if name == "Radiography":
        experiment = await cls(None, devices.flat_motor, 0 * q.mm, 5 * q.mm, devices.camera,
                               devices.tube, num_flats=1, num_darks=1, num_projections=2)
    else:
        experiment = await cls(None, devices.flat_motor, devices.tomo_motor, 0 * q.mm,
                               5 * q.mm, devices.camera, devices.tube, num_flats=1,
                               num_darks=1, num_projections=2)
    tube_states = []

    async def watch(producer):
        async for _ in producer:
            tube_states.append(await devices.tube.get_state())

    from experiments import Consumer

    Consumer(experiment.acquisitions, watch)
    await experiment.run()
    assert tube_states == ["off", "on", "on", "on"]
    assert await devices.tube.get_state() == "off"


async def test_xraytube_default_range():
    import inspect

    signature = inspect.signature(xraytube.SteppedTomography.__ainit__)
    assert signature.parameters["angular_range"].default == 360 * q.deg
    assert list(signature.parameters)[7] == "xray_tube"


async def test_files_on_disk_directory_walker(devices, tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path))
    experiment = await synchrotron.SteppedTomography(
        walker, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=2, num_darks=3, num_projections=4)
    ImageWriter(experiment.acquisitions, walker)
    await experiment.run()
    scan = tmp_path / "scan_0001"
    for name, number in (("darks", 3), ("flats", 2), ("radios", 4)):
        files = sorted((scan / name).glob("*.tif"))
        assert len(files) == number
    with tifffile.TiffFile(scan / "radios" / "frame_000003.tif") as tif:
        page = tif.pages[0]
        assert page.shape == (64, 64)
        stored = json.loads(page.description)
    assert stored["rotation_angle"] == pytest.approx(135)
    assert stored["acquisition"] == "radios"
    start = json.loads((scan / "experiment_start.json").read_text())
    assert start["devices"]["tomography_motor"]["state"] == "standby"
    assert start["devices"]["camera"]["exposure_time"] == "0.001 s"
    assert start["experiment"]["num_projections"] == 4


async def test_files_on_disk_hdf5_walker(devices, tmp_path):
    walker = await HDF5Walker(str(tmp_path / "data.h5"))
    experiment = await synchrotron.SteppedTomography(
        walker, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=2, num_darks=3, num_projections=4,
        storage_ring=devices.ring)
    ImageWriter(experiment.acquisitions, walker)
    await experiment.run()
    await experiment.run()
    await walker.close()
    for scan in ("scan_0001", "scan_0002"):
        data, meta = read_hdf5(str(tmp_path / "data.h5"), f"/{scan}/radios/frames")
        assert data.shape == (4, 64, 64) and data.dtype == np.uint16
        assert [m["rotation_angle"] for m in meta] == pytest.approx([0, 45, 90, 135])
        assert all("ring_current" in m for m in meta)
        darks, _ = read_hdf5(str(tmp_path / "data.h5"), f"/{scan}/darks/frames")
        assert len(darks) == 3


async def test_cancel_mid_run_cleans_up(devices, tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path))
    slow = devices.tomo_motor
    experiment = await synchrotron.SteppedTomography(
        walker, devices.flat_motor, slow, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=2, num_darks=2, num_projections=1000)
    ImageWriter(experiment.acquisitions, walker)
    projections = asyncio.Event()

    async def watch(producer):
        async for frame in producer:
            if frame.metadata["index"] >= 5:
                projections.set()

    from experiments import Consumer

    Consumer([experiment.radios], watch)
    task = experiment.run()
    await asyncio.wait_for(projections.wait(), 5)
    assert await devices.shutter.get_state() == "open"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await experiment.get_state() == "cancelled"
    assert await devices.shutter.get_state() == "closed"
    assert await devices.camera.get_state() == "standby"
    assert await devices.tomo_motor.get_state() == "standby"
    assert await devices.flat_motor.get_state() == "standby"
    assert await devices.camera.get_trigger_source() == "AUTO"
    finish = json.loads((tmp_path / "scan_0001" / "experiment_finish.json").read_text())
    assert finish["state"] == "cancelled"
    # completed acquisitions are on disk, the cancelled one left no partial files
    assert len(list((tmp_path / "scan_0001" / "darks").glob("*.tif"))) == 2
    assert not list((tmp_path / "scan_0001" / "radios").glob(".*.part"))
    # the experiment can run again
    await experiment.set_num_projections(2)
    await experiment.run()
    assert await experiment.get_state() == "standby"


async def test_cancel_during_continuous_motion_stops_motor(devices):
    experiment = await synchrotron.ContinuousTomography(
        None, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=1, num_darks=1, num_projections=100_000)
    task = experiment.run()
    for _ in range(500):
        await asyncio.sleep(0.005)
        if await devices.tomo_motor.get_state() == "moving":
            break
    assert await devices.tomo_motor.get_state() == "moving"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await devices.tomo_motor.get_state() == "standby"
    assert await devices.shutter.get_state() == "closed"
    assert await devices.camera.get_state() == "standby"
    assert await experiment.get_state() == "cancelled"
