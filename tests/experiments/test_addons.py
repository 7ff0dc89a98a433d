"""Addons: attachment rules, consumers, accumulation, writing, reconstruction, grating."""

from __future__ import annotations

import numpy as np
import pytest

from concert_core.helpers import ImageWithMetadata
from concert_core.quantities import q
from experiments import (
    Accumulator,
    Acquisition,
    AddonError,
    Consumer,
    Experiment,
    ImageWriter,
    OnlineReconstruction,
    OnlineReconstructionError,
    PhaseGratingSteppingFourierProcessing,
    ReconstructionArgs,
    synchrotron,
)
from walkers import DirectoryWalker, DummyWalker, HDF5Walker, read_hdf5


def numbers(count: int):
    async def produce():
        for i in range(count):
            yield ImageWithMetadata(np.full((2, 3), i, dtype=np.uint16))

    return produce


async def test_attach_detach_and_no_double_attachment():
    acquisition = await Acquisition("a", numbers(3))
    seen = []

    async def consume(producer):
        async for item in producer:
            seen.append(int(item[0, 0]))

    addon = Consumer([acquisition], consume)
    assert addon.attached
    with pytest.raises(AddonError, match="attached already"):
        addon.attach()
    await acquisition()
    assert seen == [0, 1, 2]
    addon.detach()
    with pytest.raises(AddonError, match="not attached"):
        addon.detach()
    await acquisition()
    assert seen == [0, 1, 2]
    addon.attach()
    await acquisition()
    assert seen == [0, 1, 2] * 2


async def test_accumulator_lists_and_arrays():
    a = await Acquisition("a", numbers(3))
    b = await Acquisition("b", numbers(2))
    listed = Accumulator([a, b])
    shaped = Accumulator([a, b], shapes=[(3, 2, 3), (2, 2, 3)], dtype=np.float32)
    await a()
    await b()
    assert len(listed.items[a]) == 3 and len(listed.items[b]) == 2
    assert shaped.items[b].dtype == np.float32 and shaped.items[a][2, 0, 0] == 2
    with pytest.raises(AddonError):
        Accumulator([a], shapes=[None, None])


async def test_image_writer_one_data_set_per_acquisition(tmp_path):
    walker = await HDF5Walker(str(tmp_path / "out.h5"))
    experiment = await Experiment([await Acquisition("darks", numbers(2)),
                                   await Acquisition("radios", numbers(5))], walker)
    writer = ImageWriter(experiment.acquisitions, walker)
    await experiment.run()
    await walker.close()
    assert writer.written == {"darks": 2, "radios": 5}
    data, meta = read_hdf5(str(tmp_path / "out.h5"), "/scan_0001/radios/frames")
    assert data.shape == (5, 2, 3)
    assert [m["acquisition"] for m in meta] == ["radios"] * 5


# -- online reconstruction ------------------------------------------------------------------
WIDTH, HEIGHT, CENTER = 64, 6, (64 - 1) / 2
DISK = (8.0, -5.0, 12.0, 0.02)  # x0, y0 (pixels from the axis, y up), radius, attenuation


def disk_projection(angle: float) -> np.ndarray:
    x0, y0, radius, mu = DISK
    t = np.arange(WIDTH) - CENTER - (x0 * np.cos(angle) + y0 * np.sin(angle))
    return 2 * mu * np.sqrt(np.clip(radius**2 - t**2, 0, None))


class Phantom(Experiment):
    """Darks, flats and projections of a disk off the rotation axis."""

    async def __ainit__(self, walker=None, num_projections: int = 90):
        self.num = num_projections
        await super().__ainit__([await Acquisition("darks", self._darks),
                                 await Acquisition("flats", self._flats),
                                 await Acquisition("radios", self._radios)], walker)

    async def _darks(self):
        for _ in range(3):
            yield ImageWithMetadata(np.full((HEIGHT, WIDTH), 100, np.float32))

    async def _flats(self):
        for _ in range(3):
            yield ImageWithMetadata(np.full((HEIGHT, WIDTH), 1100, np.float32))

    async def _radios(self):
        for i in range(self.num):
            angle = np.pi * i / self.num
            row = 100 + 1000 * np.exp(-disk_projection(angle))
            yield ImageWithMetadata(np.tile(row, (HEIGHT, 1)).astype(np.float32),
                                    {"rotation_angle": np.degrees(angle)})


