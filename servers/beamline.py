"""A whole beamline on a Tango database: load and check a beamline file, run its servers.

A beamline file is dsconfig JSON (``servers -> Server -> instance -> Class -> device``).
:func:`load_beamline` checks it offline (schema, known servers and classes, every device's
``concert_class``/``concert_args``), so a bad file is refused before anything starts.
:func:`up` uses the database named by ``TANGO_HOST`` (starting the embedded one when none
answers on this machine), loads the file, starts every server concurrently and records
what it started (PID and process start time) in the state directory; :func:`status` and
:func:`down` read that record. ``down`` stops exactly what ``up`` started, nothing else.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import os
import shutil
import signal
import socket
import sysconfig
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import tango
from dsconfig.formatting import SCHEMA_FILENAME

from servers.configuration import ConfigurationError, check_device_config
from servers.database import EmbeddedDatabase
from servers.families import SERVERS
from servers.process import LOOPBACK_ENDPOINT, ProcessStartError, ServerProcess
from tango_db import BEAMLINE

__all__ = [
    "DEFAULT_PORT",
    "Beamline",
    "BeamlineError",
    "DeviceReport",
    "DownReport",
    "ProcessRecord",
    "ServerReport",
    "ServerSpec",
    "StateDir",
    "Report",
    "apply_beamline",
    "down",
    "executables_dir",
    "find_executable",
    "is_local",
    "load_beamline",
    "resolve_tango_host",
    "state_root",
    "status",
    "up",
]

#: Port of the database when ``TANGO_HOST`` is unset (for users; tests always set it).
DEFAULT_PORT = 10000
#: Tango states that mean a device did not come up.
BAD_STATES = frozenset({"FAULT", "UNKNOWN", "DOWN", "NO ANSWER"})


class BeamlineError(RuntimeError):
    """A refusal, with a message for the user (nothing was started because of it)."""


# -- the beamline file ------------------------------------------------------------------
@dataclass(frozen=True)
class ServerSpec:
    """One ``Server/instance`` of a beamline file and the devices it serves."""

    server: str
    instance: str
    devices: tuple[tuple[str, str], ...]  # (device name, Tango class)
    executable: str

    @property
    def name(self) -> str:
        return f"{self.server}/{self.instance}"

    @property
    def device_names(self) -> list[str]:
        return [device for device, _ in self.devices]


@dataclass
class Beamline:
    """A checked beamline file."""

    path: Path
    config: dict[str, Any]
    servers: list[ServerSpec]

    @property
    def devices(self) -> list[str]:
        return [device for spec in self.servers for device in spec.device_names]


def executables_dir() -> Path:
    """The directory of this installation's server executables (the venv's ``bin``)."""
    return Path(sysconfig.get_path("scripts"))


def find_executable(server: str) -> str | None:
    """The server's executable: first beside this interpreter's scripts, then on PATH."""
    local = executables_dir() / server
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(server)


def _schema() -> dict[str, Any]:
    with open(SCHEMA_FILENAME) as schema:
        return json.load(schema)


def _first(properties: dict[str, list[str]], name: str) -> str | None:
    value = properties.get(name)
    return "\n".join(value) if value else None


def _check_server(server: str, instance: str, classes: dict[str, Any]) -> ServerSpec:
    executable = find_executable(server)
    published = {entry.tango_class: entry for entry in SERVERS.get(server, [])}
    if executable is None:
        if server in SERVERS:
            raise BeamlineError(f"{server}/{instance}: the executable {server!r} is not "
                                f"installed (pip install -e . puts it into {executables_dir()})")
        raise BeamlineError(f"{server}/{instance}: unknown server {server!r} (known: "
                            f"{', '.join(SERVERS)}) and no executable {server!r} on PATH")
    devices: list[tuple[str, str]] = []
    for tango_class, members in classes.items():
        entry = published.get(tango_class)
        if server in SERVERS and entry is None:
            raise BeamlineError(
                f"{server}/{instance}: unknown class {tango_class!r} for {server} "
                f"(it serves {', '.join(published)})")
        for device, definition in members.items():
            devices.append((device, tango_class))
            if entry is None:  # a facility's own server: its configuration is its business
                continue
            properties = definition.get("properties", {})
            try:
                check_device_config(
                    device, entry.family_class(),
                    _first(properties, "concert_class") or entry.default,
                    _first(properties, "concert_args"))
            except ConfigurationError as error:
                raise BeamlineError(f"{server}/{instance}: {error}") from None
    if not devices:
        raise BeamlineError(f"{server}/{instance}: no devices")
    return ServerSpec(server, instance, tuple(devices), executable)


def load_beamline(path: Path | str | None = None) -> Beamline:
    """Read and check a beamline file offline; raise :class:`BeamlineError` naming the problem."""
    path = Path(path) if path is not None else BEAMLINE
    try:
        text = path.read_text()
    except OSError as error:
        raise BeamlineError(f"cannot read beamline file {path}: {error.strerror}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise BeamlineError(f"{path}: malformed JSON at line {error.lineno}, column "
                            f"{error.colno}: {error.msg}") from None
    try:
        jsonschema.validate(config, _schema())
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "top level"
        raise BeamlineError(f"{path}: not a dsconfig file at {where}: {error.message}") from None
    servers = config.get("servers") or {}
    if not servers:
        raise BeamlineError(f"{path}: no servers")
    specs = [_check_server(server, instance, classes)
             for server, instances in servers.items()
             for instance, classes in instances.items()]
    seen: dict[str, str] = {}
    for spec in specs:
        for device in spec.device_names:
            if device.lower() in seen:
                raise BeamlineError(f"{path}: device {device} is in both {seen[device.lower()]} "
                                    f"and {spec.name}")
            seen[device.lower()] = spec.name
    return Beamline(path.resolve(), config, specs)


def apply_beamline(beamline: Beamline, db: tango.Database) -> int:
    """Load the file into *db* as ``json2tango -w`` does; return the number of changes."""
    from dsconfig.json2tango import apply_config, prepare_config

    config = prepare_config(copy.deepcopy(beamline.config))
    calls = apply_config(config, db, write=False)[2]
    for method, args, kwargs in calls:  # as json2tango -w, without its progress bar
        getattr(db, method)(*args, **kwargs)
    return len(calls)


# -- where and what: TANGO_HOST, the state directory, PID records ------------------------
def resolve_tango_host(tango_host: str | None = None) -> tuple[str, int]:
    """``(host, port)`` from *tango_host*, else ``TANGO_HOST``, else ``localhost:10000``."""
    text = tango_host or os.environ.get("TANGO_HOST") or f"localhost:{DEFAULT_PORT}"
    first = text.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BeamlineError(f"TANGO_HOST {text!r} is not of the form host:port")
    return host, int(port)


def is_local(host: str) -> bool:
    """True when *host* names this machine (an address of it can be bound)."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    for *_, address in infos:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address[0], 0))
                return True
            except OSError:
                continue
    return False


