"""The facility path: our servers under Debian's C++ DataBaseds (MariaDB) and Starter.

Installs ``tango-db mariadb-server tango-starter`` with apt-get when they are missing (no
service is started: policy-rc.d refuses, dbconfig-common is told not to configure), then
runs MariaDB, DataBaseds and a Starter in a private directory on free ports, loads
``tango_db/beamline.json`` with ``json2tango``, and has the Starter start and stop one of
our servers. Everything it started is stopped by PID at the end, also when it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tango

from servers.beamline import executables_dir
from servers.database import free_port
from tango_db import BEAMLINE

pytestmark = [pytest.mark.debian, pytest.mark.tango, pytest.mark.slow,
              pytest.mark.timeout(1200)]  # a first run installs the packages

PACKAGES = ["tango-db", "mariadb-server", "tango-starter"]
DATABASEDS = Path("/usr/lib/tango/DataBaseds")
STARTER = Path("/usr/lib/tango/Starter")
SCHEMA = Path("/usr/share/dbconfig-common/data/tango-db/install/mysql")
PRESEED = ("tango-db tango-db/dbconfig-install boolean false\n"
           "tango-common tango-common/tango-host string localhost:10000\n")
SERVER, DEVICE = "ConcertShutter/beamline", "concert/shutter/1"


def _installed() -> bool:
    return all(subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True,
                              text=True, check=False).stdout.endswith("installed")
               for name in PACKAGES) and DATABASEDS.exists() and STARTER.exists()


def _install() -> None:
    """apt-get update + install, with no service started and no database configured."""
    subprocess.run(["debconf-set-selections"], input=PRESEED, text=True, check=True)
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for argv in (["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
            result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                                    timeout=900)
            if result.returncode != 0:
                pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}"
                            f"{result.stderr[-3000:]}")
    finally:
        if ours:
            policy.unlink()


@pytest.fixture(scope="module")
def debian_tango() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not available: the Debian Tango packages cannot be installed")
    if os.geteuid() != 0:
        pytest.skip("not root: apt-get cannot install the Debian Tango packages")
    if not _installed():
        _install()


def wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen | None,
               log: Path | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not ready within {timeout} s\n{tail}")
        time.sleep(0.2)


class Processes:
    """What this test started, stopped by PID at the end (SIGTERM, then SIGKILL)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen] = []
        self.pids: list[int] = []  # processes started for us by the Starter

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen,
                                                                               Path]:
        log = self.directory / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=self.directory,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc, log

    def stop_all(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def _sql(sock: Path, statement: str | None = None, stdin: str | None = None,
         database: str = "") -> subprocess.CompletedProcess:
    argv = ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root"]
    argv += ["-e", statement] if statement else []
    argv += [database] if database else []
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False,
                          timeout=120)


def start_mariadb(processes: Processes, directory: Path) -> int:
    """A private MariaDB holding the Tango schema; returns its TCP port."""
    data, sock, port = directory / "mysql", directory / "mysqld.sock", free_port()
    init = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                           "--user=root", "--auth-root-authentication-method=socket",
                           "--skip-test-db"], capture_output=True, text=True, check=False,
                          timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    proc, log = processes.start("mariadbd", [
        "mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
        "--bind-address=127.0.0.1", "--user=root", f"--pid-file={directory / 'mysqld.pid'}",
        "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--skip-name-resolve",
    ], dict(os.environ))
    wait_until(lambda: _sql(sock, "SELECT 1").returncode == 0, "MariaDB", proc, log)
    setup = _sql(sock, "CREATE DATABASE tango; "
                       "CREATE USER 'tango'@'127.0.0.1' IDENTIFIED BY 'tango'; "
                       "GRANT ALL ON tango.* TO 'tango'@'127.0.0.1';")
    assert setup.returncode == 0, setup.stderr
    schema = _sql(sock, stdin=SCHEMA.read_text(), database="tango")
    assert schema.returncode == 0, schema.stderr
    return port


