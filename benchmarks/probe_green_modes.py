"""Rough probe: read latency per green mode / class style, and Tango features the bridge needs.

Run: ``python benchmarks/probe_green_modes.py`` (starts its own database and servers).
Server side: ``python benchmarks/probe_green_modes.py serve <kind> <instance>``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import tango
from tango import AttrWriteType, DevState, GreenMode
from tango.server import Device, attribute, command, run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READS = 2000

# --- server side ------------------------------------------------------------------------


class AsyncReference(Device):
    """(b) hand-written, asyncio green mode."""

    green_mode = GreenMode.Asyncio
    value = attribute(dtype=float, access=AttrWriteType.READ_WRITE)

    async def init_device(self) -> None:
        await super().init_device()
        self._value = 0.0
        self.set_change_event("value", True, False)
        self.set_archive_event("value", True, False)

    async def read_value(self) -> float:
        return self._value

    async def write_value(self, value: float) -> None:
        self._value = value

    @command(dtype_in=float)
    async def Fail(self, value: float) -> None:
        tango.Except.throw_exception("LimitError", f"{value} mm is outside [0, 10] mm", "Fail")

    @command(dtype_in=int)
    async def PushFromLoop(self, n: int) -> None:
        """Push from a task on the server's own loop (the only safe place in asyncio mode)."""

        async def pusher() -> None:
            for i in range(n):
                self.push_change_event("value", float(i))
                self.push_archive_event("value", float(i))
                await asyncio.sleep(0)

        asyncio.get_running_loop().create_task(pusher())


_LOOP: asyncio.AbstractEventLoop | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """One asyncio loop per process, running in its own thread (style (c))."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
        threading.Thread(target=_LOOP.run_forever, name="concert-loop", daemon=True).start()
    return _LOOP


class Model:
    """Stand-in for a concert device: async getters/setters."""

    def __init__(self) -> None:
        self.position = 0.0
        self.mode = 1

    async def get_position(self) -> float:
        return self.position

    async def set_position(self, value: float) -> None:
        self.position = value


def make_class(name: str, asyncio_mode: bool) -> type[Device]:
    """Build a Device subclass at run time with closure-based fget/fset (styles (c), (d))."""

    def getter(attr_name: str) -> Callable:
        if asyncio_mode:

            async def fget(self):
                return await getattr(self.model, f"get_{attr_name}")()
        else:

            def fget(self):
                coro = getattr(self.model, f"get_{attr_name}")()
                return asyncio.run_coroutine_threadsafe(coro, background_loop()).result()

        return fget

    def setter(attr_name: str) -> Callable:
        if asyncio_mode:

            async def fset(self, value):
                if value > 100:
                    tango.Except.throw_exception("LimitError", f"{value} > 100", "write")
                await getattr(self.model, f"set_{attr_name}")(value)
                self.push_change_event(attr_name, value)
                self.push_archive_event(attr_name, value)
        else:

            def fset(self, value):
                if value > 100:
                    tango.Except.throw_exception("LimitError", f"{value} > 100", "write")
                coro = getattr(self.model, f"set_{attr_name}")(value)
                asyncio.run_coroutine_threadsafe(coro, background_loop()).result()
                self.push_change_event(attr_name, value)
                self.push_archive_event(attr_name, value)

        return fset

    def init_device(self):
        Device.init_device(self)
        self.model = Model()
        self.set_state(DevState.ON)
        for attr in ("position", "mode"):
            self.set_change_event(attr, True, False)
            self.set_archive_event(attr, True, False)

    async def ainit_device(self):
        await Device.init_device(self)
        self.model = Model()
        self.set_state(DevState.ON)
        for attr in ("position", "mode"):
            self.set_change_event(attr, True, False)
            self.set_archive_event(attr, True, False)

    def read_mode(self):
        return self.model.mode

    def write_mode(self, value):
        self.model.mode = value

    async def aread_mode(self):
        return self.model.mode

    async def awrite_mode(self, value):
        self.model.mode = value

    def set_limits(self, bounds):
        """Server-side change of min/max: clients see it, ATTR_CONF_EVENT is pushed."""
        attr = self.get_device_attr().get_attr_by_name("position")
        props = attr.get_properties()
        props.min_value, props.max_value = (str(b) if b == b else "Not specified" for b in bounds)
        attr.set_properties(props)

    async def aset_limits(self, bounds):
        set_limits(self, bounds)

    def push_from_thread(self, n):
        """Sync mode: a plain Python thread pushes, wrapped in EnsureOmniThread."""

        def pusher():
            with tango.EnsureOmniThread():
                for i in range(n):
                    self.push_change_event("position", float(i))
                    self.push_archive_event("position", float(i))

        threading.Thread(target=pusher, daemon=True).start()

    async def apush_from_loop(self, n):
        """Asyncio mode: pushes from the server's loop (another thread would risk cppTango#1202)."""

        async def pusher():
            for i in range(n):
                self.push_change_event("position", float(i))
                self.push_archive_event("position", float(i))
                await asyncio.sleep(0)

        asyncio.get_running_loop().create_task(pusher())

    def fail(self, value):
        tango.Except.throw_exception("LimitError", f"{value} is outside", "Fail")

    async def afail(self, value):
        fail(self, value)

    def rename(fn, new):
        fn.__name__ = new
        return fn

    a = asyncio_mode
    namespace = {
        "green_mode": GreenMode.Asyncio if a else GreenMode.Synchronous,
        "init_device": ainit_device if a else init_device,
        "position": attribute(
            name="position",
            dtype=float,
            access=AttrWriteType.READ_WRITE,
            unit="mm",
            min_value=-50,
            max_value=50,
            fget=getter("position"),
            fset=setter("position"),
            doc="closure-built",
        ),
        "mode": attribute(
            name="mode",
            dtype=tango.CmdArgType.DevEnum,
            enum_labels=["slow", "fast", "turbo"],
            access=AttrWriteType.READ_WRITE,
            fget=aread_mode if a else read_mode,
            fset=awrite_mode if a else write_mode,
        ),
        "SetLimits": command(
            f=rename(aset_limits if a else set_limits, "SetLimits"), dtype_in=[float]
        ),
        "Push": command(f=rename(apush_from_loop if a else push_from_thread, "Push"), dtype_in=int),
        "Fail": command(f=rename(afail if a else fail, "Fail"), dtype_in=float),
    }
    return type(name, (Device,), namespace)


