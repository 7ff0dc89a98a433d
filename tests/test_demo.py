"""The main job with tiny sizes, run as a user runs it (``concert demo``, its own process):
beamline up, stepped tomography through the director server, HDF5 files, a reconstructed
slice, the summary, beamline down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

pytestmark = [pytest.mark.tango, pytest.mark.timeout(180)]


def test_demo_tiny(tmp_path: Path) -> None:
    output = tmp_path / "demo-data"
    env = {key: value for key, value in os.environ.items() if key != "TANGO_HOST"}
    env["CONCERT_STATE_DIR"] = str(tmp_path / "state")
    concert = Path(sys.executable).parent / "concert"
    done = subprocess.run(
        [str(concert), "demo", "--size", "64", "--darks", "2", "--flats", "2",
         "--projections", "12", "--output", str(output), "--quiet"],
        env=env, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "16 frames" in done.stdout and "beamline down" in done.stdout
    scan = output / "scan_0001"
    for name, number in (("darks", 2), ("flats", 2), ("radios", 12)):
        with h5py.File(scan / f"{name}.h5") as h5:
            assert h5[name].shape == (number, 64, 64)
    angles = [frame["rotation_angle"]
              for frame in json.loads((scan / "radios_metadata.json").read_text())]
    assert angles == pytest.approx([i * 15.0 for i in range(12)])
    assert len(list((scan / "online-slices").glob("*.tif"))) == 1
