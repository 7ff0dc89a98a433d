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
the shutter, the metadata and the writer add. Each part runs ``--repeats`` times; the best
time counts. Each part's line also shows how busy the machine's cores were meanwhile and
how much time the hypervisor stole from them (``benchmarks/host.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.host import HostLoad, host_load
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


Result = tuple[float, int, HostLoad]  # best seconds, frames written per run, host load


async def _best(experiment: Any, tomo_motor: Any, repeats: int, writer: Any = None
                ) -> dict[str, Result]:
    """Per trigger mode: the best time of ``repeats`` runs, the frames written per run and
    the host's load over the runs."""
    results = {}
    for mode, hardware in MODES.items():
        await experiment.set_hardware_trigger(hardware)
        best, written = float("inf"), 0
        with host_load() as load:
            for _ in range(repeats):
                await tomo_motor.set_position(0 * q.deg)
                before = experiment.walker.frames_written
                start = time.perf_counter()
                await experiment.run()
                best = min(best, time.perf_counter() - start)
                written += (sum(writer.written.values()) if writer is not None
                            else experiment.walker.frames_written - before)
        results[mode] = best, written // repeats, load
    return results


async def part_a(directory: Path, file_format: str, repeats: int) -> dict[str, Result]:
    """Best time of the whole stepped tomography with local devices; frames written."""
    camera = await make_camera()
    flat_motor = await LinearMotor(**_args("flat_motor"))
    tomo_motor = await ContinuousRotationMotor(**_args("tomography_motor"))
    shutter = await Shutter(**_args("shutter"))
    ring = await StorageRing()
    if file_format == "hdf5":
        walker = await HDF5Walker(str(directory / "bench.h5"))
    else:
        walker = await DirectoryWalker(root=str(directory / "tiff"))
    experiment = await synchrotron.SteppedTomography(
        walker, flat_motor, tomo_motor, RADIO_POSITION, FLAT_POSITION, camera, shutter,
        num_flats=NUM_FLATS, num_darks=NUM_DARKS, num_projections=NUM_PROJECTIONS,
        storage_ring=ring)
    ImageWriter(experiment.acquisitions, walker)
    results = await _best(experiment, tomo_motor, repeats)
    if isinstance(walker, HDF5Walker):
        await walker.close()
    return results


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


async def part_b(directory: Path, file_format: str, repeats: int) -> dict[str, Result]:
    """(b) Best time of the same tomography on the Tango servers (``TangoDevice`` proxies)
    with the remote walker: frames go camera server -> walker server (RemoteImageWriter)."""
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
    try:
        report = await asyncio.to_thread(beamline.up, config, state, tango_host,
                                         exit_with_caller=True)
        if not report.ok:
            raise RuntimeError("; ".join(report.problems))
        camera = await TangoDevice("bench/camera/1")
        flat_motor = await TangoDevice("bench/motor/flat")
        tomo_motor = await TangoDevice("bench/motor/tomo")
        shutter = await TangoDevice("bench/shutter/1")
        ring = await TangoDevice("bench/ring/1")
        walker = await RemoteDirectoryWalker("bench/walker/1")
        experiment = await synchrotron.SteppedTomography(
            walker, flat_motor, tomo_motor, RADIO_POSITION, FLAT_POSITION, camera, shutter,
            num_flats=NUM_FLATS, num_darks=NUM_DARKS, num_projections=NUM_PROJECTIONS,
            storage_ring=ring)
        writer = RemoteImageWriter(experiment, walker)
        results = await _best(experiment, tomo_motor, repeats, writer)
        for device in (camera, flat_motor, tomo_motor, shutter, ring, walker):
            await device.disconnect()
        return results
    finally:
        await asyncio.to_thread(beamline.down, state, tango_host)


async def part_c(repeats: int) -> tuple[float, HostLoad]:
    """Best time the camera alone needs for the 120 software-triggered frames; the host's
    load meanwhile."""
    camera = await make_camera()
    total = NUM_DARKS + NUM_FLATS + NUM_PROJECTIONS
    await camera.set_trigger_source("SOFTWARE")
    best = float("inf")
    with host_load() as load:
        for _ in range(repeats):
            start = time.perf_counter()
            async with camera.recording():
                for _ in range(total):
                    await camera.trigger()
                    await camera.grab()
            best = min(best, time.perf_counter() - start)
    return best, load


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
        t_c, load_c = await part_c(repeats)
        t_m = await motor_steps(repeats)
        a = await part_a(directory, file_format, repeats)
        b = await part_b(directory, file_format, repeats)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"stepped tomography: {NUM_DARKS} darks, {NUM_FLATS} flats, {NUM_PROJECTIONS} "
          f"projections of {WIDTH}x{HEIGHT} uint16, best of {repeats}; walker: {file_format}")
    print(f"devices: {DEVICE_ARGS}")
    print(f"(c) camera alone, {frames} frames: {t_c:8.3f} s  ({frames / t_c:7.1f} frames/s)"
          f"  [{load_c}]")
    print(f"    for context: the {NUM_PROJECTIONS} rotation steps alone take {t_m:.3f} s")
    for label, results in (("(a) local devices + local walker ", a),
                           ("(b) Tango servers + remote walker", b)):
        for mode, (seconds, written, load) in results.items():
            print(f"{label}, {mode + ' steps:':16s}{seconds:8.3f} s  "
                  f"({frames / seconds:7.1f} frames/s, {written} frames written per run)"
                  f"  [{load}]")
    for part, results in (("a", a), ("b", b)):
        for mode, (seconds, _, _) in results.items():
            goal = "  (goal: < 1.5)" if part == "b" else ""
            print(f"({part})/(c), {mode + ' steps:':16s}{seconds / t_c:5.2f}{goal}   overhead "
                  f"{(seconds - t_c) / frames * 1e3:.2f} ms per frame, "
                  f"{(seconds - t_c) / NUM_PROJECTIONS * 1e3:.2f} ms per projection")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("hdf5", "tiff"), default="hdf5")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.format, options.repeats))