async def test_online_reconstruction_of_a_disk(tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path))
    experiment = await Phantom(walker)
    reco = OnlineReconstruction(experiment, {"slices": [1, 4]}, walker=walker)
    await experiment.run()
    assert reco.num_processed_projections == 90
    assert reco.slices.shape == (2, WIDTH, WIDTH) and reco.slices.dtype == np.float32
    image = reco.slices[0]
    x0, y0, radius, mu = DISK
    cols = np.arange(WIDTH) - CENTER
    x, y = np.meshgrid(cols, -cols)
    distance = np.hypot(x - x0, y - y0)
    inside = image[distance < radius - 3]
    outside = image[(distance > radius + 3) & (np.hypot(x, y) < WIDTH / 2 - 4)]
    assert inside.mean() == pytest.approx(mu, rel=0.1)
    assert abs(outside.mean()) < 0.1 * mu
    assert inside.std() < 0.15 * mu
    np.testing.assert_allclose(reco.slices[1], image, atol=1e-6)
    slices = sorted((tmp_path / "scan_0001" / "online-slices").glob("*.tif"))
    assert len(slices) == 2


async def test_online_reconstruction_needs_flats_first():
    experiment = await Phantom(num_projections=4)
    experiment.swap(experiment.flats, experiment.radios)
    OnlineReconstruction(experiment, ReconstructionArgs())
    with pytest.raises(OnlineReconstructionError, match="flats"):
        await experiment.run()
    experiment = await Experiment([await Acquisition("radios", numbers(1))])
    with pytest.raises(OnlineReconstructionError, match="darks"):
        OnlineReconstruction(experiment)


async def test_online_reconstruction_on_a_stepped_tomography(devices, tmp_path):
    walker = await DirectoryWalker(root=str(tmp_path))
    experiment = await synchrotron.SteppedTomography(
        walker, devices.flat_motor, devices.tomo_motor, 0 * q.mm, 10 * q.mm, devices.camera,
        devices.shutter, num_flats=2, num_darks=2, num_projections=8)
    reco = OnlineReconstruction(experiment, ReconstructionArgs(slices=[32]), walker=walker)
    await experiment.run()
    assert reco.slices.shape == (1, 64, 64) and np.isfinite(reco.slices).all()


# -- grating interferometry -----------------------------------------------------------------
PHASE = 0.3


class SyntheticGrating(synchrotron.GratingInterferometryStepping):
    """Stepping curves of a sample with transmission 0.5, visibility reduction 0.4 and a
    phase shift of PHASE (a camera simulated by overriding ``_produce_frames``)."""

    async def _produce_frames(self, number, before=None):
        period = (await self.get_grating_period()).to(q.um).magnitude
        sample = await self._flat_motor.get_position() == await self.get_radio_position()
        for index in range(number):
            dark = np.full((4, 5), 10.0, np.float32)
            if before is None:
                yield ImageWithMetadata(dark)
                continue
            position = (await before(index))["stepping_position"]
            phase = 2 * np.pi * position / period
            if sample:
                curve = 50 * (1 + 0.2 * np.cos(phase + PHASE))
            else:
                curve = 100 * (1 + 0.5 * np.cos(phase))
            yield ImageWithMetadata(dark + curve)


async def test_phase_grating_stepping_processing(devices):
    walker = await DummyWalker()
    experiment = await SyntheticGrating(
        walker, devices.camera, devices.shutter, devices.flat_motor, devices.stepping_motor,
        flat_position=10 * q.mm, radio_position=0 * q.mm, grating_period=2.4 * q.um,
        num_darks=2, stepping_start_position=0 * q.um, num_periods=2, num_steps_per_period=5,
        propagation_distance=100 * q.mm)
    processing = PhaseGratingSteppingFourierProcessing(experiment)
    experiment.swap(experiment.reference_stepping, experiment.object_stepping)
    await experiment.run()
    np.testing.assert_allclose(processing.intensity, 0.5, rtol=1e-4)
    np.testing.assert_allclose(processing.visibility, 0.4, rtol=1e-4)
    np.testing.assert_allclose(processing.reference_visibility, 0.5, rtol=1e-4)
    np.testing.assert_allclose(processing.diff_phase, PHASE, atol=1e-4)
    expected = PHASE * 2.4e-6 / (2 * np.pi * 0.1)
    np.testing.assert_allclose(processing.deflection_angle, expected, rtol=1e-3)
    written = [path for path in walker.sequences if "contrasts" in path]
    assert len(written) == 4