def test_starter_runs_our_server_on_debian_databaseds(debian_tango, processes: Processes,
                                                      tmp_path: Path) -> None:
    mysql_port = start_mariadb(processes, tmp_path)
    port = free_port()
    tango_host = f"127.0.0.1:{port}"
    env = {**os.environ, "TANGO_HOST": tango_host, "MYSQL_HOST": f"127.0.0.1:{mysql_port}",
           "MYSQL_USER": "tango", "MYSQL_PASSWORD": "tango", "MYSQL_DATABASE": "tango"}
    dbds, dbds_log = processes.start(
        "DataBaseds", [str(DATABASEDS), "2", "-ORBendPoint", f"giop:tcp:127.0.0.1:{port}"], env)

    def answers() -> bool:
        try:
            tango.Database("127.0.0.1", port).get_info()
            return True
        except tango.DevFailed:
            return False

    wait_until(answers, "DataBaseds", dbds, dbds_log)
    db = tango.Database("127.0.0.1", port)
    assert "Running since" in db.get_info()

    # the beamline file, with dsconfig's own json2tango; a second load changes nothing
    json2tango = [str(executables_dir() / "json2tango"), "-w", "-q", "-n", str(BEAMLINE)]
    client_env = {**os.environ, "TANGO_HOST": tango_host}
    # json2tango -w saves the database's previous contents to a file in TMPDIR: here
    backups = tmp_path / "json2tango-backups"
    backups.mkdir()
    json_env = {**client_env, "TMPDIR": str(backups)}
    first = subprocess.run(json2tango, env=json_env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert first.returncode == 2, first.stdout + first.stderr  # CONFIG_APPLIED
    assert [path.name for path in backups.iterdir()] != [], "json2tango saved no backup"
    again = subprocess.run(json2tango, env=json_env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr  # no changes needed
    assert db.get_device_info(DEVICE).class_name == "Shutter"

    # a Starter for this host, finding our executables on its StartDsPath
    host = socket.gethostname().split(".")[0]
    starter_device = f"tango/admin/{host}"
    info = tango.DbDevInfo()
    info.name, info._class, info.server = starter_device, "Starter", f"Starter/{host}"
    db.add_device(info)
    db.put_device_property(starter_device, {"StartDsPath": [str(executables_dir())],
                                            "LogFileHome": [str(tmp_path / "starter-logs")],
                                            "StartServersAtStartup": ["false"]})
    server_info = tango.DbServerInfo()  # controlled by this host's Starter (as Astor does)
    server_info.name, server_info.host, server_info.mode, server_info.level = SERVER, host, 1, 1
    db.put_server_info(server_info)
    (tmp_path / "starter-logs").mkdir()
    starter, starter_log = processes.start("Starter", [str(STARTER), host], client_env)
    starter_proxy = tango.DeviceProxy(f"tango://{tango_host}/{starter_device}")

    def starter_answers() -> bool:
        try:
            starter_proxy.ping()
            return True
        except tango.DevFailed:
            return False

    wait_until(starter_answers, "Starter", starter, starter_log)
    starter_proxy.set_timeout_millis(10000)
    starter_proxy.command_inout("DevStart", SERVER)
    shutter = tango.DeviceProxy(f"tango://{tango_host}/{DEVICE}")

    def shutter_answers() -> bool:
        try:
            shutter.ping()
            return True
        except tango.DevFailed:
            return False

    wait_until(shutter_answers, f"{SERVER} started by the Starter", starter, starter_log, 60)
    pid = db.get_device_info(f"dserver/{SERVER}").pid
    processes.pids.append(pid)
    assert b"ConcertShutter" in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert shutter.state() == tango.DevState.CLOSE
    assert shutter.info().dev_class == "Shutter"
    wait_until(lambda: SERVER in starter_proxy.command_inout("DevGetRunningServers", True),
               f"the Starter seeing {SERVER} running", starter, starter_log, 30)

    starter_proxy.command_inout("DevStop", SERVER)

    def gone() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rpartition(")")[2].split()[0] in ("Z", "X")

    wait_until(gone, f"{SERVER} stopped by the Starter", starter, starter_log, 30)
    with pytest.raises(tango.DevFailed):
        shutter.ping()
