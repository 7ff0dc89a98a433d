"""The benchmarks' host-load figures (``benchmarks/host.py``)."""

import time

from benchmarks.host import host_load


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_busy_core_shows_in_the_load():
    with host_load() as load:
        _spin(0.5)
    assert load.seconds > 0
    assert 0 <= load.busy <= 1 and 0 <= load.steal <= 1
    # One of ``cores`` cores spun all along; what the hypervisor took counts as stolen.
    assert load.busy + load.steal >= 0.5 / load.cores
    assert "busy" in str(load) and "stolen" in str(load)


def test_the_load_is_filled_in_even_when_the_block_fails():
    try:
        with host_load() as load:
            _spin(0.2)
            raise RuntimeError("part failed")
    except RuntimeError:
        pass
    assert load.seconds > 0 and load.busy > 0
