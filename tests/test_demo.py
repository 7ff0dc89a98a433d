"""The main job (``make demo``) with tiny sizes: beamline up, stepped tomography through the
director server, HDF5 files, a reconstructed slice, the summary, beamline down."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from experiments import demo

pytestmark = [pytest.mark.tango, pytest.mark.timeout(120)]


def test_demo_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TANGO_HOST", "unset")  # the demo sets its own; restored afterwards
    output = tmp_path / "demo-data"
    assert demo.main(["--size", "64", "--darks", "2", "--flats", "2", "--projections", "12",
                      "--output", str(output), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "16 frames" in printed and "beamline down" in printed
    scan = output / "scan_0001"
    for name, number in (("darks", 2), ("flats", 2), ("radios", 12)):
        with h5py.File(scan / f"{name}.h5") as h5:
            assert h5[name].shape == (number, 64, 64)
    angles = [frame["rotation_angle"]
              for frame in json.loads((scan / "radios_metadata.json").read_text())]
    assert angles == pytest.approx([i * 15.0 for i in range(12)])
    assert len(list((scan / "online-slices").glob("*.tif"))) == 1
