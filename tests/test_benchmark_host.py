"""The benchmarks' host-load figures (``benchmarks/host.py``)."""

import threading
import time

from benchmarks import host
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


def _counters(directory, passes: int, reported_kib: int) -> None:
    (directory / "passes").write_text(f"{passes}\n")
    (directory / "reported_kib").write_text(f"{reported_kib}\n")


def test_memory_given_back_to_the_hypervisor_is_counted_where_the_kernel_counts_it(
        tmp_path, monkeypatch):
    monkeypatch.setattr(host, "PAGE_REPORTING", tmp_path / "absent")
    with host_load() as load:
        pass
    assert host.reclaimed_bytes() is None and load.reclaimed is None
    assert "reclaimed" not in load.brief()
    monkeypatch.setattr(host, "PAGE_REPORTING", tmp_path)
    _counters(tmp_path, 7, 1000)
    with host_load() as load:
        _counters(tmp_path, 8, 1000 + 1_100_000)
    assert host.reclaimed_bytes() == 1_101_000 * 1024
    assert load.reclaimed == 1_100_000 * 1024
    assert load.brief().endswith(", 1.1 GB reclaimed")


def test_after_reporting_pass_waits_for_the_next_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "PAGE_REPORTING", tmp_path / "absent")
    started = time.monotonic()
    assert host.after_reporting_pass(timeout=5) is False  # not counted: no wait
    assert time.monotonic() - started < 0.5
    monkeypatch.setattr(host, "PAGE_REPORTING", tmp_path)
    _counters(tmp_path, 3, 0)
    started = time.monotonic()
    assert host.after_reporting_pass(timeout=0.3) is False  # no pass ran
    assert time.monotonic() - started >= 0.3
    timer = threading.Timer(0.2, _counters, (tmp_path, 4, 64))
    timer.start()
    started = time.monotonic()
    assert host.after_reporting_pass(timeout=5) is True
    assert 0.15 <= time.monotonic() - started < 2
    timer.join()


def test_halt_polling_says_how_idle_cores_wait(tmp_path, monkeypatch):
    setting = tmp_path / "guest_halt_poll_ns"
    monkeypatch.setattr(host, "HALT_POLL_NS", setting)
    assert host.halt_polling() == ""  # a kernel without the driver: nothing to say
    setting.write_text("0\n")
    assert "halt at once" in host.halt_polling()
    setting.write_text("200000\n")
    assert host.halt_polling() == "idle cores poll 200 us before they halt"
    setting.write_text("garbled\n")
    assert host.halt_polling() == ""


def test_the_loads_of_several_spans_combine_by_their_lengths():
    short = host.HostLoad(busy=1.0, steal=0.0, seconds=1.0, reclaimed=None)
    long = host.HostLoad(busy=0.25, steal=0.5, seconds=3.0, reclaimed=None)
    both = host.combined([short, long])
    assert both.seconds == 4.0
    assert both.busy == 0.25 * 1.0 + 0.75 * 0.25
    assert both.steal == 0.75 * 0.5
    assert both.reclaimed is None  # not counted in every span: not shown
    short.reclaimed, long.reclaimed = 1000, 2000
    assert host.combined([short, long]).reclaimed == 3000
    assert host.combined([]).seconds == 0 and host.combined([]).busy == 0
