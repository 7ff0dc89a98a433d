"""``concert tango up/status/down`` and the default beamline file, on real processes.

Every test sets TANGO_HOST to a free port (or to the session's own database) and a private
state directory; whatever a test started is stopped by PID in its teardown.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tango

from servers import beamline
from servers.beamline import BeamlineError, StateDir, load_beamline
from servers.database import EmbeddedDatabase, free_port
from tango_db import BEAMLINE

pytestmark = pytest.mark.tango

CONTRACT_DEVICES = {  # contract §6
    "concert/motor/flat": "LinearMotor",
    "concert/motor/tomo": "ContinuousRotationMotor",
    "concert/motor/vertical": "ContinuousLinearMotor",
    "concert/motor/x": "LinearMotor",
    "concert/motor/y": "LinearMotor",
    "concert/camera/1": "Camera",
    "concert/shutter/1": "Shutter",
    "concert/ring/1": "StorageRing",
    "concert/xraytube/1": "XRayTube",
    "concert/walker/1": "DirectoryWalker",
    "concert/director/1": "ExperimentDirector",
}


def concert(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the ``concert`` command line as a user would (a separate process)."""
    return subprocess.run([sys.executable, "-m", "servers.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def listening(tango_host: str) -> bool:
    host, port = tango_host.rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def environment(tango_host: str, state_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TANGO_HOST": tango_host, "CONCERT_STATE_DIR": str(state_dir),
            **extra}


def recorded_pids(state_dir: Path, tango_host: str) -> dict[str, int]:
    host, port = tango_host.rsplit(":", 1)
    state = StateDir(state_dir, host, int(port))
    pids = {name: record.pid for name, record in state.servers.items()}
    if state.database is not None:
        pids["database"] = state.database.pid
    return pids


def cleanup(state_dir: Path, tango_host: str) -> None:
    """Teardown: ``down``, and SIGKILL by PID whatever it could not stop."""
    pids = recorded_pids(state_dir, tango_host)
    try:
        beamline.down(state_dir, tango_host, grace=3)
    except BeamlineError:
        pass
    for pid in pids.values():
        if pid_alive(pid):
            os.kill(pid, 9)


def nothing_started(state_dir: Path, tango_host: str) -> bool:
    return not recorded_pids(state_dir, tango_host) and not listening(tango_host)


# -- the file, offline ---------------------------------------------------------------------
def test_default_beamline_is_the_contract_beamline() -> None:
    loaded = load_beamline()
    assert loaded.path == BEAMLINE.resolve()
    classes = {device: cls for spec in loaded.servers for device, cls in spec.devices}
    assert classes == CONTRACT_DEVICES
    for spec in loaded.servers:
        assert Path(spec.executable).name == spec.server
        for klass in loaded.config["servers"][spec.server][spec.instance].values():
            for definition in klass.values():
                assert {"concert_class", "concert_args"} <= set(definition["properties"])
    flat = loaded.config["servers"]["ConcertMotor"]["beamline"]["LinearMotor"]
    assert flat["concert/motor/flat"]["attribute_properties"]["position"]["max_value"] == ["90"]


def write_config(path: Path, mutate) -> Path:
    config = json.loads(BEAMLINE.read_text())
    mutate(config)
    path.write_text(json.dumps(config))
    return path


def _motor(config: dict) -> dict:
    return config["servers"]["ConcertMotor"]["beamline"]["LinearMotor"]["concert/motor/x"]


def _bad_quantity(config: dict) -> None:
    _motor(config)["properties"]["concert_args"] = ['{"position": "3 blorps"}']


def _unknown_class(config: dict) -> None:
    shutters = config["servers"]["ConcertShutter"]["beamline"]
    shutters["FluxCapacitor"] = shutters.pop("Shutter")


def _unknown_concert_class(config: dict) -> None:
    _motor(config)["properties"]["concert_class"] = ["concert_core.devices.motors.dummy:Nope"]


def _wrong_family(config: dict) -> None:
    _motor(config)["properties"]["concert_class"] = ["concert_core.devices.shutters.dummy:Shutter"]


def _unknown_server(config: dict) -> None:
    config["servers"]["ConcertNoSuchServer"] = {"a": {"Thing": {"concert/thing/1": {}}}}


def _unknown_argument(config: dict) -> None:
    _motor(config)["properties"]["concert_args"] = ['{"colour": "red"}']


@pytest.mark.parametrize(("mutate", "expected"), [
    (_bad_quantity, ["concert/motor/x", "'3 blorps'", "pint"]),
    (_unknown_class, ["ConcertShutter/beamline", "FluxCapacitor"]),
    (_unknown_concert_class, ["concert/motor/x", "has no 'Nope'"]),
    (_wrong_family, ["concert/motor/x", "is not a LinearMotor"]),
    (_unknown_server, ["ConcertNoSuchServer", "no executable"]),
    (_unknown_argument, ["concert/motor/x", "colour"]),
])
def test_bad_file_is_refused_before_anything_starts(tmp_path: Path, mutate, expected) -> None:
    config = write_config(tmp_path / "bad.json", mutate)
    tango_host = f"127.0.0.1:{free_port()}"
    try:
        with pytest.raises(BeamlineError) as refused:
            beamline.up(config, tmp_path / "state", tango_host)
        for text in expected:
            assert text in str(refused.value)
        assert nothing_started(tmp_path / "state", tango_host)
    finally:
        cleanup(tmp_path / "state", tango_host)


def test_malformed_json_is_refused_by_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.json"
    config.write_text(BEAMLINE.read_text()[:-20])
    tango_host = f"127.0.0.1:{free_port()}"
    try:
        result = concert("tango", "up", "--config", str(config),
                         env=environment(tango_host, tmp_path / "state"))
        assert result.returncode != 0
        assert "malformed JSON" in result.stderr and str(config) in result.stderr
        assert nothing_started(tmp_path / "state", tango_host)
    finally:
        cleanup(tmp_path / "state", tango_host)


# -- the whole default beamline ---------------------------------------------------------------
@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """The default beamline brought up by ``concert tango up`` from a clean state."""
    state_dir = tmp_path_factory.mktemp("beamline_state")
    tango_host = f"127.0.0.1:{free_port()}"
    env = environment(tango_host, state_dir)
    try:
        result = concert("tango", "up", env=env)
        yield env, result.stdout + result.stderr + f"\nexit code {result.returncode}"
    finally:
        cleanup(state_dir, tango_host)


def test_up_brings_every_device_up(running) -> None:
    env, output = running
    assert output.endswith("exit code 0"), output
    pids = recorded_pids(Path(env["CONCERT_STATE_DIR"]), env["TANGO_HOST"])
    assert set(pids) == {"database", *(spec.name for spec in load_beamline().servers)}
    assert all(pid_alive(pid) for pid in pids.values())
    for device, cls in CONTRACT_DEVICES.items():
        proxy = tango.DeviceProxy(f"tango://{env['TANGO_HOST']}/{device}")
        assert proxy.info().dev_class == cls
        assert proxy.state() not in (tango.DevState.FAULT, tango.DevState.UNKNOWN), device
        assert device in output
    assert "embedded database started" in output


def test_soft_limits_of_the_file_are_the_user_limits(running) -> None:
    env, _ = running
    flat = tango.DeviceProxy(f"tango://{env['TANGO_HOST']}/concert/motor/flat")
    config = flat.get_attribute_config("position")
    assert (float(config.min_value), float(config.max_value)) == (-90.0, 90.0)
    with pytest.raises(tango.DevFailed):
        flat.write_attribute("position", 95.0)
    # the concert device itself holds them: a relative move past 90 mm is refused by it
    deadline = time.monotonic() + 5
    while True:
        try:
            flat.command_inout("Move", 95.0)
        except tango.DevFailed as error:
            assert "Limit" in error.args[0].reason
            break
        flat.command_inout("Stop")
        assert time.monotonic() < deadline, "the file's soft limits never reached the device"
        time.sleep(0.2)
    assert flat.read_attribute("position").value == pytest.approx(0.0, abs=1e-6)


def test_second_up_is_harmless(running) -> None:
    env, _ = running
    state_dir, tango_host = Path(env["CONCERT_STATE_DIR"]), env["TANGO_HOST"]
    before = recorded_pids(state_dir, tango_host)
    result = concert("tango", "up", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("already running") == len(load_beamline().servers)
    assert recorded_pids(state_dir, tango_host) == before
    host, port = tango_host.rsplit(":", 1)
    assert beamline.apply_beamline(load_beamline(), tango.Database(host, int(port))) == 0


def test_status_lists_servers_pids_and_logs(running) -> None:
    env, _ = running
    result = concert("tango", "status", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    pids = recorded_pids(Path(env["CONCERT_STATE_DIR"]), env["TANGO_HOST"])
    lines = result.stdout.splitlines()
    for spec in load_beamline().servers:
        (line,) = [line for line in lines if line.startswith(spec.name + " ")]
        assert str(pids[spec.name]) in line.split()
        log = Path(line.split()[-1])
        assert log.is_file() and "Ready to accept request" in log.read_text()
    assert f"pid {pids['database']}" in result.stdout


def test_down_stops_exactly_what_up_started(running) -> None:
    env, _ = running
    state_dir, tango_host = Path(env["CONCERT_STATE_DIR"]), env["TANGO_HOST"]
    pids = recorded_pids(state_dir, tango_host)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 env=environment(tango_host, state_dir))
    try:
        result = concert("tango", "down", env=env)
        assert result.returncode == 0, result.stderr
        assert all(wait_gone(pid) for pid in pids.values())
        assert not listening(tango_host)
        assert bystander.poll() is None
        assert recorded_pids(state_dir, tango_host) == {}
        again = concert("tango", "down", env=env)
        assert again.returncode == 0 and "nothing started" in again.stdout
    finally:
        bystander.kill()
        bystander.wait()


# -- a facility's database and a server that crashes -------------------------------------------
def test_crashing_server_is_reported_and_a_foreign_database_is_left_alone(
    tango_db: EmbeddedDatabase, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "ConcertBroken"
    broken.write_text(f"#!{sys.executable}\nimport sys\n"
                      "print('ConcertBroken: simulated crash at start', flush=True)\n"
                      "sys.exit(3)\n")
    broken.chmod(0o755)
    config = tmp_path / "crash.json"
    config.write_text(json.dumps({"servers": {
        "ConcertShutter": {"crashtest": {"Shutter": {"test/crash/shutter": {"properties": {
            "concert_args": ['{"motion_time": "10 ms"}']}}}}},
        "ConcertBroken": {"crashtest": {"Broken": {"test/crash/broken": {}}}},
    }}))
    state_dir = tmp_path / "state"
    env = environment(tango_db.tango_host, state_dir,
                      PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        result = concert("tango", "up", "--config", str(config), "--timeout", "30", env=env)
        assert result.returncode != 0
        assert "server ConcertBroken/crashtest did not come up" in result.stdout
        assert "simulated crash at start" in result.stdout
        pids = recorded_pids(state_dir, tango_db.tango_host)
        assert set(pids) == {"ConcertShutter/crashtest"}  # the database was not ours
        shutter = tango.DeviceProxy(f"tango://{tango_db.tango_host}/test/crash/shutter")
        assert shutter.state() == tango.DevState.CLOSE
        down = concert("tango", "down", env=env)
        assert down.returncode == 0, down.stderr
        assert wait_gone(pids["ConcertShutter/crashtest"])
        assert tango_db.running and "Running since" in tango_db.database().get_info()
    finally:
        cleanup(state_dir, tango_db.tango_host)
        db = tango_db.database()
        for server in ("ConcertShutter/crashtest", "ConcertBroken/crashtest"):
            try:
                db.delete_server(server)
            except tango.DevFailed:
                pass
