"""How long ``concert tango up`` takes for the default beamline, and one server alone.

Measured as a user sees it (wall time of the ``concert`` command, a separate process):
1. from a clean state (the embedded database is started too),
2. on a database that is already running (servers only),
3. one server alone (``ConcertShutter/beamline``) on that database.
Goal: the whole beamline up in 10 s or less. Everything started is stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers.beamline import down
from servers.database import EmbeddedDatabase, free_port
from tango_db import BEAMLINE

GOAL = 10.0
ONE = "ConcertShutter"


def run_up(env: dict[str, str], *args: str) -> tuple[float, str, int]:
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "servers.cli", "tango", "up", *args],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    return time.perf_counter() - began, result.stdout + result.stderr, result.returncode


def per_server(output: str) -> str:
    times = re.findall(r"^(\S+/\S+)\s+\d+\s.*?started in ([\d.]+) s", output, re.MULTILINE)
    return ", ".join(f"{name} {seconds} s" for name, seconds in times)


def report(label: str, seconds: float, output: str, code: int) -> None:
    print(f"{label:<48} {seconds:6.2f} s  exit {code}  ({per_server(output)})")
    if code:
        problems = output.partition("PROBLEMS:")[2].strip().splitlines()
        print("    " + "\n    ".join(line for line in problems if line.startswith("- ")))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_beamline_") as tmp:
        state = Path(tmp) / "state"
        tango_host = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "TANGO_HOST": tango_host, "CONCERT_STATE_DIR": str(state)}
        servers = json.loads(BEAMLINE.read_text())["servers"]
        print(f"default beamline: {len(servers)} servers, "
              f"{sum(len(d) for s in servers.values() for c in s.values() for d in c.values())}"
              f" devices; {os.cpu_count()} cores")
        try:
            cold = run_up(env)
            report("concert tango up (clean state, embedded db)", *cold)
        finally:
            down(state, tango_host)

        with EmbeddedDatabase(Path(tmp) / "db") as db:
            env["TANGO_HOST"] = db.tango_host
            one_file = Path(tmp) / "one.json"
            one_file.write_text(json.dumps({"servers": {ONE: servers[ONE]}}))
            try:
                one = run_up(env, "--config", str(one_file))
                report(f"concert tango up ({ONE} alone, db running)", *one)
            finally:
                down(state, db.tango_host)
            try:
                warm = run_up(env)
                report("concert tango up (whole beamline, db running)", *warm)
            finally:
                down(state, db.tango_host)
        verdict = "met" if cold[0] <= GOAL and cold[2] == 0 else "NOT met"
        print(f"goal: whole beamline up in {GOAL:g} s or less from a clean state: {verdict}")


if __name__ == "__main__":
    main()
