"""What the machine did while a benchmark part ran: how busy its cores were, and how much
time the hypervisor took from them ("steal").

On a shared virtual machine a slow run is often a run the host stole from; the benchmarks
print this next to their figures so that a reader can tell the code's cost from the
machine's. Figures come from the kernel's tick counters (``psutil.cpu_times``), so a
part shorter than a few tenths of a second gets coarse percentages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass
class HostLoad:
    """Shares of the cores' time over a measured span (0-1 each)."""

    cores: int = psutil.cpu_count() or 1
    busy: float = 0.0  #: running anything (user, system, interrupts), steal excluded
    steal: float = 0.0  #: taken by the hypervisor for other guests
    seconds: float = 0.0  #: the span, in CPU seconds of all cores together

    def brief(self) -> str:
        """``"62% busy, 3% stolen"``."""
        return f"{self.busy:.0%} busy, {self.steal:.0%} stolen"

    def __str__(self) -> str:
        return f"host: {self.cores} cores {self.brief()} by the hypervisor"


def _split(times: Any) -> tuple[float, float, float]:
    """(busy, steal, total) seconds from one reading of the counters."""
    steal = getattr(times, "steal", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - idle - steal, steal, total


@contextlib.contextmanager
def host_load() -> Iterator[HostLoad]:
    """Measure the span of the ``with`` block; the yielded :class:`HostLoad` is filled in
    at its end."""
    load = HostLoad()
    busy0, steal0, total0 = _split(psutil.cpu_times())
    try:
        yield load
    finally:
        busy1, steal1, total1 = _split(psutil.cpu_times())
        total = total1 - total0
        if total > 0:
            load.busy = (busy1 - busy0) / total
            load.steal = (steal1 - steal0) / total
        load.seconds = total
