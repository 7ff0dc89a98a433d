"""Fixtures that run a real Tango database and real device server processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import pytest
import tango

from servers.database import EmbeddedDatabase
from servers.process import ServerProcess, register_server


class ServerFactory(Protocol):
    """Signature of the ``tango_server`` fixture."""

    def __call__(
        self,
        argv: Sequence[str],
        server: str,
        instance: str,
        tango_class: str,
        devices: Sequence[str],
        properties: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        timeout: float = 20.0,
        env: Mapping[str, str] | None = None,
    ) -> ServerProcess: ...


class TangoServers:
    """Registers server instances and runs their processes; :meth:`close` stops every
    process it started (by PID) and removes every registration, also after failures."""

    def __init__(self, db: EmbeddedDatabase, log_dir: Path) -> None:
        self.db = db
        self.log_dir = log_dir
        self.processes: list[ServerProcess] = []
        self.registered: list[str] = []

    def prepare(
        self,
        argv: Sequence[str],
        server: str,
        instance: str,
        classes: Mapping[str, Sequence[str]],
        properties: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        timeout: float = 20.0,
        env: Mapping[str, str] | None = None,
    ) -> ServerProcess:
        """Register ``server/instance`` with ``classes`` (Tango class -> device names) and
        return its (not yet started) process."""
        database = self.db.database()
        devices = [device for names in classes.values() for device in names]
        self.registered.append(f"{server}/{instance}")
        for tango_class, names in classes.items():
            register_server(database, server, instance, tango_class, names)
        for device, props in (properties or {}).items():
            if device not in devices:
                raise ValueError(f"properties given for {device!r}, not among {devices}")
            database.put_device_property(device, {key: list(value)
                                                  for key, value in props.items()})
        process = ServerProcess(argv, self.db.tango_host, devices,
                                self.log_dir / f"{server}-{instance}.log", timeout, env)
        self.processes.append(process)
        return process

    def start(self, *args, **kwargs) -> ServerProcess:
        """As :meth:`prepare`, then start the process and wait for its devices."""
        return self.prepare(*args, **kwargs).start()

    @staticmethod
    def start_all(processes: Sequence[ServerProcess]) -> None:
        """Start ``processes`` concurrently; wait until all answer (raise the first error)."""
        with ThreadPoolExecutor(max_workers=max(1, len(processes))) as pool:
            for future in [pool.submit(process.start) for process in processes]:
                future.result()

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        database = self.db.database()
        for server_instance in self.registered:
            with contextlib.suppress(tango.DevFailed):
                database.delete_server(server_instance)
        self.processes.clear()
        self.registered.clear()


@pytest.fixture(scope="session")
def tango_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedDatabase]:
    """One PyDatabaseds for the session; TANGO_HOST points at it until the session ends."""
    previous = os.environ.get("TANGO_HOST")
    with EmbeddedDatabase(tmp_path_factory.mktemp("tango_db")) as db:
        os.environ["TANGO_HOST"] = db.tango_host
        try:
            yield db
        finally:
            if previous is None:
                os.environ.pop("TANGO_HOST", None)
            else:
                os.environ["TANGO_HOST"] = previous


@pytest.fixture
def tango_server(tango_db: EmbeddedDatabase, tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory: register ``server/instance`` and start *argv*; every process and registration
    it made is removed at teardown, also when the test failed."""
    servers = TangoServers(tango_db, tmp_path)

    def start(
        argv: Sequence[str],
        server: str,
        instance: str,
        tango_class: str,
        devices: Sequence[str],
        properties: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        timeout: float = 20.0,
        env: Mapping[str, str] | None = None,
    ) -> ServerProcess:
        return servers.start(argv, server, instance, {tango_class: devices}, properties,
                             timeout, env)

    try:
        yield start
    finally:
        servers.close()


@pytest.fixture(scope="module")
def tango_servers(
    tango_db: EmbeddedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TangoServers]:
    """Module-wide :class:`TangoServers`: servers shared by a module's tests, stopped and
    unregistered when the module ends."""
    servers = TangoServers(tango_db, tmp_path_factory.mktemp("servers"))
    try:
        yield servers
    finally:
        servers.close()
