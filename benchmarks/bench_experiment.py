"""Overhead of running an experiment: a stepped tomography against the bare camera.

(a) a synchrotron stepped tomography of 10 darks, 10 flats and 100 projections of 640x480
    uint16 with local dummy devices (camera, flat and rotation motor, shutter, storage
    ring) and a local walker (HDF5 by default, ``--format tiff`` for TIFF files) with the
    ImageWriter addon attached;
(b) the same through the Tango servers (``TangoDevice`` proxies of the same devices on an
    embedded database) with the remote walker, the frames going camera server -> walker
    server (``RemoteImageWriter``);
(c) the time the camera alone needs for those 120 software-triggered frames.

(a) and (b) run twice: with software steps (each projection a move and a trigger from the
session) and hardware-timed (``hardware_trigger``: the rotation motor steps through the
angles itself and pulses the camera's trigger input, as a motion controller wired to the
camera does; darks and flats stay software-triggered).

The devices are fast (``DEVICE_ARGS``) so that the figures show the software's overhead,
not motor travel: (a) - (c) is what the experiment machinery, the motors' state machines,
the shutter, the metadata and the writer add.

The parts run in ``--repeats`` rounds, each part once per round, so that a part and its
baseline (c) are timed at the same moments of a shared host rather than seconds apart. A
part's best time counts (its median is shown next to it). Before each run of (a) and (b)
the files of the runs before are removed (:func:`empty_directory` says why). Each part's
line also shows how busy the machine's cores were during its runs and how much time the
hypervisor stole from them (``benchmarks/host.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.host import HostLoad, combined, host_load
from concert_core.devices.cameras.dummy import Camera
from concert_core.devices.motors.dummy import ContinuousRotationMotor, LinearMotor
from concert_core.devices.shutters.dummy import Shutter
from concert_core.devices.storagerings.dummy import StorageRing
from concert_core.quantities import q
from experiments import ImageWriter, RemoteImageWriter, synchrotron
from walkers import DirectoryWalker, HDF5Walker

NUM_DARKS, NUM_FLATS, NUM_PROJECTIONS = 10, 10, 100
WIDTH, HEIGHT = 640, 480
#: Device settings of (a) and (c); part (b) should give its servers the same (as
#: ``concert_args`` strings).
DEVICE_ARGS: dict[str, dict[str, str]] = {
    "camera": {"exposure_time": "1 ms", "frame_rate": "1000 1/s"},
    "flat_motor": {"speed": "1000 mm/s"},
    "tomography_motor": {"speed": "36000 deg/s"},
    "shutter": {"motion_time": "1 ms"},
}
FLAT_POSITION, RADIO_POSITION = 1 * q.mm, 0 * q.mm


def _args(device: str) -> dict[str, Any]:
    return {key: q.Quantity(value) for key, value in DEVICE_ARGS[device].items()}


async def make_camera() -> Camera:
    return await Camera(width=WIDTH, height=HEIGHT, dtype="uint16", seed=0, **_args("camera"))


MODES = {"software": False, "hardware": True}


@dataclass
class Part:
    """One timed job of the benchmark, run once per round: ``prepare`` (not timed), then
    ``job``, which returns the frames it had written."""

    label: str
    job: Callable[[], Awaitable[int]]
    prepare: Callable[[], Awaitable[Any]] | None = None
    times: list[float] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    loads: list[HostLoad] = field(default_factory=list)

    async def round(self) -> None:
        if self.prepare is not None:
            await self.prepare()
        with host_load() as load:
            start = time.perf_counter()
            written = await self.job()
            self.times.append(time.perf_counter() - start)
        self.written.append(written)
        self.loads.append(load)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def empty_directory(directory: Path) -> None:
    """Remove what ``directory`` holds (the runs' files), keeping it.

    Before each run, so that the memory of the page cache the run before filled is free
    again and is used again at once. On a VM with free page reporting, memory the guest
    left free for a few seconds goes back to the hypervisor, and writing into it costs a
    host fault per page (``benchmarks/host.py``): with the files kept, the runs after
    about 1.3 GB written took 1 ms per frame more, in (a) and (b) alike."""
    for entry in directory.iterdir() if directory.exists() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def camera_alone(camera: Camera) -> Part:
    """(c) The camera alone producing the 120 software-triggered frames."""
    total = NUM_DARKS + NUM_FLATS + NUM_PROJECTIONS

    async def job() -> int:
        async with camera.recording():
            for _ in range(total):
                await camera.trigger()
                await camera.grab()
        return total

    return Part("(c) camera alone", job, lambda: camera.set_trigger_source("SOFTWARE"))


def experiment_parts(label: str, experiment: Any, tomo_motor: Any,
                     clear: Callable[[], Awaitable[None]], writer: Any = None) -> list[Part]:
    """One part per trigger mode: a whole run of ``experiment`` from angle 0, after
    ``clear`` removed what the runs before wrote; the frames written are counted by
    ``writer`` (a RemoteImageWriter) or the experiment's walker."""
    parts = []
    for mode, hardware in MODES.items():
        async def prepare(hardware: bool = hardware) -> None:
            await clear()
            await experiment.set_hardware_trigger(hardware)
            await tomo_motor.set_position(0 * q.deg)

        async def job() -> int:
            before = experiment.walker.frames_written
            await experiment.run()
            if writer is not None:
                return sum(writer.written.values())
            return experiment.walker.frames_written - before

        parts.append(Part(f"{label}, {mode} steps", job, prepare))
    return parts


@contextlib.asynccontextmanager
async def local_experiment(directory: Path, file_format: str) -> AsyncIterator[list[Part]]:
    """(a) The stepped tomography with local devices and a local walker."""
    camera = await make_camera()
    flat_motor = await LinearMotor(**_args("flat_motor"))
    tomo_motor = await ContinuousRotationMotor(**_args("tomography_motor"))
    shutter = await Shutter(**_args("shutter"))
    ring = await StorageRing()
    h5_file, tiff_root = directory / "bench.h5", directory / "tiff"
    if file_format == "hdf5":
        walker = await HDF5Walker(str(h5_file))
    else:
        walker = await DirectoryWalker(root=str(tiff_root))
    experiment = await synchrotron.SteppedTomography(
        walker, flat_motor, tomo_motor, RADIO_POSITION, FLAT_POSITION, camera, shutter,
        num_flats=NUM_FLATS, num_darks=NUM_DARKS, num_projections=NUM_PROJECTIONS,
        storage_ring=ring)
    writer = ImageWriter(experiment.acquisitions, walker)

    async def clear() -> None:
        if file_format == "hdf5":  # a new, empty file in the walker's place
            await experiment.walker.close()
            await asyncio.to_thread(h5_file.unlink)
            experiment.walker = writer.walker = await HDF5Walker(str(h5_file))
        else:
            await asyncio.to_thread(empty_directory, tiff_root)

    try:
        yield experiment_parts("(a) local devices + local walker ", experiment, tomo_motor,
                               clear)
    finally:
        if isinstance(experiment.walker, HDF5Walker):
            await experiment.walker.close()


def _beamline_config(root: Path, file_format: str) -> dict[str, Any]:
    """dsconfig JSON of (b)'s servers: the devices of ``DEVICE_ARGS`` and a walker."""
    def device(args: dict[str, Any], **properties: str) -> dict[str, Any]:
        props = {"concert_args": [json.dumps(args)]}
        props.update({name: [value] for name, value in properties.items()})
        return {"properties": props}

    camera = {"width": WIDTH, "height": HEIGHT, "seed": 0, **DEVICE_ARGS["camera"]}
    walker = {"writer_class": file_format.upper()}
    return {"servers": {
        "ConcertMotor": {"bench": {
            "LinearMotor": {"bench/motor/flat": device(DEVICE_ARGS["flat_motor"])},
            "ContinuousRotationMotor": {
                "bench/motor/tomo": device(DEVICE_ARGS["tomography_motor"])}}},
        "ConcertCamera": {"bench": {"Camera": {"bench/camera/1": device(camera)}}},
        "ConcertShutter": {"bench": {"Shutter": {
            "bench/shutter/1": device(DEVICE_ARGS["shutter"])}}},
        "ConcertStorageRing": {"bench": {"StorageRing": {"bench/ring/1": device({})}}},
        "ConcertWalker": {"bench": {"DirectoryWalker": {
            "bench/walker/1": device(walker, root=str(root))}}},
    }}


@contextlib.asynccontextmanager
async def tango_experiment(directory: Path, file_format: str) -> AsyncIterator[list[Part]]:
    """(b) The same tomography on the Tango servers (``TangoDevice`` proxies) with the
    remote walker: frames go camera server -> walker server (``RemoteImageWriter``)."""
    from concert_core.remote import TangoDevice
    from servers import beamline
    from servers.database import free_port
    from walkers.remote import RemoteDirectoryWalker

    root = directory / "remote"
    root.mkdir()
    config = directory / "bench-beamline.json"
    config.write_text(json.dumps(_beamline_config(root, file_format)))
    tango_host = f"127.0.0.1:{free_port()}"
    os.environ["TANGO_HOST"] = tango_host  # clients need it for events
    state = directory / "state"
    devices: list[Any] = []
    try:
        report = await asyncio.to_thread(beamline.up, config, state, tango_host,
                                         exit_with_caller=True)
        if not report.ok:
            raise RuntimeError("; ".join(report.problems))
        for name in ("camera/1", "motor/flat", "motor/tomo", "shutter/1", "ring/1"):
            devices.append(await TangoDevice(f"bench/{name}"))
        camera, flat_motor, tomo_motor, shutter, ring = devices
        walker = await RemoteDirectoryWalker("bench/walker/1")
        devices.append(walker)
        experiment = await synchrotron.SteppedTomography(
            walker, flat_motor, tomo_motor, RADIO_POSITION, FLAT_POSITION, camera, shutter,
            num_flats=NUM_FLATS, num_darks=NUM_DARKS, num_projections=NUM_PROJECTIONS,
            storage_ring=ring)
        writer = RemoteImageWriter(experiment, walker)

        async def clear() -> None:  # the walker's root is on this host
            await asyncio.to_thread(empty_directory, root)

        yield experiment_parts("(b) Tango servers + remote walker", experiment, tomo_motor,
                               clear, writer)
    finally:
        for device in devices:
            await device.disconnect()
        await asyncio.to_thread(beamline.down, state, tango_host)


async def motor_steps(repeats: int) -> float:
    """Best time of the 100 rotation steps alone (context: the dummy motor's simulated
    travel; tiny sleeps cost about 1 ms each because the event loop's timer waits in
    whole milliseconds)."""
    motor = await ContinuousRotationMotor(**_args("tomography_motor"))
    step = 180 * q.deg / NUM_PROJECTIONS
    best = float("inf")
    for _ in range(repeats):
        await motor.set_position(0 * q.deg)
        start = time.perf_counter()
        for index in range(NUM_PROJECTIONS):
            await motor.set_position(index * step)
        best = min(best, time.perf_counter() - start)
    return best


async def main(file_format: str, repeats: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench_experiment_"))
    frames = NUM_DARKS + NUM_FLATS + NUM_PROJECTIONS
    try:
        t_m = await motor_steps(repeats)
        async with contextlib.AsyncExitStack() as stack:
            c = camera_alone(await make_camera())
            a = await stack.enter_async_context(local_experiment(directory, file_format))
            b = await stack.enter_async_context(tango_experiment(directory, file_format))
            # Rounds alternate between the parts, so that a part and its baseline see the
            # same moments of a shared host.
            for _ in range(repeats):
                for part in (c, *a, *b):
                    await part.round()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"stepped tomography: {NUM_DARKS} darks, {NUM_FLATS} flats, {NUM_PROJECTIONS} "
          f"projections of {WIDTH}x{HEIGHT} uint16, {repeats} rounds, each part once per "
          f"round; walker: {file_format}")
    print(f"devices: {DEVICE_ARGS}")
    print(f"    for context: the {NUM_PROJECTIONS} rotation steps alone take {t_m:.3f} s")
    print("seconds: best (median) of the rounds")
    for part in (c, *a, *b):
        written = "" if part is c else f", {min(part.written)} frames written per run"
        print(f"{part.label + ':':51s}{part.best:7.3f} s ({part.median:.3f})  "
              f"({frames / part.best:6.1f} frames/s{written})  [{combined(part.loads)}]")
    for part in (*a, *b):
        goal = "  (goal: < 1.5)" if part in b else ""
        name, mode = part.label[:3], part.label.rpartition(", ")[2]
        print(f"{name}/(c), {mode + ':':16s}{part.best / c.best:5.2f} "
              f"({part.median / c.median:.2f}){goal}   overhead "
              f"{(part.best - c.best) / frames * 1e3:.2f} ms per frame, "
              f"{(part.best - c.best) / NUM_PROJECTIONS * 1e3:.2f} ms per projection")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("hdf5", "tiff"), default="hdf5")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.format, options.repeats))
