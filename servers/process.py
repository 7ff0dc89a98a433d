"""Plumbing for Tango device server processes: registration, start, wait, stop.

Nothing here knows about concert; it only runs processes against a Tango database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import tango

from servers.lifeline import tie_to_this_process

__all__ = [
    "LOOPBACK_ENDPOINT",
    "ChildProcess",
    "ProcessStartError",
    "ServerProcess",
    "log_tail",
    "register_server",
    "start_server",
    "terminate",
]

#: omniORB endpoint that keeps a server on loopback with an OS-chosen port.
LOOPBACK_ENDPOINT = "giop:tcp:127.0.0.1:0"

_POLL_INTERVAL = 0.05


class ProcessStartError(RuntimeError):
    """A Tango process died or did not answer in time; the message ends with its log tail."""


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last *lines* lines of the text file *path* ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def terminate(proc: subprocess.Popen, grace: float = 5.0) -> int | None:
    """Stop *proc* by its PID: SIGTERM, then SIGKILL after *grace* seconds; reap it.

    Returns the exit code (None if the process had never been started).
    """
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def register_server(
    db: tango.Database,
    server: str,
    instance: str,
    tango_class: str,
    devices: Sequence[str],
    properties: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> None:
    """Define ``server/instance`` serving *devices* of *tango_class* in *db*.

    *properties* maps a device name to its device properties
    (``{"sys/x/1": {"concert_class": ["mod:Cls"]}}``).
    """
    server_instance = f"{server}/{instance}"
    infos = []
    for name in devices:
        info = tango.DbDevInfo()
        info.name = name
        info._class = tango_class
        info.server = server_instance
        infos.append(info)
    db.add_server(server_instance, infos, with_dserver=True)
    for device, props in (properties or {}).items():
        if device not in devices:
            raise ValueError(f"properties given for {device!r}, which is not among {list(devices)}")
        db.put_device_property(device, {key: list(value) for key, value in props.items()})


class ChildProcess:
    """A process this object starts (``start`` in subclasses) and stops by its PID:
    SIGTERM, then SIGKILL after ``grace`` seconds. ``with`` starts it unless it runs and
    stops it at the end."""

    _proc: subprocess.Popen | None = None
    grace: float = 5.0

    def start(self) -> ChildProcess:
        raise NotImplementedError

    def __enter__(self) -> ChildProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """PID of the current process, None before the first start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process exists (it may not answer yet)."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM by PID, then SIGKILL after the grace period; return the exit code or None."""
        if self._proc is None:
            return None
        return terminate(self._proc, self.grace)


class ServerProcess(ChildProcess):
    """One device server process; ``start`` returns once all its devices answer ``ping``.

    With ``exit_with_parent`` (the default) the server ends when this process ends, even
    if it is killed, provided the server calls :func:`servers.lifeline.exit_with_parent`
    (every server of this project does); pass False for servers meant to outlive it."""

    def __init__(
        self,
        argv: Sequence[str],
        tango_host: str,
        devices: Sequence[str],
        log_file: Path,
        timeout: float = 20.0,
        env: Mapping[str, str] | None = None,
        grace: float = 5.0,
        exit_with_parent: bool = True,
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.tango_host = tango_host
        self.devices = list(devices)
        self.log_file = Path(log_file)
        self.timeout = timeout
        self.grace = grace
        self.startup_time: float | None = None
        self._extra_env = dict(env or {})
        self.exit_with_parent = exit_with_parent
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<ServerProcess pid={self.pid} argv={self.argv!r} TANGO_HOST={self.tango_host}>"

    @property
    def returncode(self) -> int | None:
        """Exit code once the process ended, else None."""
        return self._proc.poll() if self._proc is not None else None

    def trl(self, device: str) -> str:
        """Full Tango resource locator of *device* on this server's database."""
        return f"tango://{self.tango_host}/{device}"

    def proxy(self, device: str | None = None) -> tango.DeviceProxy:
        """A DeviceProxy to *device* (default: the first device), independent of TANGO_HOST."""
        return tango.DeviceProxy(self.trl(device or self.devices[0]))

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log."""
        return log_tail(self.log_file, lines)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._extra_env)
        env["TANGO_HOST"] = self.tango_host
        env.setdefault("PYTHONUNBUFFERED", "1")
        return tie_to_this_process(env, self.exit_with_parent)

    def _argv(self) -> list[str]:
        if any(arg.lower() == "-orbendpoint" for arg in self.argv):
            return list(self.argv)
        return [*self.argv, "-ORBendPoint", LOOPBACK_ENDPOINT]

    def start(self) -> ServerProcess:
        """Launch the process and wait until every device answers; else raise ProcessStartError."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_file.open("ab") as log:
            log.write(
                f"--- start {' '.join(self._argv())} (TANGO_HOST={self.tango_host})\n".encode()
            )
            log.flush()
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
            )
        try:
            self._wait_ready(began + self.timeout)
        except BaseException:
            terminate(self._proc, self.grace)
            raise
        self.startup_time = time.monotonic() - began
        return self

    def _wait_ready(self, deadline: float) -> None:
        pending = list(self.devices)
        proxies: dict[str, tango.DeviceProxy] = {}
        last_error = ""
        while pending:
            code = self._proc.poll() if self._proc is not None else None
            if code is not None:
                self._fail(f"exited with code {code} before its devices answered")
            if time.monotonic() > deadline:
                self._fail(
                    f"devices {pending} did not answer within {self.timeout:g} s ({last_error})"
                )
            device = pending[0]
            try:
                if device not in proxies:
                    proxy = tango.DeviceProxy(self.trl(device))
                    proxy.set_timeout_millis(1000)
                    proxies[device] = proxy
                proxies[device].ping()
                pending.pop(0)
                continue
            except tango.DevFailed as error:
                last_error = (
                    error.args[0].desc.strip().splitlines()[0] if error.args else str(error)
                )
            time.sleep(_POLL_INTERVAL)

    def _fail(self, what: str) -> None:
        raise ProcessStartError(
            f"server {self.argv!r} (TANGO_HOST={self.tango_host}) {what}\n"
            f"--- tail of {self.log_file} ---\n{self.log_tail()}"
        )

    def restart(self) -> ServerProcess:
        """Stop (if running) and start again, waiting for the devices as in ``start``."""
        self.stop()
        return self.start()


def start_server(
    argv: Sequence[str],
    tango_host: str,
    devices: Sequence[str],
    log_file: Path,
    timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
    exit_with_parent: bool = True,
) -> ServerProcess:
    """Start a device server process with ``TANGO_HOST`` set; wait until its *devices* answer.

    Unless *argv* has its own ``-ORBendPoint``, the server listens on loopback with a free port.
    """
    return ServerProcess(argv, tango_host, devices, log_file, timeout=timeout, env=env,
                         exit_with_parent=exit_with_parent).start()
