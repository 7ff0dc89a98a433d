"""Fixtures that run a real Tango database and real device server processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
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
    ) -> ServerProcess: ...


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
    started: list[ServerProcess] = []
    registered: list[str] = []

    def start(
        argv: Sequence[str],
        server: str,
        instance: str,
        tango_class: str,
        devices: Sequence[str],
        properties: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        timeout: float = 20.0,
    ) -> ServerProcess:
        register_server(tango_db.database(), server, instance, tango_class, devices, properties)
        registered.append(f"{server}/{instance}")
        process = ServerProcess(
            argv, tango_db.tango_host, devices, tmp_path / f"{server}-{instance}.log", timeout
        )
        started.append(process)
        return process.start()

    yield start
    for process in reversed(started):
        process.stop()
    db = tango_db.database()
    for server_instance in registered:
        with contextlib.suppress(tango.DevFailed):
            db.delete_server(server_instance)
