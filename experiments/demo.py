"""The main job of ``make demo``: a simulated beamline on a real Tango database.

It starts the embedded Tango database and the motor, shutter and storage-ring servers,
drives them from Python as remote concert devices, records a stepped rotation series
with a (local, simulated) camera whose frames carry the angle and the ring current, writes
them to HDF5 under ``./demo-data/``, prints a summary and stops everything it started.
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

import h5py
import numpy as np
from tqdm import tqdm

from concert_core.devices.cameras.dummy import Camera
from concert_core.quantities import q
from concert_core.remote import TangoDevice
from servers.database import EmbeddedDatabase
from servers.process import register_server, start_server

SERVERS = [
    ("ConcertMotor", "LinearMotor", "concert/motor/flat", {}),
    ("ConcertMotor", "ContinuousRotationMotor", "concert/motor/tomo",
     {"speed": "720 deg/s"}),
    ("ConcertShutter", "Shutter", "concert/shutter/1", {}),
    ("ConcertStorageRing", "StorageRing", "concert/ring/1", {}),
]


def start_beamline(state: Path) -> tuple[EmbeddedDatabase, list]:
    database = EmbeddedDatabase(state).start()
    os.environ["TANGO_HOST"] = database.tango_host
    db = database.database()
    by_server: dict[str, list[str]] = {}
    for server, tango_class, device, args in SERVERS:
        register_server(db, server, "demo", tango_class, [device],
                        {device: {"concert_args": [json.dumps(args)]}})
        by_server.setdefault(server, []).append(device)
    bin_dir = Path(sys.executable).parent
    processes = []
    try:
        for server, devices in by_server.items():
            processes.append(start_server([str(bin_dir / server), "demo"], database.tango_host,
                                          devices, state / f"{server}.log"))
    except Exception:
        for process in processes:
            process.stop()
        database.stop()
        raise
    return database, processes


async def acquire(output: Path, projections: int, size: int) -> dict:
    flat = await TangoDevice("concert/motor/flat")
    tomo = await TangoDevice("concert/motor/tomo")
    shutter = await TangoDevice("concert/shutter/1")
    ring = await TangoDevice("concert/ring/1")
    camera = await Camera(width=size, height=size)
    await camera.set_exposure_time(5 * q.ms)
    await camera.set_frame_rate(1000 / q.s)
    began = time.perf_counter()
    angles = np.linspace(0, 180, projections, endpoint=False) * q.deg
    frames = output / "projections.h5"
    with h5py.File(frames, "w") as h5:
        data = h5.create_dataset("projections", (projections, size, size), dtype="uint16",
                                 chunks=(1, size, size))
        meta = h5.create_dataset("metadata", (projections,), dtype=h5py.string_dtype())
        await flat.set_position(0 * q.mm)
        await shutter.open()
        try:
            async with camera.recording():
                for index, angle in enumerate(tqdm(angles, desc="projections", unit="frame")):
                    await tomo.set_position(angle)
                    frame = await camera.grab()
                    current = await ring.get_current()
                    frame.metadata.update(angle_deg=float(angle.magnitude),
                                          ring_current_mA=float(current.magnitude))
                    await asyncio.to_thread(data.__setitem__, index, frame)
                    meta[index] = json.dumps(frame.metadata)
        finally:
            await shutter.close()
    elapsed = time.perf_counter() - began
    for device in (flat, tomo, shutter, ring):
        await device.disconnect()
    return {"frames": projections, "bytes": projections * size * size * 2,
            "seconds": elapsed, "file": frames}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projections", type=int, default=90)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--output", type=Path, default=Path("demo-data"))
    options = parser.parse_args(argv)
    options.output.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="concert-demo-"))
    print(f"starting the embedded Tango database and servers (logs in {state})")
    database, processes = start_beamline(state)
    try:
        print(f"beamline up on TANGO_HOST={database.tango_host}: "
              + ", ".join(device for _, _, device, _ in SERVERS))
        summary = asyncio.run(acquire(options.output, options.projections, options.size))
    finally:
        for process in processes:
            process.stop()
        database.stop()
    shutil.rmtree(state, ignore_errors=True)
    mb = summary["bytes"] / 1e6
    print(f"\n{summary['frames']} frames, {mb:.1f} MB in {summary['seconds']:.1f} s "
          f"({mb / summary['seconds']:.1f} MB/s, {summary['frames'] / summary['seconds']:.1f} "
          f"frames/s)")
    print(f"written to {summary['file'].resolve()}")
    print("open with: python -c \"import h5py; f = h5py.File('"
          f"{summary['file']}'); print(f['projections'].shape, f['metadata'][0])\"")
    print("beamline stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
