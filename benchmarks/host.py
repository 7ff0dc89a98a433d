"""What the machine did while a benchmark part ran: how busy its cores were, and how much
time the hypervisor took from them ("steal").

On a shared virtual machine a slow run is often a run the host stole from; the benchmarks
print this next to their figures so that a reader can tell the code's cost from the
machine's. Figures come from the kernel's tick counters (``psutil.cpu_times``), so a
part shorter than a few tenths of a second gets coarse percentages.

A VM may also take back memory its guest left free (free page reporting): the next touch
of such a page costs a fault in the host. On the Firecracker VM these benchmarks were
written on, the kernel reports free memory in passes that start about 2 s after memory
was freed, and touching reported pages runs at about 0.4 GB/s against 3 GB/s for pages
freed and reused between two passes; a disk run that writes 1.7 GB into the page cache
took 4 s instead of 0.5 s when a pass fell just before or into it. Where the kernel
counts those passes (``/sys/module/page_reporting/parameters``), :class:`HostLoad`
shows the memory reported during a part, and :func:`after_reporting_pass` lets a timed
run start right after a pass rather than just before one. Elsewhere both do nothing.

An idle virtual core may halt at once, so that waking it goes through the hypervisor
(guest halt polling off: ``guest_halt_poll_ns`` = 0, as on that VM). Every hand-over
between threads that finds its core idle then pays that wake-up; :func:`halt_polling`
says how the kernel is set.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


@dataclass
class HostLoad:
    """Shares of the cores' time over a measured span (0-1 each)."""

    cores: int = psutil.cpu_count() or 1
    busy: float = 0.0  #: running anything (user, system, interrupts), steal excluded
    steal: float = 0.0  #: taken by the hypervisor for other guests
    seconds: float = 0.0  #: the span, in CPU seconds of all cores together
    #: Bytes of free memory given back to the hypervisor meanwhile (None: not counted).
    reclaimed: int | None = None

    def brief(self) -> str:
        """``"62% busy, 3% stolen"``, and ``", 1.1 GB reclaimed"`` where counted."""
        text = f"{self.busy:.0%} busy, {self.steal:.0%} stolen"
        if self.reclaimed is not None:
            text += f", {self.reclaimed / 1e9:.1f} GB reclaimed"
        return text

    def __str__(self) -> str:
        return f"host: {self.cores} cores {self.brief()} by the hypervisor"


def combined(loads: list[HostLoad]) -> HostLoad:
    """One :class:`HostLoad` for several spans (the rounds of a part that alternate with
    other parts' rounds): their shares weighted by their lengths."""
    total = sum(load.seconds for load in loads)
    result = HostLoad(seconds=total)
    if total > 0:
        result.busy = sum(load.busy * load.seconds for load in loads) / total
        result.steal = sum(load.steal * load.seconds for load in loads) / total
    counted = [load.reclaimed for load in loads]
    if counted and all(reclaimed is not None for reclaimed in counted):
        result.reclaimed = sum(counted)  # type: ignore[arg-type]
    return result


def _split(times: Any) -> tuple[float, float, float]:
    """(busy, steal, total) seconds from one reading of the counters."""
    steal = getattr(times, "steal", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - idle - steal, steal, total


#: Where a kernel with free page reporting counts its passes; absent on most machines.
PAGE_REPORTING = Path("/sys/module/page_reporting/parameters")
#: Seconds from freeing memory to the reporting pass that takes it (the kernel's 2 s
#: delay) and some margin.
REPORTING_DELAY = 2.5


def _reporting_counter(name: str) -> int | None:
    try:
        return int((PAGE_REPORTING / name).read_text())
    except (OSError, ValueError):
        return None


def reclaimed_bytes() -> int | None:
    """Bytes of free memory reported to the hypervisor since boot (None: not counted)."""
    kib = _reporting_counter("reported_kib")
    return None if kib is None else kib * 1024


def after_reporting_pass(timeout: float = REPORTING_DELAY) -> bool:
    """Wait until the kernel's next pass of free page reporting has run, at most
    ``timeout`` seconds; True if one ran. A pass is pending for about 2 s after memory
    was freed, so a timed run that starts right after this (and after touching what it
    will need, see ``bench_dataplane.warm_memory``) has that long before the next one.
    Returns False at once where the passes are not counted."""
    passes = _reporting_counter("passes")
    if passes is None:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.005)
        if _reporting_counter("passes") != passes:
            return True
    return False


#: The guest's halt polling (the ``haltpoll`` cpuidle driver of KVM guests).
HALT_POLL_NS = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def halt_polling() -> str:
    """How an idle core waits, where the kernel says (else an empty string)."""
    try:
        nanoseconds = int(HALT_POLL_NS.read_text())
    except (OSError, ValueError):
        return ""
    if nanoseconds == 0:
        return ("idle cores halt at once (guest halt polling off): waking one goes "
                "through the hypervisor")
    return f"idle cores poll {nanoseconds / 1000:g} us before they halt"


@contextlib.contextmanager
def host_load() -> Iterator[HostLoad]:
    """Measure the span of the ``with`` block; the yielded :class:`HostLoad` is filled in
    at its end."""
    load = HostLoad()
    busy0, steal0, total0 = _split(psutil.cpu_times())
    reclaimed0 = reclaimed_bytes()
    try:
        yield load
    finally:
        busy1, steal1, total1 = _split(psutil.cpu_times())
        reclaimed1 = reclaimed_bytes()
        total = total1 - total0
        if total > 0:
            load.busy = (busy1 - busy0) / total
            load.steal = (steal1 - steal0) / total
        load.seconds = total
        if reclaimed0 is not None and reclaimed1 is not None:
            load.reclaimed = reclaimed1 - reclaimed0