def _is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None, socket.AF_INET))
    except OSError:
        return False


def state_root(state_dir: Path | str | None = None) -> Path:
    """*state_dir*, else ``CONCERT_STATE_DIR``, else ``$XDG_STATE_HOME/concert``
    (``~/.local/state/concert``)."""
    if state_dir:
        return Path(state_dir).expanduser()
    if os.environ.get("CONCERT_STATE_DIR"):
        return Path(os.environ["CONCERT_STATE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "concert"


def _proc_start_time(pid: int) -> int | None:
    """The start time of *pid* in clock ticks, None if it is gone (zombies are reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # pragma: no cover - no /proc: alive or not, without a start time
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return 0
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return int(fields[19])


@dataclass
class ProcessRecord:
    """A process ``up`` started: PID and start time (a reused PID is never taken for it)."""

    pid: int
    start_time: int | None
    log: str
    argv: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, pid: int, log: Path, argv: Iterable[str] = ()) -> ProcessRecord:
        return cls(pid, _proc_start_time(pid), str(log), list(argv))

    @property
    def alive(self) -> bool:
        started = _proc_start_time(self.pid)
        return started is not None and started == self.start_time


class StateDir:
    """The record of one TANGO_HOST: ``<root>/<host>_<port>/`` with ``state.json``,
    ``logs/`` and, for the embedded database, its sqlite file and log."""

    def __init__(self, root: Path, host: str, port: int) -> None:
        self.path = root / f"{host}_{port}"
        self.file = self.path / "state.json"
        self.logs = self.path / "logs"
        self.config: str | None = None
        self.database: ProcessRecord | None = None
        self.servers: dict[str, ProcessRecord] = {}
        self._lock = threading.Lock()
        if self.file.exists():
            data = json.loads(self.file.read_text())
            self.config = data.get("config")
            self.database = ProcessRecord(**data["database"]) if data.get("database") else None
            self.servers = {name: ProcessRecord(**record)
                            for name, record in data.get("servers", {}).items()}

    def log_file(self, server_name: str) -> Path:
        return self.logs / f"{server_name.replace('/', '-')}.log"

    def record_server(self, name: str, record: ProcessRecord) -> None:
        """Record a started server and save at once (safe from several threads)."""
        with self._lock:
            self.servers[name] = record
        self.save()

    def save(self) -> None:
        """Write the record atomically (safe to call from several threads)."""
        with self._lock:
            self.path.mkdir(parents=True, exist_ok=True)
            data = {
                "config": self.config,
                "database": asdict(self.database) if self.database else None,
                "servers": {name: asdict(record) for name, record in self.servers.items()},
            }
            temporary = self.file.with_suffix(".tmp")
            temporary.write_text(json.dumps(data, indent=2) + "\n")
            temporary.replace(self.file)

    def remove(self) -> None:
        self.file.unlink(missing_ok=True)


# -- asking the control system ------------------------------------------------------------
def _database(host: str, port: int) -> tango.Database | None:
    """A client of the database at host:port if one answers, else None."""
    try:
        db = tango.Database(host, port)
        db.get_info()
        return db
    except tango.DevFailed:
        return None


@dataclass
class DeviceReport:
    """One device: its Tango class, State (or DOWN / NO ANSWER) and Status."""

    name: str
    tango_class: str
    state: str
    status: str = ""

    @property
    def ok(self) -> bool:
        return self.state not in BAD_STATES


def _device_report(trl_prefix: str, device: str, tango_class: str,
                   timeout_ms: int = 3000) -> DeviceReport:
    try:
        proxy = tango.DeviceProxy(f"{trl_prefix}/{device}")
        proxy.set_timeout_millis(timeout_ms)
        return DeviceReport(device, tango_class, str(proxy.state()), proxy.status())
    except tango.DevFailed as error:
        reason = error.args[0].reason if error.args else ""
        label = "NO ANSWER" if "TIMEOUT" in reason.upper() else "DOWN"
        desc = error.args[0].desc.strip().splitlines()[0] if error.args else str(error)
        return DeviceReport(device, tango_class, label, desc)


def _answers(trl_prefix: str, devices: Iterable[str]) -> bool:
    try:
        for device in devices:
            proxy = tango.DeviceProxy(f"{trl_prefix}/{device}")
            proxy.set_timeout_millis(1000)
            proxy.ping()
        return True
    except tango.DevFailed:
        return False


def _exported_pid(db: tango.Database | None, device: str) -> int | None:
    if db is None:
        return None
    try:
        info = db.get_device_info(device)
    except tango.DevFailed:
        return None
    return info.pid if info.exported and info.pid > 0 else None


# -- up / status / down --------------------------------------------------------------------
@dataclass
class ServerReport:
    """One server: what ``up`` did (or what ``status`` found), its PID, log and devices."""

    name: str
    action: str  # started, already running, running (not started by concert), failed, down
    pid: int | None
    log: str | None
    devices: list[DeviceReport]
    seconds: float | None = None
    error: str = ""


@dataclass
class Report:
    """The outcome of ``up`` or ``status``."""

    tango_host: str
    database: str
    state_dir: Path
    config: Path | None
    servers: list[ServerReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def _start_one(spec: ServerSpec, state: StateDir, tango_host: str, endpoint: str,
               timeout: float, exit_with_caller: bool) -> ServerReport:
    log = state.log_file(spec.name)
    process = ServerProcess([spec.executable, spec.instance, "-ORBendPoint", endpoint],
                            tango_host, spec.device_names, log, timeout=timeout,
                            exit_with_parent=exit_with_caller)
    try:
        process.start()
    except ProcessStartError as error:
        return ServerReport(spec.name, "failed", None, str(log), [], error=str(error))
    assert process.pid is not None
    state.record_server(spec.name, ProcessRecord.of(process.pid, log, process.argv))
    return ServerReport(spec.name, "started", process.pid, str(log), [],
                        seconds=process.startup_time)


def up(config: Path | str | None = None, state_dir: Path | str | None = None,
       tango_host: str | None = None, timeout: float = 60.0,
       exit_with_caller: bool = False) -> Report:
    """Bring the beamline of *config* up; see the module doc. Raises :class:`BeamlineError`
    (before starting anything) for a bad file or an unusable database.

    The servers (and an embedded database) outlive this process until :func:`down`;
    with ``exit_with_caller`` those started here end when this process ends, even if it
    is killed (a benchmark's or a demo's beamline)."""
    began = time.monotonic()
    beamline = load_beamline(config)
    host, port = resolve_tango_host(tango_host)
    state = StateDir(state_root(state_dir), host, port)
    report = Report(f"{host}:{port}", "", state.path, beamline.path)
    db = _database(host, port)
    if db is not None:
        ours = state.database is not None and state.database.alive
        report.database = f"running (pid {state.database.pid}, started by concert)" if ours \
            else "running (not started by concert)"
    else:
        if not is_local(host):
            raise BeamlineError(f"no Tango database answers at {host}:{port}, and {host} is "
                                "not this machine: start it there or set TANGO_HOST")
        embedded = EmbeddedDatabase(state.path, port=port,
                                    host="127.0.0.1" if _is_loopback(host) else host,
                                    exit_with_parent=exit_with_caller)
        try:
            embedded.start()
        except ProcessStartError as error:
            raise BeamlineError(f"the embedded Tango database did not start on {host}:{port}: "
                                f"{error}") from None
        assert embedded.pid is not None
        state.database = ProcessRecord.of(embedded.pid, embedded.log_file)
        state.save()
        report.database = (f"embedded database started (pid {embedded.pid}, "
                           f"sqlite {embedded.sqlite_file})")
        db = tango.Database(host, port)
    state.config = str(beamline.path)
    state.save()
    apply_beamline(beamline, db)

    trl = f"tango://{host}:{port}"
    endpoint = LOOPBACK_ENDPOINT if _is_loopback(host) else "giop:tcp::0"
    results: dict[str, ServerReport] = {}
    to_start: list[ServerSpec] = []
    for spec in beamline.servers:
        record = state.servers.get(spec.name)
        if record is not None and record.alive:
            results[spec.name] = ServerReport(spec.name, "already running", record.pid,
                                              record.log, [])
        elif _answers(trl, spec.device_names):
            results[spec.name] = ServerReport(spec.name, "running (not started by concert)",
                                              _exported_pid(db, spec.device_names[0]), None, [])
        else:
            to_start.append(spec)
    if to_start:
        with ThreadPoolExecutor(max_workers=len(to_start)) as pool:
            futures = {spec.name: pool.submit(_start_one, spec, state, report.tango_host,
                                              endpoint, timeout, exit_with_caller)
                       for spec in to_start}
            for name, future in futures.items():
                results[name] = future.result()
    for spec in beamline.servers:
        result = results[spec.name]
        report.servers.append(result)
        if result.action == "failed":
            report.problems.append(f"server {spec.name} did not come up: {result.error}")
            continue
        result.devices = [_device_report(trl, device, cls) for device, cls in spec.devices]
        for device in result.devices:
            if not device.ok:
                report.problems.append(f"device {device.name} of {spec.name} is {device.state}: "
                                       f"{device.status}")
    report.seconds = time.monotonic() - began
    return report


def status(state_dir: Path | str | None = None, tango_host: str | None = None,
           config: Path | str | None = None) -> Report:
    """Servers and devices of the beamline (the file ``up`` used, else *config* or the
    default) with their State, PID and log."""
    host, port = resolve_tango_host(tango_host)
    state = StateDir(state_root(state_dir), host, port)
    beamline = load_beamline(config or state.config)
    report = Report(f"{host}:{port}", "", state.path, beamline.path)
    db = _database(host, port)
    if db is None:
        report.database = "no database answers"
        report.problems.append(f"no Tango database answers at {host}:{port}")
    elif state.database is not None and state.database.alive:
        report.database = (f"embedded database (pid {state.database.pid}, "
                           f"log {state.database.log})")
    else:
        report.database = "running (not started by concert)"
    trl = f"tango://{host}:{port}"
    for spec in beamline.servers:
        record = state.servers.get(spec.name)
        ours = record is not None and record.alive
        devices = ([_device_report(trl, device, cls) for device, cls in spec.devices]
                   if db is not None else
                   [DeviceReport(device, cls, "DOWN") for device, cls in spec.devices])
        if ours:
            assert record is not None
            action, pid, log = "running", record.pid, record.log
        elif any(device.state != "DOWN" for device in devices):
            action, pid, log = ("running (not started by concert)",
                                _exported_pid(db, spec.device_names[0]), None)
        else:
            action, pid = "down", None
            log = str(state.log_file(spec.name)) if state.log_file(spec.name).exists() else None
        report.servers.append(ServerReport(spec.name, action, pid, log, devices))
        report.problems.extend(f"device {device.name} of {spec.name} is {device.state}"
                               for device in devices if not device.ok)
    return report


@dataclass
class DownReport:
    """What ``down`` stopped (name -> PID) and what had already gone."""

    tango_host: str
    stopped: dict[str, int] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)


def _stop(records: dict[str, ProcessRecord], grace: float) -> None:
    """SIGTERM every living record, SIGKILL what is left after *grace* seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        living = [record for record in records.values() if record.alive]
        for record in living:
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, sig)
        deadline = time.monotonic() + wait
        while any(record.alive for record in living) and time.monotonic() < deadline:
            time.sleep(0.05)


def down(state_dir: Path | str | None = None, tango_host: str | None = None,
         grace: float = 5.0) -> DownReport:
    """Stop the servers ``up`` started, then its embedded database; nothing else."""
    host, port = resolve_tango_host(tango_host)
    state = StateDir(state_root(state_dir), host, port)
    report = DownReport(f"{host}:{port}")
    for group in (state.servers, {"database": state.database} if state.database else {}):
        living = {name: record for name, record in group.items() if record.alive}
        report.gone.extend(name for name in group if name not in living)
        _stop(living, grace)
        report.stopped.update({name: record.pid for name, record in living.items()})
        still = [name for name, record in living.items() if record.alive]
        if still:
            raise BeamlineError(f"could not stop {', '.join(still)}")
    state.remove()
    return report

