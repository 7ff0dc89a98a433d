"""Directors: iterations, overlapped preparation, pause/resume, cancel, XY scans."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from concert_core.devices.motors.dummy import LinearMotor
from concert_core.helpers import ImageWithMetadata
from concert_core.quantities import q
from experiments import Acquisition, Director, Experiment, ImageWriter, synchrotron
from walkers import DirectoryWalker, DummyWalker, read_tiff


class Counting(Director):
    """Records when each preparation starts relative to the runs."""

    async def __ainit__(self, experiment, num_iterations, events):
        self.events = events
        await super().__ainit__(experiment, num_iterations)

    async def _prepare_run(self, iteration):
        self.events.append(f"prepare {iteration}")


def frames_experiment_factory(events: list, early: bool = False):
    class Sample(Experiment):
        async def __ainit__(self, walker):
            await super().__ainit__([await Acquisition("frames", self._produce)], walker,
                                    separate_scans=False)

        async def _produce(self):
            events.append("run")
            for i in range(3):
                if early and i == 1:
                    self.ready_to_prepare_next_sample.set()
                await asyncio.sleep(0.005)
                yield ImageWithMetadata(np.full((4, 4), i, np.uint16))
            events.append("end")

    return Sample


async def test_director_runs_iterations_and_prepares_early():
    events = []
    walker = await DummyWalker(root="root")
    experiment = await frames_experiment_factory(events, early=True)(walker)
    ImageWriter(experiment.acquisitions, walker)
    director = await Counting(experiment, 3, events)
    await director.run()
    assert events == ["prepare 0", "run", "prepare 1", "end", "run", "prepare 2", "end",
                      "run", "end"]
    assert await director.get_iterations_done() == 3
    assert await director.get_num_iterations() == 3
    assert await director.get_state() == "standby"
    assert sorted(walker.sequences) == [f"root/iteration_{i:>04}/frames/frames"
                                        for i in range(3)]
    assert json.loads(walker.logs["root/iteration_0001/director.json"])["iteration"] == 1


async def test_director_pause_and_resume():
    events = []
    walker = await DummyWalker()
    experiment = await frames_experiment_factory(events)(walker)
    director = await Counting(experiment, 3, events)
    task = director.run()
    await director.pause()
    assert await director.get_pause_requested()
    for _ in range(200):
        await asyncio.sleep(0.005)
        if await director.get_state() == "paused":
            break
    assert await director.get_state() == "paused"
    assert await director.get_iterations_done() == 1
    assert events == ["prepare 0", "run", "end", "prepare 1"]
    await asyncio.sleep(0.05)
    assert events[-1] == "prepare 1"
    await director.resume()
    await task
    assert await director.get_iterations_done() == 3
    assert await director.get_state() == "standby"


async def test_director_failure_and_cancel(devices):
    class Failing(Director):
        async def _prepare_run(self, iteration):
            if iteration == 1:
                raise RuntimeError("sample changer jammed")

    walker = await DummyWalker()
    experiment = await frames_experiment_factory([])(walker)
    director = await Failing(experiment, 3)
    with pytest.raises(RuntimeError, match="jammed"):
        await director.run()
    assert await director.get_state() == "error"
    assert "jammed" in director["state"].message
    assert await director.get_iterations_done() == 1

    tomo = await synchrotron.SteppedTomography(
        None, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=1, num_darks=1, num_projections=100_000,
        separate_scans=False)
    director = await Director(tomo, 2)
    task = director.run()
    for _ in range(400):
        await asyncio.sleep(0.005)
        if await tomo.get_current_acquisition() == "radios":
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await director.get_state() == "cancelled"
    assert await tomo.get_state() == "cancelled"
    assert await devices.shutter.get_state() == "closed"
    assert await devices.camera.get_state() == "standby"
    assert await devices.tomo_motor.get_state() == "standby"


async def test_xy_scan_writes_one_data_set_per_position(devices, tmp_path):
    from experiments import XYScan

    x_motor = await LinearMotor(speed=10_000 * q.mm / q.s)
    y_motor = await LinearMotor(speed=10_000 * q.mm / q.s)
    walker = await DirectoryWalker(root=str(tmp_path))
    experiment = await synchrotron.Radiography(
        walker, devices.flat_motor, 0 * q.mm, 10 * q.mm, devices.camera, devices.shutter,
        num_flats=1, num_darks=1, num_projections=2, separate_scans=False)
    ImageWriter(experiment.acquisitions, walker)
    positions = []

    async def where(producer):
        async for _ in producer:
            positions.append(((await x_motor.get_position()).magnitude,
                              (await y_motor.get_position()).magnitude))

    from experiments import Consumer

    Consumer([experiment.radios], where)
    scan = await XYScan(experiment, x_motor, y_motor, 0 * q.mm, 2 * q.mm, 1 * q.mm,
                        -1 * q.mm, 0 * q.mm, 1 * q.mm)
    assert len(scan.positions()) == 6
    await scan.run()
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert entries == [f"x_{ix:>03}_y_{iy:>03}" for ix in range(3) for iy in range(2)]
    for entry in entries:
        radios = sorted((tmp_path / entry / "radios").glob("*.tif"))
        assert len(radios) == 2
    info = json.loads((tmp_path / "x_002_y_001" / "director.json").read_text())
    assert info["x"] == "2 mm" and info["y"] == "0 mm"
    assert positions[::2] == [(x, y) for y in (-1.0, 0.0) for x in (0.0, 1.0, 2.0)]
    assert read_tiff(str(tmp_path / "x_000_y_000" / "radios" / "frame_000000.tif")).shape \
        == (64, 64)
    with pytest.raises(ValueError):
        await XYScan(experiment, x_motor, y_motor, 0 * q.mm, 1 * q.mm, 0 * q.mm,
                     0 * q.mm, 1 * q.mm, 1 * q.mm)
