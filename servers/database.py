"""The suite's own Tango database: PyDatabaseds (pytango-db) on sqlite, as a subprocess."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import tango

from servers.lifeline import tie_to_this_process
from servers.process import ChildProcess, ProcessStartError, log_tail

__all__ = ["EmbeddedDatabase", "free_port"]

_LISTENING = re.compile(r"Database DS listening on: host=(\S+), port=(\d+)\.")
# Same interpreter, no dependency on PATH; main() reads sys.argv[1:].
_LAUNCHER = ("from servers.lifeline import exit_with_parent; exit_with_parent(); "
             "from databaseds.database import main; main()")
_ROOT = str(Path(__file__).resolve().parents[1])  # where the launcher finds ``servers``


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on *host* a moment ago (bind-test with port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedDatabase(ChildProcess):
    """A PyDatabaseds process with its own sqlite file and log in *state_dir*.

    ``port=0`` lets the server bind a free port itself (no race); the port it got
    is kept, so ``stop()`` then ``start()`` serves the same ``tango_host`` again.
    Use as a context manager or call ``start()`` / ``stop()``. With ``exit_with_parent``
    (the default) the database ends when this process ends, even if it is killed
    (:mod:`servers.lifeline`); pass False for one meant to outlive it.
    """

    def __init__(
        self,
        state_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        instance: str = "2",
        timeout: float = 30.0,
        grace: float = 5.0,
        exit_with_parent: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.instance = instance
        self.timeout = timeout
        self.grace = grace
        self.exit_with_parent = exit_with_parent
        self.sqlite_file = self.state_dir / "tango_database.db"
        self.log_file = self.state_dir / "databaseds.log"
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return (
            f"<EmbeddedDatabase {self.host}:{self.port} pid={self.pid} sqlite={self.sqlite_file}>"
        )

    @property
    def tango_host(self) -> str:
        """``host:port`` for TANGO_HOST (the port is known once started)."""
        return f"{self.host}:{self.port}"

    def database(self) -> tango.Database:
        """A client of this database (independent of the TANGO_HOST environment variable)."""
        return tango.Database(self.host, self.port)

    def start(self) -> EmbeddedDatabase:
        """Launch the server and wait until it answers, else raise ProcessStartError (log tail).

        A fixed port that cannot be bound yet is retried until the timeout: after a stop, a
        client still holding a connection to the old server can block the port for up to a
        minute (the old server's side waits in FIN_WAIT2).
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        while True:
            offset = self._launch()
            try:
                self.port = self._wait_port(offset, deadline)
                self._wait_answer(deadline)
                return self
            except ProcessStartError:
                self.stop()
                if self.port == 0 or time.monotonic() > deadline or not self._bind_failed(offset):
                    raise
                time.sleep(0.5)
            except BaseException:
                self.stop()
                raise

    def _launch(self) -> int:
        """Start the process; return the log offset where its output begins."""
        env = dict(os.environ)
        env["PYTANGO_DATABASE_NAME"] = str(self.sqlite_file)
        # PyDatabaseds falls back to TANGO_HOST for anything not given; pin it to ourselves.
        env["TANGO_HOST"] = self.tango_host
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Run from the state directory: the launcher imports servers.lifeline from here.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
        tie_to_this_process(env, self.exit_with_parent)
        argv = [
            sys.executable, "-c", _LAUNCHER,
            "--host", self.host, "--port", str(self.port), "--print-host-port", self.instance,
        ]  # fmt: skip
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            log.write(f"--- start PyDatabaseds {self.instance} on {self.tango_host}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return offset

    def _bind_failed(self, offset: int) -> bool:
        with self.log_file.open("rb") as log:
            log.seek(offset)
            return b"Failed to bind" in log.read()

    def _fail(self, what: str) -> None:
        raise ProcessStartError(
            f"PyDatabaseds {what}\n--- tail of {self.log_file} ---\n{log_tail(self.log_file)}"
        )

    def _check_alive(self, deadline: float, waiting_for: str) -> None:
        code = self._proc.poll() if self._proc is not None else None
        if code is not None:
            self._fail(f"exited with code {code} while waiting for {waiting_for}")
        if time.monotonic() > deadline:
            self._fail(f"gave no {waiting_for} within {self.timeout:g} s")

    def _wait_port(self, offset: int, deadline: float) -> int:
        while True:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                match = _LISTENING.search(log.read().decode(errors="replace"))
            if match:
                return int(match.group(2))
            self._check_alive(deadline, "listening port")
            time.sleep(0.05)

    def _wait_answer(self, deadline: float) -> None:
        while True:
            try:
                self.database().get_info()
                return
            except tango.DevFailed:
                self._check_alive(deadline, "answer")
                time.sleep(0.05)