def serve(kind: str, instance: str) -> None:
    from benchmarks.reference_device import ReferenceDevice

    classes: dict[str, tuple[type[Device], ...]] = {
        "async": (AsyncReference,),
        "dynsync": (make_class("LinearMotor", False),),
        "dynasync": (make_class("LinearMotor", True),),
        "multi": (ReferenceDevice, make_class("LinearMotor", False)),
    }
    chosen = classes[kind]
    mode = GreenMode.Asyncio if kind in ("async", "dynasync") else GreenMode.Synchronous
    run(chosen, args=[f"Probe{kind}", instance, *sys.argv[4:]], green_mode=mode)


# --- client side ------------------------------------------------------------------------


def latency(targets: dict[str, tuple[tango.DeviceProxy, str]], rounds: int = 5) -> dict:
    """READS reads per target, interleaved in rounds so that machine noise hits all alike."""
    samples: dict[str, list[float]] = {label: [] for label in targets}
    for proxy, attr in targets.values():
        for _ in range(100):
            proxy.read_attribute(attr)
    for _ in range(rounds):
        for label, (proxy, attr) in targets.items():
            for _ in range(READS // rounds):
                t0 = time.perf_counter()
                proxy.read_attribute(attr)
                samples[label].append((time.perf_counter() - t0) * 1e6)
    result = {}
    for label, values in samples.items():
        values.sort()
        result[label] = (statistics.median(values), values[int(0.99 * len(values)) - 1])
    return result


def count_events(proxy: tango.DeviceProxy, attr: str, trigger: Callable[[], None], n: int):
    got: dict[str, list] = {"change": [], "archive": []}
    ids = [
        proxy.subscribe_event(
            attr, tango.EventType.CHANGE_EVENT, lambda e: got["change"].append(e.err)
        ),
        proxy.subscribe_event(
            attr, tango.EventType.ARCHIVE_EVENT, lambda e: got["archive"].append(e.err)
        ),
    ]
    t0 = time.perf_counter()
    trigger()
    while time.perf_counter() - t0 < 10 and len(got["change"]) < n + 1:
        time.sleep(0.01)
    dt = time.perf_counter() - t0
    time.sleep(0.3)
    for i in ids:
        proxy.unsubscribe_event(i)
    return len(got["change"]) - 1, len(got["archive"]) - 1, dt


def main() -> None:
    from servers import EmbeddedDatabase, register_server, start_server

    tmp = Path(tempfile.mkdtemp(prefix="probe-"))
    with EmbeddedDatabase(tmp / "db") as db:
        th = db.tango_host
        me = str(Path(__file__).resolve())
        specs = {
            "a sync hand-written": (
                [sys.executable, str(ROOT / "benchmarks/reference_device.py"), "p"],
                "ReferenceDevice",
                {"ReferenceDevice": ["probe/ref/sync"]},
                "value",
            ),
            "b asyncio hand-written": (
                [sys.executable, me, "serve", "async", "p"],
                "Probeasync",
                {"AsyncReference": ["probe/ref/async"]},
                "value",
            ),
            "c dynamic sync + loop thread": (
                [sys.executable, me, "serve", "dynsync", "p"],
                "Probedynsync",
                {"LinearMotor": ["probe/dyn/sync"]},
                "position",
            ),
            "d dynamic asyncio": (
                [sys.executable, me, "serve", "dynasync", "p"],
                "Probedynasync",
                {"LinearMotor": ["probe/dyn/async"]},
                "position",
            ),
            "multi-class server": (
                [sys.executable, me, "serve", "multi", "p"],
                "Probemulti",
                {"ReferenceDevice": ["probe/multi/ref"], "LinearMotor": ["probe/multi/motor"]},
                None,
            ),
        }
        procs = []
        try:
            proxies = {}
            targets = {}
            for label, (argv, server, classes, attr) in specs.items():
                devices = []
                for cls, devs in classes.items():
                    register_server(db.database(), server, "p", cls, devs)
                    devices += devs
                proc = start_server(argv, th, devices, tmp / f"{server}.log")
                procs.append(proc)
                print(f"{label}: server answered {proc.startup_time:.2f} s after launch")
                proxies[label] = [proc.proxy(d) for d in devices]
                if attr is not None:
                    targets[label] = (proxies[label][0], attr)
            print("| case | median us | p99 us |\n|---|---|---|")
            for label, (med, p99) in latency(targets).items():
                print(f"| {label} | {med:.0f} | {p99:.0f} |")

            ref, motor = proxies["multi-class server"]
            print("multi: ", ref.info().dev_class, ref.read_attribute("value").value,
                  motor.info().dev_class, motor.read_attribute("position").value)  # fmt: skip

            for label in ("c dynamic sync + loop thread", "d dynamic asyncio"):
                p = proxies[label][0]
                print(f"\n== {label}")
                n = 500
                push = lambda p=p, n=n: p.command_inout("Push", n)  # noqa: E731
                c, a, dt = count_events(p, "position", push, n)
                print(f"pushed {n} from {'loop' if 'asyncio' in label else 'thread'}: "
                      f"change {c}, archive {a}, {dt * 1e3:.0f} ms")  # fmt: skip
                conf_events = []
                eid = p.subscribe_event(
                    "position", tango.EventType.ATTR_CONF_EVENT, conf_events.append
                )
                p.command_inout("SetLimits", [-5.0, 5.0])
                cfg = p.get_attribute_config("position")
                time.sleep(0.5)
                print("server set limits -> client config:", cfg.min_value, cfg.max_value,
                      "conf events:", [(e.attr_conf.min_value, e.attr_conf.max_value)
                                       for e in conf_events if not e.err])  # fmt: skip
                try:
                    p.write_attribute("position", 7.0)
                except tango.DevFailed as e:
                    print("write 7 after server limits:", e.args[0].reason)
                cfg.min_value = "-1"
                cfg.max_value = "1"
                p.set_attribute_config(cfg)
                time.sleep(0.5)
                print("client set_attribute_config -> conf events:",
                      [(e.attr_conf.min_value, e.attr_conf.max_value)
                       for e in conf_events if not e.err][-1])  # fmt: skip
                p.unsubscribe_event(eid)
                p.command_inout("SetLimits", [float("nan"), float("nan")])
                cfg = p.get_attribute_config("position")
                print("cleared limits:", repr(cfg.min_value), repr(cfg.max_value))
                for what, call in (
                    ("command", lambda p=p: p.command_inout("Fail", 3.0)),
                    ("write", lambda p=p: p.write_attribute("position", 500.0)),
                ):
                    try:
                        call()
                    except tango.DevFailed as e:
                        print(f"{what} DevFailed reason={e.args[0].reason} desc={e.args[0].desc}")
                p.write_attribute("mode", 2)
                mode = p.read_attribute("mode")
                cfg = p.get_attribute_config("mode")
                print("enum:", mode.value, mode.type, list(cfg.enum_labels))
            p = proxies["b asyncio hand-written"][0]
            try:
                p.command_inout("Fail", 20.0)
            except tango.DevFailed as e:
                print("\nasync hand-written Fail reason:", e.args[0].reason)
            c, a, dt = count_events(p, "value", lambda: p.command_inout("PushFromLoop", 500), 500)
            print(f"async hand-written push from loop: change {c}, archive {a}")
            p = proxies["a sync hand-written"][0]
            c, a, dt = count_events(p, "value", lambda: p.command_inout("Burst", 5000), 5000)
            print(f"reference Burst(5000): change {c} in {dt * 1e3:.0f} ms -> {c / dt:.0f} ev/s")
        finally:
            for proc in procs:
                proc.stop()
            print("logs in", tmp)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
