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
#: Seconds between checks of the watched process where a pidfd is not available.
POLL_INTERVAL = 0.5


def tie_to_this_process(env: dict[str, str], tied: bool) -> dict[str, str]:
    """``env`` for a child: ``tied``, it names this process (the child ends with it, see
    :func:`exit_with_parent`); else it names none, not even one inherited."""
    env.pop(PARENT_ENV, None)
    if tied:
        env[PARENT_ENV] = str(os.getpid())
    return env


def _end_self(grace: float) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    return True


def _wait_for_exit(fd: int | None, pid: int) -> None:
    """Return once process ``pid`` has ended: its pidfd ``fd`` becomes readable, or,
    without one, a check every :data:`POLL_INTERVAL` finds it gone."""
    if fd is None:
        while _alive(pid):
            time.sleep(POLL_INTERVAL)
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def exit_with_parent(grace: float = GRACE) -> threading.Thread | None:
    """If :data:`PARENT_ENV` names a process (the parent that started this one, or a
    wrapper's parent), end this process when that one ends; a daemon thread waits for
    it. The variable is removed from the environment, so this process's own children are
    not tied to it. Returns the watching thread, or None when there is nothing to watch."""
    value = os.environ.pop(PARENT_ENV, None)
    if not value:
        return None
    pid = int(value)
    fd: int | None = None
    try:
        fd = os.pidfd_open(pid)  # taken now: the process cannot be swapped for another
    except (AttributeError, OSError):  # ended already, or no pidfd (not Linux): poll
        pass
    if fd is None and not _alive(pid):  # it ended before this process got here
        threading.Thread(target=_end_self, args=(grace,), daemon=True).start()
        return None

    def watch() -> None:
        _wait_for_exit(fd, pid)
        _end_self(grace)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread
