"""The Tango infrastructure itself: embedded database, server processes, the reference device."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tango

from servers.database import EmbeddedDatabase, free_port
from servers.process import ProcessStartError, ServerProcess, register_server

pytestmark = pytest.mark.tango

REFERENCE = [
    sys.executable,
    str(Path(__file__).resolve().parents[1] / "benchmarks" / "reference_device.py"),
]
DEVICE = "test/reference/1"


def pid_gone(pid: int | None) -> bool:
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def reference(tango_server) -> ServerProcess:
    return tango_server(
        [*REFERENCE, "infra"], "ReferenceDevice", "infra", "ReferenceDevice", [DEVICE]
    )


def test_database_answers(tango_db: EmbeddedDatabase) -> None:
    assert os.environ["TANGO_HOST"] == tango_db.tango_host
    assert tango_db.running and tango_db.port > 0
    assert "Running since" in tango_db.database().get_info()
    # the client's default database follows TANGO_HOST
    assert tango.Database().get_db_port_num() == tango_db.port
    assert tango_db.sqlite_file.exists()


def test_register_sets_class_server_and_properties(tango_db: EmbeddedDatabase) -> None:
    db = tango_db.database()
    properties = {"test/probe/2": {"concert_args": ['{"a": "1 mm"}']}}
    register_server(
        db, "InfraProbe", "p1", "ProbeClass", ["test/probe/1", "test/probe/2"], properties
    )
    try:
        info = db.get_device_info("test/probe/2")
        assert (info.class_name, info.ds_full_name) == ("ProbeClass", "InfraProbe/p1")
        assert db.get_device_property("test/probe/2", "concert_args")["concert_args"] == [
            '{"a": "1 mm"}'
        ]
        assert sorted(db.get_device_name("InfraProbe/p1", "ProbeClass")) == [
            "test/probe/1",
            "test/probe/2",
        ]
        with pytest.raises(ValueError, match="not among"):
            register_server(
                db, "InfraProbe", "p2", "ProbeClass", ["test/probe/3"], {"test/probe/4": {}}
            )
    finally:
        db.delete_server("InfraProbe/p1")
        db.delete_server("InfraProbe/p2")


def test_reference_device_reads_and_writes(reference: ServerProcess) -> None:
    proxy = reference.proxy()
    assert proxy.value == 0.0
    proxy.value = 4.25
    assert proxy.read_attribute("value").value == 4.25
    assert proxy.read_attribute("value").w_value == 4.25
    assert reference.startup_time is not None and reference.startup_time < reference.timeout


def test_change_and_archive_events_arrive(reference: ServerProcess) -> None:
    proxy = reference.proxy()
    changes: list[float] = []
    archives: list[float] = []

    def collect(into: list[float]) -> Callable[[tango.EventData], None]:
        def callback(event: tango.EventData) -> None:
            if not event.err:
                into.append(event.attr_value.value)

        return callback

    change_id = proxy.subscribe_event("value", tango.EventType.CHANGE_EVENT, collect(changes))
    archive_id = proxy.subscribe_event("value", tango.EventType.ARCHIVE_EVENT, collect(archives))
    try:
        proxy.value = 7.5
        assert wait_for(lambda: 7.5 in changes and 7.5 in archives), (changes, archives)
        assert proxy.command_inout("Burst", 50) == 50
        assert wait_for(lambda: changes[-1:] == [57.5]), changes[-5:]
        assert changes[-50:] == [7.5 + i for i in range(1, 51)]
    finally:
        proxy.unsubscribe_event(change_id)
        proxy.unsubscribe_event(archive_id)


def test_stop_leaves_no_process_and_restart_serves_again(reference: ServerProcess) -> None:
    first = reference.pid
    reference.proxy().value = 1.5
    reference.restart()
    assert reference.pid != first and pid_gone(first)
    assert reference.proxy().value == 0.0  # a fresh process
    pid = reference.pid
    assert reference.stop() is not None
    assert not reference.running and pid_gone(pid)
    assert reference.stop() == reference.returncode  # idempotent


def test_crash_at_start_reports_log_tail(tango_server) -> None:
    crash = [
        sys.executable,
        "-c",
        "import sys; print('motor controller unreachable', flush=True); sys.exit(3)",
    ]
    with pytest.raises(ProcessStartError, match="exited with code 3") as failure:
        tango_server(crash, "Crashing", "c1", "Crashing", ["test/crash/1"])
    assert "motor controller unreachable" in str(failure.value)


def test_silent_server_times_out_and_is_killed(tango_db: EmbeddedDatabase, tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    log = tmp_path / "silent.log"
    silent = ServerProcess(
        argv, tango_db.tango_host, ["test/silent/1"], log, timeout=1.0, grace=0.5
    )
    with pytest.raises(ProcessStartError, match=r"did not answer within 1 s"):
        silent.start()
    assert not silent.running and pid_gone(silent.pid)


def test_second_database_on_another_port(tango_db: EmbeddedDatabase, tmp_path: Path) -> None:
    with EmbeddedDatabase(tmp_path / "second") as second:
        assert second.port != tango_db.port
        register_server(second.database(), "OnlySecond", "1", "Probe", ["test/second/1"])
        assert "OnlySecond/1" in second.database().get_server_list("OnlySecond*")
        assert "OnlySecond/1" not in tango_db.database().get_server_list("OnlySecond*")
        assert tango_db.database().get_info()  # the first one still answers
    assert pid_gone(second.pid)
    # same sqlite file: the registration survived
    with EmbeddedDatabase(tmp_path / "second") as again:
        assert "OnlySecond/1" in again.database().get_server_list("OnlySecond*")


def test_database_on_a_chosen_port(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedDatabase(tmp_path, port=port) as db:
        assert db.tango_host == f"127.0.0.1:{port}"
        assert db.database().get_info()


def test_database_that_cannot_start_reports_log_tail(
    tango_db: EmbeddedDatabase, tmp_path: Path
) -> None:
    busy = EmbeddedDatabase(tmp_path, port=tango_db.port, timeout=2)  # the port is taken
    with pytest.raises(ProcessStartError, match="Failed to bind"):
        busy.start()
    assert not busy.running and pid_gone(busy.pid)
