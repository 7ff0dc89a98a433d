"""The main job of ``make demo`` / ``concert demo``: a stepped tomography on a simulated
beamline, run by the director server.

It brings a simulated beamline up on an embedded Tango database (``servers.beamline.up``
with a demo beamline file: fast motors, a shutter, a storage ring, a camera, the walker
server writing below ``--output`` and the director server ``concert/director/1``), starts
the director and follows its ``frames_done`` attribute by change events with a progress
bar. The frames go from the camera server straight to the walker server over ZMQ. Then it
reconstructs the middle slice with the online-reconstruction addon from the written data,
prints a summary and brings the beamline down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import tango
from tqdm import tqdm

from concert_core.helpers import ImageWithMetadata
from concert_core.quantities import q
from experiments.addons import OnlineReconstruction
from experiments.base import Acquisition, Experiment
from servers import beamline
from servers.database import free_port
from walkers import DirectoryWalker, read_image

DIRECTOR = "concert/director/1"
WALKER = "concert/walker/1"


def beamline_config(output: Path, size: int, parameters: dict[str, Any], file_format: str,
                    exposure: str) -> dict[str, Any]:
    """The demo's beamline file (dsconfig JSON)."""
    def device(args: dict[str, Any], **properties: str) -> dict[str, Any]:
        props = {"concert_args": [json.dumps(args)]}
        props.update({name: [value] for name, value in properties.items()})
        return {"properties": props}

    director = {
        "experiment_type": "SteppedTomography", "walker": WALKER,
        "camera": "concert/camera/1", "flat_motor": "concert/motor/flat",
        "tomography_motor": "concert/motor/tomo", "shutter": "concert/shutter/1",
        "storage_ring": "concert/ring/1", "parameters": json.dumps(parameters)}
    walker_args = {"writer_class": file_format.upper(), "stream_timeout": "30 s"}
    return {"servers": {
        "ConcertMotor": {"demo": {
            "LinearMotor": {"concert/motor/flat": device({"speed": "1000 mm/s"})},
            "ContinuousRotationMotor": {
                "concert/motor/tomo": device({"speed": "36000 deg/s"})}}},
        "ConcertCamera": {"demo": {"Camera": {"concert/camera/1": device(
            {"width": size, "height": size, "exposure_time": exposure,
             "frame_rate": "1000 1/s"})}}},
        "ConcertShutter": {"demo": {"Shutter": {
            "concert/shutter/1": device({"motion_time": "5 ms"})}}},
        "ConcertStorageRing": {"demo": {"StorageRing": {"concert/ring/1": device({})}}},
        "ConcertWalker": {"demo": {"DirectoryWalker": {
            WALKER: device(walker_args, root=str(output.resolve()))}}},
        "ConcertDirector": {"demo": {"ExperimentDirector": {
            DIRECTOR: device({}, **director)}}},
    }}


def run_director(tango_host: str, total: int, quiet: bool = False) -> tuple[float, str]:
    """Start the director, follow ``frames_done`` with a progress bar; return the run's
    seconds and the walker entry of the run."""
    # the full name: a process that used another database before keeps it as its default
    director = tango.DeviceProxy(f"tango://{tango_host}/{DIRECTOR}")
    director.set_timeout_millis(10000)
    done = threading.Event()
    bar = tqdm(total=total, unit="frame", desc="tomography", disable=quiet)

    def on_frames(event: tango.EventData) -> None:
        if not event.err and event.attr_value is not None:
            bar.n = int(event.attr_value.value)
            bar.refresh()

    def on_state(event: tango.EventData) -> None:
        if not event.err and event.attr_value is not None \
                and event.attr_value.value != tango.DevState.RUNNING and started.is_set():
            done.set()

    started = threading.Event()
    ids = [director.subscribe_event("frames_done", tango.EventType.CHANGE_EVENT, on_frames),
           director.subscribe_event("State", tango.EventType.CHANGE_EVENT, on_state)]
    try:
        began = time.perf_counter()
        director.command_inout("Start")
        started.set()
        while not done.wait(0.5):  # events drive the bar; the poll is only a safety net
            if director.state() != tango.DevState.RUNNING:
                break
        seconds = time.perf_counter() - began
        bar.n = int(director.read_attribute("frames_done").value)
        bar.refresh()
    finally:
        bar.close()
        for event_id in ids:
            director.unsubscribe_event(event_id)
    if director.state() != tango.DevState.ON:
        raise RuntimeError(f"the director failed: {director.status()}")
    return seconds, director.read_attribute("current_name").value


# -- reconstruction from the written data ---------------------------------------------------
def _reader(scan: Path, name: str, file_format: str) -> Callable[[], AsyncIterator[Any]]:
    metadata = json.loads((scan / f"{name}_metadata.json").read_text())

    async def produce() -> AsyncIterator[Any]:
        if file_format == "hdf5":
            import h5py

            with h5py.File(scan / f"{name}.h5", "r") as h5:
                data = h5[name]
                for index in range(data.shape[0]):
                    frame = await asyncio.to_thread(data.__getitem__, index)
                    yield ImageWithMetadata(frame, dict(metadata[index]))
        else:
            for index, path in enumerate(sorted((scan / name).glob("*.tif"))):
                frame = await asyncio.to_thread(read_image, str(path))
                yield ImageWithMetadata(np.asarray(frame), dict(metadata[index]))

    return produce


