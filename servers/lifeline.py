"""Child processes that end with the process that started them.

A test session or a benchmark starts a Tango database and device servers as child
processes and stops them when it ends. If it is killed instead (SIGKILL, a CI time-out,
a closed terminal), nothing would stop them: they would keep their ports and CPU until
someone found them. A child started with :data:`PARENT_ENV` set to its parent's PID
watches that process and, once it is gone, sends itself SIGTERM (Tango shuts a server
down cleanly on it), then SIGKILL if it is still there after a grace period.

``concert tango up`` does not set it: a beamline's servers outlive the command that
started them, until ``concert tango down``.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

#: Environment variable naming the PID whose end ends this process.
PARENT_ENV = "CONCERT_EXIT_WITH"
#: Seconds between SIGTERM and SIGKILL once the parent is gone.
GRACE = 10.0
#: Seconds between checks of the parent where a pidfd is not available.
POLL_INTERVAL = 0.5


def parent_environment() -> dict[str, str]:
    """Environment entries that tie a child to this process (see :func:`exit_with_parent`)."""
    return {PARENT_ENV: str(os.getpid())}


def _end_self(grace: float) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os.kill(os.getpid(), signal.SIGKILL)


def _wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` (this process's parent) has ended."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (older kernel, not Linux): poll the parent
        while os.getppid() == pid:
            time.sleep(POLL_INTERVAL)
        return
    try:
        select.select([fd], [], [])  # a pidfd becomes readable when its process ends
    finally:
        os.close(fd)


def exit_with_parent(grace: float = GRACE) -> threading.Thread | None:
    """If :data:`PARENT_ENV` names this process's parent, end this process when the parent
    ends (a daemon thread waits for it). The variable is removed from the environment, so
    this process's own children are not tied to the wrong process. Returns the watching
    thread, or None when there is nothing to watch."""
    value = os.environ.pop(PARENT_ENV, None)
    if not value:
        return None
    pid = int(value)
    if os.getppid() != pid:  # the parent ended before this process got here
        threading.Thread(target=_end_self, args=(grace,), daemon=True).start()
        return None

    def watch() -> None:
        _wait_for_exit(pid)
        _end_self(grace)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread
