"""The director server (ConcertDirector, Tango class ExperimentDirector) end to end:
director -> remote motors, shutter, ring, camera -> frames camera server -> walker server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest
import tango

from servers.process import ServerProcess
from tests.support import argv

pytestmark = [pytest.mark.tango, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
SIZE = 128
FLAT, TOMO = "test/dmotor/flat", "test/dmotor/tomo"
CAMERA, FAILCAM = "test/dcamera/1", "test/dcamera/fail"
SHUTTER, RING = "test/dshutter/1", "test/dring/1"
WALKER, WALKER2 = "test/dwalker/1", "test/dwalker/2"
DIRECTORS = {
    "radio": ("Radiography", CAMERA, WALKER, {
        "num_darks": 3, "num_flats": 3, "num_projections": 5,
        "radio_position": "0 mm", "flat_position": "1 mm"}),
    "tomo": ("SteppedTomography", CAMERA, WALKER, {
        "num_darks": 4, "num_flats": 4, "num_projections": 20,
        "radio_position": "0 mm", "flat_position": "1 mm", "angular_range": "180 deg"}),
    "long": ("SteppedTomography", CAMERA, WALKER, {
        "num_darks": 2, "num_flats": 2, "num_projections": 3000,
        "radio_position": "0 mm", "flat_position": "1 mm"}),
    "pause": ("SteppedTomography", CAMERA, WALKER, {
        "num_darks": 2, "num_flats": 2, "num_projections": 30, "num_iterations": 2,
        "radio_position": "0 mm", "flat_position": "1 mm"}),
    "failcam": ("SteppedTomography", FAILCAM, WALKER, {
        "num_darks": 3, "num_flats": 3, "num_projections": 20,
        "radio_position": "0 mm", "flat_position": "1 mm"}),
    "failwalker": ("SteppedTomography", CAMERA, WALKER2, {
        "num_darks": 2, "num_flats": 2, "num_projections": 3000,
        "radio_position": "0 mm", "flat_position": "1 mm"}),
}


def _args(**values: object) -> dict[str, list[str]]:
    return {"concert_args": [json.dumps(values)]}


@dataclass
class Beamline:
    root: Path
    root2: Path
    walker2: ServerProcess

    @staticmethod
    def proxy(name: str) -> tango.DeviceProxy:
        proxy = tango.DeviceProxy(name)
        proxy.set_timeout_millis(5000)
        return proxy


@pytest.fixture(scope="module")
def beamline(tango_servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Beamline]:
    """Fast motors, a shutter, a ring, a 128x128 camera, a failing camera, two walkers and
    one director server with a director per test."""
    base = tmp_path_factory.mktemp("director")
    root, root2 = base / "data", base / "data2"
    root.mkdir()
    root2.mkdir()
    env = {"PYTHONPATH": str(ROOT)}
    camera = _args(width=SIZE, height=SIZE, exposure_time="1 ms", frame_rate="1000 1/s")
    directors = {}
    for name, (kind, camera_name, walker, parameters) in DIRECTORS.items():
        directors[f"test/director/{name}"] = {
            "experiment_type": [kind], "walker": [walker], "camera": [camera_name],
            "flat_motor": [FLAT], "tomography_motor": [TOMO], "shutter": [SHUTTER],
            "storage_ring": [RING], "parameters": [json.dumps(parameters)]}
    prepare = tango_servers.prepare
    processes = [
        prepare(argv("ConcertMotor", "dtest"), "ConcertMotor", "dtest",
                {"LinearMotor": [FLAT], "ContinuousRotationMotor": [TOMO]},
                {FLAT: _args(speed="1000 mm/s"), TOMO: _args(speed="36000 deg/s")}, env=env),
        prepare(argv("ConcertCamera", "dtest"), "ConcertCamera", "dtest",
                {"Camera": [CAMERA, FAILCAM]},
                {CAMERA: camera, FAILCAM: {
                    "concert_class": ["tests.director_devices:FailingCamera"],
                    **_args(width=SIZE, height=SIZE, exposure_time="1 ms", fail_after=10)}},
                env=env),
        prepare(argv("ConcertShutter", "dtest"), "ConcertShutter", "dtest",
                {"Shutter": [SHUTTER]}, {SHUTTER: _args(motion_time="1 ms")}, env=env),
        prepare(argv("ConcertStorageRing", "dtest"), "ConcertStorageRing", "dtest",
                {"StorageRing": [RING]}, env=env),
        prepare(argv("ConcertWalker", "dtest"), "ConcertWalker", "dtest",
                {"DirectoryWalker": [WALKER]}, {WALKER: {"root": [str(root)]}}, env=env),
        prepare(argv("ConcertWalker", "dfail"), "ConcertWalker", "dfail",
                {"DirectoryWalker": [WALKER2]}, {WALKER2: {"root": [str(root2)]}}, env=env),
        prepare(argv("ConcertDirector", "dtest"), "ConcertDirector", "dtest",
                {"ExperimentDirector": list(directors)}, directors, env=env),
    ]
    tango_servers.start_all(processes)
    yield Beamline(root, root2, processes[5])


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def run(director: tango.DeviceProxy, timeout: float = 60.0) -> None:
    director.command_inout("Start")
    wait_for(lambda: director.state() != tango.DevState.RUNNING, timeout, "the run's end")


def walker_at(name: str, where: str) -> tango.DeviceProxy:
    walker = Beamline.proxy(name)
    walker.command_inout("Home")
    walker.command_inout("Descend", where)
    return walker


def tiffs(path: Path) -> list[Path]:
    return sorted(path.glob("*.tif"))


def test_radiography_end_to_end(beamline: Beamline) -> None:
    walker = walker_at(WALKER, "radio")
    walker.write_attribute("writer_class", 0)  # TIFF
    director = Beamline.proxy("test/director/radio")
    assert director.state() == tango.DevState.ON
    assert director.read_attribute("experiment_type").value == "Radiography"
    assert director.read_attribute("num_projections").value == 5
    assert director.get_attribute_config("flat_position").unit == "mm"
    run(director)
    assert director.state() == tango.DevState.ON, director.status()
    assert director.read_attribute("frames_done").value == 11
    assert director.read_attribute("frames_total").value == 11
    assert director.read_attribute("progress").value == pytest.approx(1.0)
    scan = beamline.root / "radio" / "scan_0001"
    assert [len(tiffs(scan / name)) for name in ("darks", "flats", "radios")] == [3, 3, 5]
    metadata = json.loads((scan / "radios_metadata.json").read_text())
    assert [frame["index"] for frame in metadata] == list(range(5))
    assert all(frame["ring_current"] > 0 for frame in metadata)
    assert (scan / "experiment_finish.json").exists()
    for name in (SHUTTER, CAMERA, FLAT):
        assert Beamline.proxy(name).state() in (tango.DevState.CLOSE, tango.DevState.ON)


def assert_tomography_hdf5(scan, projections: int, step: float) -> None:
    """4 darks, 4 flats and ``projections`` radios in the scan's HDF5 files, the radios
    at ``step`` degrees apart in their metadata file."""
    for name, number in (("darks", 4), ("flats", 4), ("radios", projections)):
        with h5py.File(scan / f"{name}.h5") as h5:
            assert h5[name].shape == (number, SIZE, SIZE)
    angles = [frame["rotation_angle"]
              for frame in json.loads((scan / "radios_metadata.json").read_text())]
    assert angles == pytest.approx([i * step for i in range(projections)])


def test_stepped_tomography_hdf5_end_to_end(beamline: Beamline) -> None:
    walker = walker_at(WALKER, "tomo")
    walker.write_attribute("writer_class", 1)  # HDF5
    director = Beamline.proxy("test/director/tomo")
    director.write_attribute("num_projections", 12)  # parameters are writable while idle
    try:
        run(director)
    finally:
        walker.write_attribute("writer_class", 0)
    assert director.state() == tango.DevState.ON, director.status()
    assert_tomography_hdf5(beamline.root / "tomo" / "scan_0001", 12, 15.0)
    assert Beamline.proxy(TOMO).read_attribute("position").value == pytest.approx(165.0)


def test_hardware_triggered_tomography_end_to_end(beamline: Beamline) -> None:
    # The tomography motor's server steps and pulses the camera server's trigger input:
    # every projection is written, at its angle, and the camera's wiring is put back.
    walker = walker_at(WALKER, "hwtomo")
    walker.write_attribute("writer_class", 1)  # HDF5
    director = Beamline.proxy("test/director/tomo")
    director.write_attribute("num_projections", 10)
    director.write_attribute("hardware_trigger", True)
    try:
        run(director)
    finally:
        director.write_attribute("hardware_trigger", False)
        walker.write_attribute("writer_class", 0)
    assert director.state() == tango.DevState.ON, director.status()
    assert_tomography_hdf5(beamline.root / "hwtomo" / "scan_0001", 10, 18.0)
    assert Beamline.proxy(TOMO).read_attribute("position").value == pytest.approx(162.0)
    assert Beamline.proxy(TOMO).read_attribute("trigger_output").value.startswith("tcp://")
    camera = Beamline.proxy(CAMERA)
    assert camera.read_attribute("trigger_input").value == ""
    assert camera.state() == tango.DevState.ON


def test_abort_mid_run_cleans_up(beamline: Beamline) -> None:
    walker_at(WALKER, "abort")
    director = Beamline.proxy("test/director/long")
    director.command_inout("Start")
    assert director.state() == tango.DevState.RUNNING
    wait_for(lambda: director.read_attribute("frames_done").value > 30, what="30 frames")
    director.command_inout("Abort")
    assert director.state() == tango.DevState.ON
    assert "aborted" in director.status()
    assert director.read_attribute("frames_done").value < 3004
    assert Beamline.proxy(SHUTTER).state() == tango.DevState.CLOSE
    wait_for(lambda: Beamline.proxy(CAMERA).state() == tango.DevState.ON, 5, "camera ON")
    for motor in (FLAT, TOMO):
        assert Beamline.proxy(motor).state() == tango.DevState.ON
    wait_for(lambda: Beamline.proxy(WALKER).state() == tango.DevState.ON, 5, "walker ON")
    scan = beamline.root / "abort" / "scan_0001"
    assert len(tiffs(scan / "darks")) == 2 and len(tiffs(scan / "flats")) == 2
    assert not list((scan / "radios").glob(".*.part"))


def test_pause_and_resume(beamline: Beamline) -> None:
    walker_at(WALKER, "pause")
    director = Beamline.proxy("test/director/pause")
    director.command_inout("Start")
    director.command_inout("Pause")
    assert director.read_attribute("paused").value
    wait_for(lambda: "paused" in director.status(), what="the pause")
    frames = director.read_attribute("frames_done").value
    time.sleep(0.5)
    assert director.read_attribute("frames_done").value == frames
    assert director.state() == tango.DevState.RUNNING
    director.command_inout("Resume")
    wait_for(lambda: director.state() != tango.DevState.RUNNING, what="the run's end")
    assert director.state() == tango.DevState.ON, director.status()
    assert director.read_attribute("iterations_done").value == 2
    assert director.read_attribute("frames_done").value == 2 * 34
    for scan in ("scan_0001", "scan_0002"):
        assert len(tiffs(beamline.root / "pause" / scan / "radios")) == 30


def test_failing_camera_faults_director_and_keeps_frames(beamline: Beamline) -> None:
    walker = walker_at(WALKER, "failcam")
    director = Beamline.proxy("test/director/failcam")
    run(director)
    assert director.state() == tango.DevState.FAULT
    status = director.status()
    assert "radios" in status and FAILCAM in status and "StateError" in status, status
    scan = beamline.root / "failcam" / "scan_0001"
    assert len(tiffs(scan / "darks")) == 3 and len(tiffs(scan / "flats")) == 3
    wait_for(lambda: walker.state() != tango.DevState.RUNNING, 5, "walker idle")
    assert len(tiffs(scan / "radios")) == walker.read_attribute("frames_written").value


def test_failing_walker_faults_director_and_keeps_frames(beamline: Beamline) -> None:
    director = Beamline.proxy("test/director/failwalker")
    director.command_inout("Start")
    wait_for(lambda: director.read_attribute("frames_done").value > 20, what="20 frames")
    beamline.walker2.stop()
    wait_for(lambda: director.state() != tango.DevState.RUNNING, 30, "the run's end")
    assert director.state() == tango.DevState.FAULT
    assert WALKER2 in director.status().lower(), director.status()
    scan = beamline.root2 / "scan_0001"
    assert len(tiffs(scan / "darks")) == 2 and len(tiffs(scan / "flats")) == 2
    assert len(tiffs(scan / "radios")) >= 1
    assert Beamline.proxy(SHUTTER).state() == tango.DevState.CLOSE
    wait_for(lambda: Beamline.proxy(CAMERA).state() == tango.DevState.ON, 15, "camera ON")