async def reconstruct(scan: Path, file_format: str, angular_range: float, row: int
                      ) -> tuple[np.ndarray, Path]:
    """Reconstruct ``row`` with :class:`OnlineReconstruction` fed from the written files;
    the slice is written as TIFF to ``<scan>/online-slices``."""
    acquisitions = [await Acquisition(name, _reader(scan, name, file_format))
                    for name in ("darks", "flats", "radios")]
    experiment = await Experiment(acquisitions, separate_scans=False)
    walker = await DirectoryWalker(root=str(scan))
    reco = OnlineReconstruction(experiment, {"slices": [row],
                                             "overall_angle": angular_range * q.deg},
                                walker=walker)
    await experiment.run()
    assert reco.slices is not None
    return reco.slices[0], scan / reco.slice_directory


def summarize(scan: Path, frames: int, seconds: float, slice_: np.ndarray, slices: Path,
              file_format: str) -> None:
    files = [path for path in scan.rglob("*") if path.is_file()]
    data = [path for path in files if path.suffix in (".h5", ".tif")
            and slices not in path.parents]
    size = sum(path.stat().st_size for path in data)
    print(f"\n{frames} frames, {size / 1e6:.1f} MB written in {seconds:.1f} s "
          f"({size / 1e6 / seconds:.1f} MB/s, {frames / seconds:.1f} frames/s), "
          "camera server -> walker server")
    print(f"data: {scan}")
    for path in sorted(data)[:3] if file_format == "hdf5" else [scan / "radios"]:
        print(f"  {path.relative_to(scan)}")
    print(f"reconstructed slice: {slices} ({slice_.shape[0]}x{slice_.shape[1]} float32, "
          f"mean attenuation {float(np.mean(slice_)):.3g})")
    if file_format == "hdf5":
        print("open with: python -c \"import h5py; f = h5py.File('"
              f"{scan / 'radios.h5'}'); print(f['radios'].shape, f['radios_metadata'][0])\"")
    else:
        print(f"open with: python -c \"import tifffile; print(tifffile.imread('"
              f"{scan / 'radios' / 'frame_000000.tif'}').shape)\"")
    print(f"per-frame metadata (angles, ring current): {scan / 'radios_metadata.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="frame width and height")
    parser.add_argument("--darks", type=int, default=20)
    parser.add_argument("--flats", type=int, default=20)
    parser.add_argument("--projections", type=int, default=360)
    parser.add_argument("--angular-range", type=float, default=180.0, help="degrees")
    parser.add_argument("--exposure", default="1 ms", help="camera exposure time")
    parser.add_argument("--format", choices=("hdf5", "tiff"), default="hdf5")
    parser.add_argument("--output", type=Path, default=Path("demo-data"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--hardware-trigger", action="store_true",
                        help="hardware-timed projections: the rotation motor steps and "
                        "triggers the camera itself (SteppedTomography.hardware_trigger)")
    options = parser.parse_args(argv)
    options.output.mkdir(parents=True, exist_ok=True)
    parameters = {"num_darks": options.darks, "num_flats": options.flats,
                  "num_projections": options.projections,
                  "angular_range": f"{options.angular_range} deg",
                  "radio_position": "0 mm", "flat_position": "10 mm",
                  "hardware_trigger": options.hardware_trigger}
    state = Path(tempfile.mkdtemp(prefix="concert-demo-"))
    config = state / "demo-beamline.json"
    config.write_text(json.dumps(beamline_config(options.output, options.size, parameters,
                                                 options.format, options.exposure), indent=1))
    tango_host = f"127.0.0.1:{free_port()}"
    os.environ["TANGO_HOST"] = tango_host  # clients need it in their environment for events
    print(f"bringing the simulated beamline up on TANGO_HOST={tango_host} (logs in {state})")
    try:
        report = beamline.up(config, state_dir=state, tango_host=tango_host,
                             exit_with_caller=True)
        if not report.ok:
            raise RuntimeError("the beamline did not come up: " + "; ".join(report.problems))
        print(f"beamline up in {report.seconds:.1f} s: "
              + ", ".join(device.name for server in report.servers for device in server.devices))
        total = options.darks + options.flats + options.projections
        print(f"stepped tomography through {DIRECTOR}: {options.darks} darks, {options.flats} "
              f"flats, {options.projections} projections of {options.size}x{options.size} "
              f"over {options.angular_range:g} deg, {options.format.upper()}")
        seconds, name = run_director(tango_host, total, options.quiet)
        scan = options.output.resolve() / name
        print(f"reconstructing row {options.size // 2} from the written data ...")
        began = time.perf_counter()
        slice_, slices = asyncio.run(reconstruct(scan, options.format, options.angular_range,
                                                 options.size // 2))
        print(f"reconstruction took {time.perf_counter() - began:.1f} s")
        summarize(scan, total, seconds, slice_, slices, options.format)
    finally:
        beamline.down(state_dir=state, tango_host=tango_host)
        print("beamline down")
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
