"""Memory preparation shared by the benchmarks."""

from __future__ import annotations

import numpy as np


def mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def warm_memory(nbytes: int) -> None:
    """Touch ``nbytes`` of fresh memory and release it, just before a timed run.

    On a VM that backs guest memory lazily and takes back the pages the guest left free
    for a few seconds (free page reporting), the first touch of such a page costs a host
    page fault: on the 2-core Firecracker VM this was measured on, touching 2 GB freed
    10 s earlier runs at 0.3 GB/s, right after freeing at 5.6 GB/s. Page cache and new
    arrays come from those free pages, so whichever run came first after a pause paid
    for it (an HDF5 file of 120 frames of 640x480: 150-190 ms of CPU cold, 26 ms warm)
    and the next one did not. Pages just released are reused first, so after this every
    run starts alike (at most half of the available memory is touched)."""
    available = mem_available()
    if available is not None:
        nbytes = min(nbytes, available // 2)
    if nbytes > 0:
        buffer = np.empty(nbytes, np.uint8)
        buffer[::4096] = 1  # one write per page faults it in
        del buffer
