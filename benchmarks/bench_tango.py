"""Latency and event throughput of the bridge against a hand-written PyTango device.

One run, one client, one embedded database: the hand-written ``ReferenceDevice`` (a stored
double, PyTango's default synchronous mode) against ``StoredValue`` published through
the generic bridge, once with the read mirror (default ``read_cache_ms``) and once with
``read_cache_ms = 0`` (every read goes to the concert device on the asyncio loop).
Goals (issue 4): bridge read latency within 1.2x of the reference; no event lost at 1 kHz.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tango  # noqa: E402

from benchmarks.host import halt_polling, host_load  # noqa: E402
from servers.database import EmbeddedDatabase  # noqa: E402
from servers.process import register_server, start_server  # noqa: E402
from servers.runtime import LoopThread  # noqa: E402

READS = 3000
WRITES = 1000
EVENTS = 3000
RATE = 1000.0


def latencies(call, count: int) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * len(samples)) - 1]


def interleaved(calls: dict, count: int, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """Median and p99 per call, interleaving the cases so machine noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(count // rounds):
                start = time.perf_counter()
                call()
                samples[name].append((time.perf_counter() - start) * 1e6)
    result = {}
    for name, values in samples.items():
        values.sort()
        result[name] = (statistics.median(values), values[int(0.99 * len(values)) - 1])
    return result


def hand_over(count: int = WRITES) -> float:
    """Median round trip (us) of handing a no-op coroutine from this thread to an asyncio
    loop thread and waiting for it, as the bridge does once per write, with a pause of
    0.2 ms between calls (a Tango call's worth: the loop's core may go idle meanwhile)."""
    loop = LoopThread("bench-hand-over")

    async def nothing() -> None:
        return None

    samples = []
    for _ in range(count):
        start = time.perf_counter()
        loop.run(nothing(), timeout=1)
        samples.append((time.perf_counter() - start) * 1e6)
        time.sleep(0.0002)
    loop.loop.call_soon_threadsafe(loop.loop.stop)
    return statistics.median(samples)


def event_run(proxy: tango.DeviceProxy, attribute: str, start_burst) -> tuple[int, float, int]:
    """Received count, rate and number of gaps of a burst of EVENTS change events."""
    received: list[float] = []
    done = threading.Event()

    def callback(event: tango.EventData) -> None:
        if event.err:
            return
        received.append(event.attr_value.value)
        if event.attr_value.value >= EVENTS - 1:
            done.set()

    event_id = proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, callback)
    time.sleep(0.3)
    received.clear()
    began = time.perf_counter()
    start_burst()
    done.wait(EVENTS / RATE * 3 + 5)
    elapsed = time.perf_counter() - began
    proxy.unsubscribe_event(event_id)
    values = sorted({int(value) for value in received})
    missing = EVENTS - len([value for value in values if 0 <= value < EVENTS])
    return len(received), len(received) / elapsed, missing


def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="bench-tango-"))
    env = {"PYTHONPATH": str(ROOT)}
    try:
        with EmbeddedDatabase(state) as database:
            os.environ["TANGO_HOST"] = database.tango_host
            db = database.database()
            register_server(db, "ReferenceDevice", "bench", "ReferenceDevice", ["bench/ref/1"])
            register_server(db, "BridgedValue", "bench", "StoredValue",
                            ["bench/bridge/1", "bench/bridge/nocache"],
                            {"bench/bridge/nocache": {"read_cache_ms": ["0"]}})
            servers = [
                start_server([sys.executable, str(ROOT / "benchmarks/reference_device.py"),
                              "bench"],
                             database.tango_host, ["bench/ref/1"], state / "ref.log", env=env),
                start_server([sys.executable, "-m", "benchmarks.bridged_value", "bench"],
                             database.tango_host, ["bench/bridge/1", "bench/bridge/nocache"],
                             state / "bridge.log", env=env),
            ]
            try:
                ref = tango.DeviceProxy("bench/ref/1")
                bridge = tango.DeviceProxy("bench/bridge/1")
                nocache = tango.DeviceProxy("bench/bridge/nocache")
                for proxy in (ref, bridge, nocache):
                    for _ in range(200):
                        proxy.read_attribute("value")
                with host_load() as reads_load:
                    reads = interleaved({
                        "reference": lambda: ref.read_attribute("value"),
                        "bridge": lambda: bridge.read_attribute("value"),
                        "bridge, no read cache": lambda: nocache.read_attribute("value"),
                    }, READS)
                with host_load() as writes_load:
                    writes = interleaved({
                        "reference": lambda: ref.write_attribute("value", 1.0),
                        "bridge": lambda: bridge.write_attribute("value", 1.0),
                    }, WRITES)
                handed_over = hand_over()
                ref.write_attribute("value", -1.0)  # Burst pushes value+1 each: 0, 1, 2, ...
                ref_events = event_run(ref, "value", lambda: ref.command_inout("Burst", EVENTS))
                with host_load() as events_load:
                    bridge_events = event_run(
                        bridge, "value",
                        lambda: bridge.command_inout("Burst", [float(EVENTS), RATE]))  # at once
            finally:
                for server in servers:
                    server.stop()
    except BaseException:
        print(f"bench_tango: the servers' logs are kept in {state}", file=sys.stderr)
        raise
    shutil.rmtree(state, ignore_errors=True)

    print(f"bench_tango: {READS} reads, {WRITES} writes per case (interleaved), one client")
    print(f"  {'read latency':<32} {'median us':>10} {'p99 us':>10} {'median ratio':>13}"
          f"   [{reads_load}]")
    base = reads["reference"][0]
    for name, (median, p99) in reads.items():
        print(f"  {name:<32} {median:10.1f} {p99:10.1f} {median / base:12.2f}x")
    print(f"  {'write latency':<32} {'median us':>10} {'p99 us':>10} {'median ratio':>13}"
          f"   [{writes_load}]")
    base = writes["reference"][0]
    for name, (median, p99) in writes.items():
        print(f"  {name:<32} {median:10.1f} {p99:10.1f} {median / base:12.2f}x")
    extra = writes["bridge"][0] - writes["reference"][0]
    print(f"  bridge write - reference write = {extra:.0f} us; a thread -> loop -> thread "
          f"round trip (one per bridged write) alone: {handed_over:.0f} us")
    idle_cores = halt_polling()
    if idle_cores:
        print(f"  {idle_cores}")
    ratio = reads["bridge"][0] / reads["reference"][0]
    print(f"  bridge read / reference read = {ratio:.2f}x "
          f"(goal <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")
    count, rate, missing = ref_events
    print(f"  reference Burst({EVENTS}) as fast as possible: {count} events received, "
          f"{rate:.0f} events/s, {missing} lost")
    count, rate, missing = bridge_events
    print(f"  bridge: {EVENTS} notifications paced at {RATE:.0f} Hz: {count} events received, "
          f"{rate:.0f} events/s, {missing} lost (goal: 0 lost)  [{events_load}]")


if __name__ == "__main__":
    main()
