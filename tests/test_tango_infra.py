"""The Tango infrastructure itself: embedded database, server processes, the reference device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import tango

from servers import lifeline
from servers.database import EmbeddedDatabase, free_port
from servers.process import ProcessStartError, ServerProcess, register_server

pytestmark = pytest.mark.tango

REFERENCE = [
    sys.executable,
    str(Path(__file__).resolve().parents[1] / "benchmarks" / "reference_device.py"),
]
DEVICE = "test/reference/1"


def pid_gone(pid: int | None) -> bool:
    """True once ``pid`` has ended (a zombie nobody reaped yet counts as ended)."""
    assert pid is not None
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


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


# -- children end with the process that started them (servers.lifeline) ------------------

#: A parent that starts a database of its own and the reference server on it, prints their
#: PIDs, then waits to be killed.
PARENT = """
import json, sys, time
from pathlib import Path
from servers.database import EmbeddedDatabase
from servers.process import ServerProcess, register_server
state, argv, tied = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == "tied"
db = EmbeddedDatabase(state, exit_with_parent=tied).start()
register_server(db.database(), "ReferenceDevice", "orphan", "ReferenceDevice", ["test/orphan/1"])
server = ServerProcess([*argv, "orphan"], db.tango_host, ["test/orphan/1"],
                       state / "server.log", exit_with_parent=tied).start()
print(json.dumps([db.pid, server.pid]), flush=True)
time.sleep(600)
"""


def _killed_parent_children(tmp_path: Path, tied: bool) -> list[int]:
    """Start :data:`PARENT`, SIGKILL it once its database and server answer; their PIDs."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), json.dumps(REFERENCE),
                               "tied" if tied else "free"], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        line = parent.stdout.readline()
        assert line, "the parent did not start its children"
        return json.loads(line)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


def _end(pids: list[int]) -> None:
    for pid in pids:
        if not pid_gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_servers_and_database_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    pids = _killed_parent_children(tmp_path, tied=True)
    try:
        # Ended by SIGTERM (Tango shuts down cleanly), well before the SIGKILL that would
        # follow after the grace period.
        assert wait_for(lambda: all(pid_gone(pid) for pid in pids),
                        timeout=lifeline.GRACE * 0.8), \
            f"still running: {[pid for pid in pids if not pid_gone(pid)]}"
    finally:
        _end(pids)


def test_untied_children_outlive_their_parent(tmp_path: Path) -> None:
    pids = _killed_parent_children(tmp_path, tied=False)
    try:
        time.sleep(2)  # a tied child would have noticed at once
        assert not any(pid_gone(pid) for pid in pids)
    finally:
        _end(pids)


def test_a_child_whose_parent_is_gone_already_ends_at_once() -> None:
    # The variable names a process that ended before the child got to look.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    env = dict(os.environ, **{lifeline.PARENT_ENV: str(gone.pid)})
    child = subprocess.run(
        [sys.executable, "-c",
         "import time; from servers.lifeline import exit_with_parent; "
         "exit_with_parent(grace=1); time.sleep(30)"],
        env=env, timeout=20, cwd=Path(__file__).resolve().parents[1])
    assert child.returncode == -signal.SIGTERM


def test_without_the_variable_nothing_is_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lifeline.PARENT_ENV, raising=False)
    assert lifeline.exit_with_parent() is None
