"""The bridge against a real Tango database and real server processes (contract §1-§5).

One process per server family of :data:`servers.families.SERVERS` is started for the
whole module (concurrently); the ``ConcertMotor`` process also hosts the motors the
behaviour tests use, each configured through ``concert_class``/``concert_args``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tango

from concert_core.devices.cameras import base as camera_base
from concert_core.quantities import parse_unit, q
from servers.families import SERVERS
from servers.introspect import commands_of

pytestmark = pytest.mark.tango

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INSTANCE = "t4bridge"
DOMAIN = "t4b"
DevState = tango.DevState

#: Motors of the ConcertMotor process for behaviour tests: device -> properties.
MOTORS: dict[str, dict[str, list[str]]] = {
    f"{DOMAIN}/motor/plain": {},
    f"{DOMAIN}/motor/events": {},
    f"{DOMAIN}/motor/lock": {},
    f"{DOMAIN}/motor/disable": {},
    f"{DOMAIN}/motor/estop": {"concert_args": ['{"speed": "1 mm/s"}']},
    f"{DOMAIN}/motor/slow": {"concert_args": ['{"speed": "1 mm/s", "position": "1 mm"}']},
    f"{DOMAIN}/motor/fast": {"concert_args": ['{"speed": "1000 mm/s"}']},
    f"{DOMAIN}/motor/hard": {"concert_args": ['{"upper_hard_limit": "5 mm"}']},
    f"{DOMAIN}/motor/limited": {"concert_class": ["tests.bridge_devices:LimitedLinearMotor"]},
    f"{DOMAIN}/motor/locked": {"concert_class": ["tests.bridge_devices:LockedLimitsMotor"]},
    f"{DOMAIN}/motor/homefault": {"concert_class": ["tests.bridge_devices:HomeFaultMotor"]},
    f"{DOMAIN}/motor/stall": {"concert_class": ["tests.bridge_devices:StallingMotor"]},
    f"{DOMAIN}/motor/counted": {"concert_class": ["tests.bridge_devices:CountedReadsMotor"],
                                "read_cache_ms": ["0"]},
    f"{DOMAIN}/motor/bad": {"concert_args": ['{"position": "12 zorglubs"}']},
    f"{DOMAIN}/motor/slownote": {"concert_class": ["tests.bridge_devices:SlowNoteMotor"]},
}
CAMERA = f"{DOMAIN}/camera/behaviour"
RESTART_MOTOR = f"{DOMAIN}/restart/motor"


def family_device(server: str, tango_class: str) -> str:
    return f"{DOMAIN}/{server.lower()}/{tango_class.lower()}"


def family_properties(server: str) -> dict[str, str]:
    """Device properties naming other devices of the module's beamline (a director's)."""
    walker = SERVERS.get("ConcertWalker")
    return {
        "experiment_type": "Radiography",
        "parameters": '{"radio_position": "0 mm", "flat_position": "10 mm"}',
        "camera": family_device("ConcertCamera", "Camera"),
        "walker": family_device("ConcertWalker", walker[0].tango_class) if walker else "",
        "flat_motor": family_device("ConcertMotor", "LinearMotor"),
        "vertical_motor": family_device("ConcertMotor", "ContinuousLinearMotor"),
        "stepping_motor": family_device("ConcertMotor", "LinearMotor"),
        "tomography_motor": family_device("ConcertMotor", "ContinuousRotationMotor"),
        "shutter": family_device("ConcertShutter", "Shutter"),
        "storage_ring": family_device("ConcertStorageRing", "StorageRing"),
    }


@pytest.fixture(scope="module")
def beamline(tango_servers, tmp_path_factory) -> dict:
    """Every server family running; returns server name -> ServerProcess."""
    env = {"PYTHONPATH": str(ROOT)}
    processes: dict = {}
    for server, entries in SERVERS.items():
        try:
            for entry in entries:
                entry.family_class()
        except Exception as error:  # reported by this family's test, the others run
            processes["!" + server] = f"{type(error).__name__}: {error}"
            continue
        classes = {entry.tango_class: [family_device(server, entry.tango_class)]
                   for entry in entries}
        properties = {}
        if server == "ConcertMotor":
            classes["LinearMotor"] += list(MOTORS)
            properties = {name: props for name, props in MOTORS.items() if props}
        if server == "ConcertCamera":
            classes["Camera"].append(CAMERA)
        for entry in entries:  # family-declared device properties (root, devices used)
            wanted = getattr(entry.family_class(), "tango_properties", {})
            values = {name: [value] for name, value in family_properties(server).items()
                      if name in wanted}
            if "root" in wanted:
                values["root"] = [str(tmp_path_factory.mktemp(f"{server}-root"))]
            if values:
                properties[family_device(server, entry.tango_class)] = values
        processes[server] = tango_servers.prepare(
            [BIN / server, INSTANCE], server, INSTANCE, classes, properties, timeout=90,
            env=env)
    tango_servers.start_all([process for key, process in processes.items()
                             if not key.startswith("!")])
    return processes


@pytest.fixture(scope="module")
def restartable(tango_servers, beamline):
    """A small ConcertMotor server of its own, for the restart test."""
    return tango_servers.start([BIN / "ConcertMotor", "t4restart"], "ConcertMotor",
                               "t4restart", {"LinearMotor": [RESTART_MOTOR]}, timeout=30)


def proxy(name: str) -> tango.DeviceProxy:
    return tango.DeviceProxy(name)  # TANGO_HOST is set: events need the plain name


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def wait_state(device: tango.DeviceProxy, *states: DevState, timeout: float = 5.0) -> DevState:
    assert wait_for(lambda: device.state() in states, timeout), \
        f"{device.dev_name()} stays {device.state()} ({device.status()!r}), wanted {states}"
    return device.state()


def refused(call: Callable[[], object]) -> tango.DevError:
    with pytest.raises(tango.DevFailed) as info:
        call()
    return info.value.args[0]


class Events:
    """Collects CHANGE_EVENTs of one attribute; unsubscribes on exit. ``values``: (arrival,
    monotonic; value); ``stamped``: (arrival, the event's own stamp, value), epoch seconds."""

    def __init__(self, device: tango.DeviceProxy, attribute: str,
                 kind: tango.EventType = tango.EventType.CHANGE_EVENT) -> None:
        self.device, self.attribute, self.kind = device, attribute, kind
        self.values: list[tuple[float, object]] = []
        self.stamped: list[tuple[float, float, object]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.event_id: int | None = None

    def __call__(self, event) -> None:
        with self._lock:
            if event.err:
                self.errors.append(event.errors[0].reason)
            elif self.kind == tango.EventType.ATTR_CONF_EVENT:
                self.values.append((time.monotonic(), event.attr_conf))
            else:
                self.values.append((time.monotonic(), event.attr_value.value))
                self.stamped.append((time.time(), event.attr_value.time.totime(),
                                     event.attr_value.value))

    def __enter__(self) -> Events:
        self.event_id = self.device.subscribe_event(self.attribute, self.kind, self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.event_id is not None:
            self.device.unsubscribe_event(self.event_id)

    def seen(self) -> list:
        with self._lock:
            return [value for _, value in self.values]

    def first(self, value: object) -> tuple[float, float, object] | None:
        """The first ``stamped`` entry of ``value``, if it came."""
        with self._lock:
            return next((entry for entry in self.stamped if entry[2] == value), None)

    def clear(self) -> None:
        with self._lock:
            self.values.clear()
            self.stamped.clear()
            self.errors.clear()


# -- every family -----------------------------------------------------------------------
NOT_BUSY = [state for state in DevState.values.values()
            if state not in (DevState.MOVING, DevState.RUNNING)]


def write_back(device: tango.DeviceProxy, attribute: str, value: object,
               config: tango.AttributeInfoEx) -> None:
    """Write ``value`` (the attribute's own, so in range) and read it back."""
    device.write_attribute(attribute, value)
    wait_state(device, *NOT_BUSY)
    again = device.read_attribute(attribute).value
    if config.data_type in (tango.DevDouble, tango.DevFloat):
        assert again == pytest.approx(value, abs=1e-6), attribute
    else:
        assert again == value, attribute


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_family_registered_read_written_commanded(beamline, server: str) -> None:
    assert server in beamline, f"{server} could not be set up: {beamline.get('!' + server)}"
    db = tango.Database()
    server_instance = f"{server}/{INSTANCE}"
    assert server_instance in db.get_server_list(f"{server}/*")
    classes = set(db.get_server_class_list(server_instance))
    listing = list(db.get_device_class_list(server_instance))
    device_classes = dict(zip(listing[::2], listing[1::2], strict=True))
    for entry in SERVERS[server]:
        assert entry.tango_class in classes
        name = family_device(server, entry.tango_class)
        assert device_classes[name] == entry.tango_class
        device = proxy(name)
        assert device.info().dev_class == entry.tango_class
        assert device.state() not in (DevState.FAULT, DevState.UNKNOWN, DevState.INIT), \
            device.status()
        assert device.status()
        names = [attribute for attribute in device.get_attribute_list()
                 if attribute not in ("State", "Status")]
        for config in device.get_attribute_config(names):
            if config.writable == tango.AttrWriteType.WRITE:
                continue
            value = device.read_attribute(config.name).value
            if (config.writable == tango.AttrWriteType.READ_WRITE and value is not None
                    and config.data_format == tango.AttrDataFormat.SCALAR):
                write_back(device, config.name, value, config)
        commands = {info.cmd_name for info in device.command_list_query()}
        wanted = {spec.name for spec in commands_of(entry.family_class())}
        assert wanted | {"Init", "State", "Status", "Stop", "Lock", "Unlock", "Stash",
                         "Restore", "EmergencyStop"} <= commands
        before = device.state()
        device.Init()
        assert wait_state(device, before) == before
        for config in device.get_attribute_config(names):
            if config.writable != tango.AttrWriteType.WRITE:
                device.read_attribute(config.name)


@pytest.mark.parametrize(("device", "commands", "states"), [
    (family_device("ConcertShutter", "Shutter"), ["Open", "Close"],
     [DevState.OPEN, DevState.CLOSE]),
    (family_device("ConcertGripper", "Gripper"), ["Grip", "Release"],
     [DevState.ON, DevState.ON]),
])
def test_state_only_families_are_commanded(beamline, device, commands, states) -> None:
    target = proxy(device)
    with Events(target, "State") as events:
        for command, state in zip(commands, states, strict=True):
            target.command_inout(command)
            assert wait_state(target, state) == state
            assert wait_for(lambda state=state: events.seen()[-1:] == [state])
        assert DevState.MOVING in events.seen()


def test_database_shows_servers_classes_devices(beamline) -> None:
    db = tango.Database()
    instances = db.get_instance_name_list("ConcertMotor")
    assert INSTANCE in instances
    classes = set(db.get_server_class_list(f"ConcertMotor/{INSTANCE}"))
    assert {"LinearMotor", "ContinuousLinearMotor", "RotationMotor",
            "ContinuousRotationMotor"} <= classes
    devices = set(db.get_device_name(f"ConcertMotor/{INSTANCE}", "LinearMotor"))
    assert set(MOTORS) <= devices
    exported = set(db.get_device_exported_for_class("LinearMotor"))
    assert f"{DOMAIN}/motor/plain" in exported
    props = db.get_device_property(f"{DOMAIN}/motor/limited", ["concert_class"])
    assert list(props["concert_class"]) == ["tests.bridge_devices:LimitedLinearMotor"]


# -- attribute configuration as Jive shows it --------------------------------------------
def test_attribute_configuration(beamline) -> None:
    limited = proxy(f"{DOMAIN}/motor/limited")
    config = limited.get_attribute_config("position")
    assert config.unit == "mm" and parse_unit(config.unit) == q.mm
    assert float(config.min_value) == -10.0 and float(config.max_value) == 10.0
    assert "Position" in config.description
    assert config.writable == tango.AttrWriteType.READ_WRITE
    assert config.data_type == tango.DevDouble
    state = limited.get_attribute_config("State")
    assert state.writable == tango.AttrWriteType.READ

    rotation = proxy(family_device("ConcertMotor", "ContinuousRotationMotor"))
    config = rotation.get_attribute_config("velocity")
    assert parse_unit(config.unit) == q.deg / q.s  # pint's short symbol, parsed back
    assert config.min_value == "Not specified" and config.max_value == "Not specified"

    camera = proxy(CAMERA)
    exposure = camera.get_attribute_config("exposure_time")
    assert exposure.unit == "s" and float(exposure.min_value) == 0.0
    assert exposure.description == camera_base.Camera.exposure_time.help
    trigger = camera.get_attribute_config("trigger_source")
    assert trigger.data_type == tango.DevEnum
    labels = [str(value) for value in camera_base.Camera.trigger_source.values]
    assert list(trigger.enum_labels) == labels
    assert labels[camera.trigger_source] == "AUTO"
    camera.trigger_source = labels.index("SOFTWARE")
    assert labels[camera.trigger_source] == "SOFTWARE"
    camera.trigger_source = labels.index("AUTO")
    grabbed = camera.get_attribute_config("frames_grabbed")
    assert grabbed.writable == tango.AttrWriteType.READ
    assert grabbed.data_type == tango.DevLong64


# -- events -----------------------------------------------------------------------------
def test_change_events_for_writes_and_motion(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/events")
    with Events(motor, "position") as positions, Events(motor, "State") as states:
        assert wait_for(lambda: positions.seen() and states.seen())  # the first event
        positions.clear()
        states.clear()
        began = time.monotonic()
        motor.position = 5.0  # 50 ms at 100 mm/s
        assert wait_for(lambda: 5.0 in positions.seen(), 5)
        assert wait_for(lambda: DevState.ON in states.seen(), 5)
        motor.position = 30.0  # 0.3 s
        wait_state(motor, DevState.ON)
        assert wait_for(lambda: positions.seen()[-1:] == [30.0], 2)
        assert motor.position == pytest.approx(30.0)
        moving = [(stamp, value) for stamp, value in positions.values
                  if 5.0 < value < 30.0]
        duration = max(stamp for stamp, _ in positions.values) - began
        assert len(moving) >= 0.25 * 10, positions.values  # >= 10 Hz during 0.25 s
        if len(moving) >= 2:
            span = moving[-1][0] - moving[0][0]
            assert (len(moving) - 1) / span >= 10, (len(moving), span)
        assert duration < 3
        values = [value for value in positions.seen() if 5.0 <= value <= 30.0]
        assert values == sorted(values)
        # A polled State answers before the pusher thread has sent the same change as an
        # event, so the final ON event is awaited, not assumed.
        assert wait_for(lambda: states.seen()[-1:] == [DevState.ON], 5), states.seen()
        seen_states = states.seen()
        assert DevState.MOVING in seen_states
        assert seen_states.index(DevState.MOVING) < len(seen_states) - 1
        assert not positions.errors and not states.errors


@pytest.fixture(scope="module")
def tickers(tango_servers) -> tuple[tango.DeviceProxy, tango.DeviceProxy]:
    """Two stateless ``Ticker`` devices (tests/ticker_server.py) in one server process."""
    names = [f"{DOMAIN}/ticker/a", f"{DOMAIN}/ticker/b"]
    tango_servers.start([sys.executable, "-m", "tests.ticker_server", INSTANCE], "Ticker",
                        INSTANCE, {"Ticker": names}, timeout=30,
                        env={"PYTHONPATH": str(ROOT)})
    return proxy(names[0]), proxy(names[1])


def _after(seconds: float, call: Callable[[], object]) -> threading.Thread:
    """Run ``call`` in a thread of its own ``seconds`` from now."""
    def later() -> None:
        time.sleep(seconds)
        call()

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    return thread


def test_events_carry_the_time_of_the_change(tickers) -> None:
    """A push waits while a call holds its device (PyTango takes the device's monitor),
    but the event is stamped when the value changed (HDB++ archives the stamp; Bluesky
    orders readings by it)."""
    ticker = tickers[0]
    with Events(ticker, "count") as events:
        assert wait_for(lambda: events.seen())  # the first event: the current value
        wanted = ticker.count + 1
        began = time.time()
        ticker.Hold(0.4)  # counts at once, then keeps the device 0.4 s
        assert wait_for(lambda: events.first(wanted), 5)
        arrived, stamped, _ = events.first(wanted)
        assert arrived - began >= 0.35  # pushed once the call had let the device go
        assert began <= stamped + 0.01 and stamped - began < 0.15  # stamped at the change


def test_a_long_command_of_a_device_without_state_is_answered_at_once(tickers) -> None:
    """Without State a long operation cannot show that it started: the call is answered
    after SETTLE, and its events go out as they come, not once the call lets go."""
    ticker = tickers[1]
    with Events(ticker, "count") as events:
        assert wait_for(lambda: events.seen())  # read at subscription, not pushed
        # One pushed event first: the subscription's ZMQ connection may still be on its
        # way, and a push before it is up is lost (this test once waited for a lost one).
        ticker.Tick([1, 100.0])
        assert wait_for(lambda: len(events.seen()) >= 2, 5)
        start = ticker.count
        began = time.time()
        ticker.Tick([50, 50.0])  # 1 s of ticks
        answered = time.time() - began
        assert answered < 0.5, f"Tick was answered after {answered:.2f} s"
        assert wait_for(lambda: events.first(start + 1), 2)
        assert events.first(start + 1)[0] - began < 0.5  # the first tick, while ticking
        assert wait_for(lambda: events.first(start + 50), 5)
        assert ticker.state() == DevState.ON


def test_events_go_on_after_init(tickers) -> None:
    """Init replaces the device's pusher (the old one is closed): events still come, once."""
    ticker = tickers[1]
    with Events(ticker, "count") as events:
        assert wait_for(lambda: events.seen())
        ticker.Init()
        start = ticker.count
        ticker.Tick([2, 100.0])
        assert wait_for(lambda: events.first(start + 2), 3)
        time.sleep(0.1)
        values = events.seen()
        assert values.count(start + 1) == 1 and values.count(start + 2) == 1


def test_a_held_device_holds_up_no_other_devices_events(tickers) -> None:
    """While a call keeps device a (and a's own pushes) waiting, device b of the same
    server still gets its events out: each device has its own pusher."""
    held, other = tickers
    with Events(held, "count") as held_events, Events(other, "count") as other_events:
        assert wait_for(lambda: held_events.seen() and other_events.seen())
        held_next, other_next = held.count + 1, other.count + 1
        began = time.time()
        ticking = _after(0.2, lambda: other.Tick([1, 100.0]))
        held.Hold(1.5)  # a's event waits for this call; b ticks 0.2 s into it
        ticking.join(5)
        assert wait_for(lambda: held_events.first(held_next) and other_events.first(other_next))
        held_arrival = held_events.first(held_next)[0] - began
        other_arrival = other_events.first(other_next)[0] - began
        assert held_arrival >= 1.4, "a's push did not wait for the call: no hold to test"
        assert other_arrival < 1.0, f"b's event came {other_arrival:.2f} s in, behind a's"


def test_status_events(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/disable")
    with Events(motor, "Status") as status:
        assert wait_for(lambda: status.seen())
        motor.Disable()
        assert wait_for(lambda: status.seen()[-1].startswith("disabled"))
        motor.Enable()
        assert wait_for(lambda: status.seen()[-1].startswith("standby"))


# -- refusals (contract §5) --------------------------------------------------------------
def test_soft_limit_refusals(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/limited")
    motor.position = 2.0
    wait_state(motor, DevState.ON)
    error = refused(lambda: motor.Move(20.0))
    assert error.reason == "SoftLimitError"
    assert "22" in error.desc and "10" in error.desc
    error = refused(lambda: motor.write_attribute("position", 11.0))
    assert error.reason in ("API_WAttrOutsideLimit", "SoftLimitError")
    assert motor.position == 2.0 and motor.state() == DevState.ON
    config = motor.get_attribute_config("position")
    assert float(config.max_value) == 10.0


def test_lock_refusal(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/lock")
    motor.Lock(False)
    try:
        error = refused(lambda: motor.write_attribute("position", 1.0))
        assert error.reason == "LockError"
        error = refused(lambda: motor.Move(1.0))
        assert error.reason == "LockError"
        assert motor.position == 0.0 and motor.state() == DevState.ON
    finally:
        motor.Unlock()
    motor.position = 1.0
    wait_state(motor, DevState.ON)
    assert motor.position == 1.0


def test_transition_not_allowed(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/disable")
    motor.Disable()
    try:
        assert motor.state() == DevState.DISABLE
        error = refused(lambda: motor.write_attribute("position", 3.0))
        assert error.reason == "TransitionNotAllowed"
        assert "disabled" in error.desc
        assert refused(motor.Home).reason == "TransitionNotAllowed"
        assert motor.position == 0.0 and motor.state() == DevState.DISABLE
    finally:
        motor.Enable()
    assert motor.state() == DevState.ON

    camera = proxy(CAMERA)
    assert camera.state() == DevState.ON
    error = refused(camera.Trigger)
    assert error.reason == "TransitionNotAllowed"
    assert camera.state() == DevState.ON and "standby" in camera.status()


def test_hard_limit(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/hard")
    motor.position = 8.0  # beyond the hard limit at 5 mm: stops there
    assert wait_state(motor, DevState.ALARM) == DevState.ALARM
    status = motor.status()
    assert status.startswith("hard-limit") and "HardLimitError" in status
    assert motor.position == pytest.approx(5.0)
    motor.position = 1.0  # a move back inside works from hard-limit
    assert wait_state(motor, DevState.ON) == DevState.ON
    assert motor.position == pytest.approx(1.0)
    assert "HardLimitError" not in motor.status()


def test_state_error_from_injected_faults(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/homefault")
    try:
        motor.Home()
    except tango.DevFailed as failure:  # failed before the call returned
        assert failure.args[0].reason == "StateError"
    assert wait_state(motor, DevState.FAULT) == DevState.FAULT
    assert motor.status().startswith("error")
    assert "StateError" in motor.status() or "homing failed" in motor.status()
    motor.Reset()
    assert wait_state(motor, DevState.ON) == DevState.ON

    stalling = proxy(f"{DOMAIN}/motor/stall")
    stalling.position = 10.0  # stalls at 5 mm in the background
    assert wait_state(stalling, DevState.FAULT) == DevState.FAULT
    assert "StateError" in stalling.status() and "stalled" in stalling.status()
    assert stalling.position == pytest.approx(5.0)
    error = refused(lambda: stalling.write_attribute("position", 1.0))
    assert error.reason == "TransitionNotAllowed"
    stalling.Reset()
    assert wait_state(stalling, DevState.ON) == DevState.ON
    stalling.position = 1.0
    wait_state(stalling, DevState.ON)
    assert stalling.position == pytest.approx(1.0)


def test_a_read_of_several_attributes_asks_the_device_once_for_each(beamline) -> None:
    """The stale attributes of one read are fetched together; one that fails reports its
    own error and spoils neither the others nor the next read."""
    counted = proxy(f"{DOMAIN}/motor/counted")  # read_cache_ms 0: every read is stale
    before = counted.read_attribute("fetches").value
    replies = counted.read_attributes(["first", "broken", "second", "position"])
    assert [replies[0].value, replies[2].value] == [1, 2]
    assert not replies[0].has_failed and not replies[2].has_failed
    assert replies[1].has_failed
    assert "unplugged" in replies[1].get_err_stack()[0].desc
    assert replies[3].value == pytest.approx(0.0)
    assert counted.read_attribute("fetches").value == before + 2
    assert [reply.value for reply in counted.read_attributes(["second", "first"])] == [2, 1]
    assert counted.read_attribute("fetches").value == before + 4
    # a request for one attribute skips the prefetch; its own read still asks the device
    assert counted.read_attribute("first").value == 1
    assert counted.read_attribute("fetches").value == before + 5


def test_bad_arguments_and_read_only(beamline) -> None:
    io = proxy(family_device("ConcertIO", "IO"))
    before = io.ReadPort(1)
    error = refused(lambda: io.WritePort([1.0]))  # port and value wanted
    assert error.reason == "ValueError" and "port, value" in error.desc
    error = refused(lambda: io.WritePort([1.0, 1.0, 1.0]))
    assert error.reason == "ValueError"
    assert io.ReadPort(1) == before
    camera = proxy(CAMERA)
    before = camera.frames_grabbed
    error = refused(lambda: camera.write_attribute("frames_grabbed", 5))
    assert error.reason == "API_AttrNotWritable"
    assert camera.frames_grabbed == before
    error = refused(lambda: camera.read_attribute("no_such_attribute"))
    assert error.reason == "API_AttrNotFound"


def test_bad_concert_args_fault_only_that_device(beamline) -> None:
    bad = proxy(f"{DOMAIN}/motor/bad")
    assert bad.state() == DevState.FAULT
    status = bad.status()
    assert "position" in status and "zorglubs" in status
    assert refused(bad.Home).reason == "StateError"
    plain = proxy(f"{DOMAIN}/motor/plain")
    assert plain.state() == DevState.ON
    assert plain.position == 0.0


# -- soft limits both ways ---------------------------------------------------------------
def test_server_side_limit_change_updates_min_max(beamline) -> None:
    # The camera couples its ROI: roi_x0 may go up to sensor_width - roi_width, so a
    # write of roi_width changes roi_x0's limits on the server side.
    camera = proxy(CAMERA)
    width = camera.sensor_width
    assert float(camera.get_attribute_config("roi_x0").max_value) == pytest.approx(0.0)
    with Events(camera, "roi_x0", tango.EventType.ATTR_CONF_EVENT) as conf:
        assert wait_for(lambda: conf.seen())
        conf.clear()
        camera.roi_width = width - 100
        try:
            assert wait_for(lambda: any(float(c.max_value) == pytest.approx(100.0)
                                        for c in conf.seen()))
            config = camera.get_attribute_config("roi_x0")
            assert float(config.min_value) == 0 and float(config.max_value) == 100.0
            assert refused(lambda: camera.write_attribute("roi_x0", 150)).reason in (
                "API_WAttrOutsideLimit", "SoftLimitError")
            camera.roi_x0 = 100
            assert camera.roi_x0 == 100
            camera.roi_x0 = 0
        finally:
            camera.roi_width = width
        assert wait_for(lambda: float(camera.get_attribute_config("roi_x0").max_value)
                        == pytest.approx(0.0))
    # Limits a write changes are in place when the write returns: each write below is
    # legal only under the limits the one before it set.
    for _ in range(5):
        camera.roi_width = width - 100
        camera.roi_x0 = 100
        camera.roi_x0 = 0
        camera.roi_width = width
    assert float(camera.get_attribute_config("roi_width").max_value) == pytest.approx(width)


def _set_limits(device: tango.DeviceProxy, low: str, high: str,
                attribute: str = "position") -> None:
    config = device.get_attribute_config(attribute)
    config.min_value, config.max_value = low, high
    device.set_attribute_config(config)


def test_client_limits_are_taken_over_without_a_call(beamline) -> None:
    # A client that only changes the configuration (as Jive does): the bridge takes the
    # change over from its configuration event. Observable here without any call: roi_x0
    # may not pass sensor_width - roi_width (0 with the full width), so the effective
    # limits the bridge shows after taking a looser maximum over are that 0 again.
    camera = proxy(CAMERA)
    assert camera.roi_width == camera.sensor_width

    def maximum() -> float | None:
        text = camera.get_attribute_config("roi_x0").max_value
        return None if text == "Not specified" else float(text)

    assert maximum() == pytest.approx(0.0)
    _set_limits(camera, "0.0", "50.0", "roi_x0")
    try:
        assert wait_for(lambda: maximum() == pytest.approx(0.0))
    finally:
        _set_limits(camera, "0.0", "Not specified", "roi_x0")
    assert wait_for(lambda: maximum() == pytest.approx(0.0))
    assert "refused" not in camera.status()


def test_client_set_attribute_config_sets_user_limits(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/plain")
    assert motor.get_attribute_config("position").max_value == "Not specified"
    assert motor.position == 0.0
    try:
        # The server takes them over as the concert user limits before the next call,
        # while their configuration event may still be on its way: a Move beyond is
        # refused by concert (Tango itself checks writes only). Each Move below is
        # refused only by the limits set just before it; the ones before allow it.
        # (Waiting for the event instead lost about 1 in 200 of these, on a quiet host.)
        for _ in range(200):
            _set_limits(motor, "-2.0", "3.0")
            assert refused(lambda: motor.Move(-3.0)).reason == "SoftLimitError"
            _set_limits(motor, "-4.0", "2.0")
            assert refused(lambda: motor.Move(2.5)).reason == "SoftLimitError"
        time.sleep(0.3)  # the configuration events have come, the older ones last
        assert refused(lambda: motor.Move(2.5)).reason == "SoftLimitError"
        config = motor.get_attribute_config("position")
        assert (float(config.min_value), float(config.max_value)) == (-4.0, 2.0)
        assert motor.position == 0.0
        assert "LockError" not in motor.status()
    finally:
        _set_limits(motor, "Not specified", "Not specified")
    assert _move_allowed(motor, 3.5)


def _move_allowed(motor: tango.DeviceProxy, delta: float) -> bool:
    try:
        motor.Move(delta)
    except tango.DevFailed:
        return False
    wait_state(motor, DevState.ON)
    motor.position = 0.0
    wait_state(motor, DevState.ON)
    return True


def test_locked_limits_revert_client_change(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/locked")
    config = motor.get_attribute_config("position")
    config.max_value = "50.0"
    motor.set_attribute_config(config)  # Tango offers no hook to refuse it (documented)
    assert wait_for(lambda: "LockError" in motor.status())
    assert wait_for(lambda: float(motor.get_attribute_config("position").max_value) == 10.0)
    assert refused(lambda: motor.Move(20.0)).reason == "SoftLimitError"
    assert motor.state() == DevState.ON


# -- long operations ---------------------------------------------------------------------
def test_long_operation_returns_fast_and_stop_cancels(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/slow")  # 1 mm/s, at 1 mm
    began = time.monotonic()
    motor.position = 11.0  # a 10-s motion
    assert time.monotonic() - began < 1.0
    assert motor.state() == DevState.MOVING
    time.sleep(0.3)
    began = time.monotonic()
    motor.Stop()
    assert time.monotonic() - began < 1.0
    assert wait_state(motor, DevState.ON) == DevState.ON
    position = motor.position
    assert 1.0 < position < 11.0
    time.sleep(0.2)
    assert motor.position == position

    began = time.monotonic()
    motor.Move(-5.0)
    assert time.monotonic() - began < 1.0
    assert motor.state() == DevState.MOVING
    motor.Stop()
    assert wait_state(motor, DevState.ON) == DevState.ON
    assert position - 5.0 < motor.position < position


def test_a_write_is_not_answered_by_another_operations_end(beamline) -> None:
    """A write waits for its setter, however the State changes meanwhile: here a motion
    started before it ends during the write (MOVING -> ON). Leaving MOVING or RUNNING is
    no operation's start, so it answers nothing early; the note is stored when the write
    returns."""
    motor = proxy(f"{DOMAIN}/motor/slownote")  # 1 mm/s
    for round_ in range(2):  # the second: the write's "ends within SETTLE" was learnt
        motor.position = motor.position + 0.05  # moving for 50 ms
        assert motor.state() == DevState.MOVING
        began = time.monotonic()
        motor.note = f"round {round_}"  # stored in 0.3 s; the motion ends meanwhile
        assert time.monotonic() - began >= 0.3
        assert motor.note == f"round {round_}"
        assert motor.state() == DevState.ON


def test_a_pulse_is_answered_when_it_starts(beamline) -> None:
    """A signal at rest (OFF) turns ON for a pulse: that change is the pulse's start, so
    Trigger answers then and does not wait out the pulse."""
    signal = proxy(family_device("ConcertIO", "Signal"))
    assert signal.state() == DevState.OFF
    began = time.monotonic()
    signal.Trigger(1.0)  # a 1-s pulse
    assert time.monotonic() - began < 0.5
    assert signal.state() == DevState.ON
    assert wait_state(signal, DevState.OFF) == DevState.OFF
    assert time.monotonic() - began >= 1.0


def test_short_operation_is_answered_as_done(beamline) -> None:
    # A move that ends within SETTLE of its start comes back finished: the State read in
    # the same round trip is ON and the position is the target (no event needed). A
    # 0.3-s move still returns before its end, MOVING.
    from servers.bridge import SETTLE

    motor = proxy(f"{DOMAIN}/motor/fast")  # 1000 mm/s
    step = SETTLE * 1000 / 10  # mm: a tenth of SETTLE, longer than a round trip

    def answered_as_done(target: float) -> bool:
        state, position = motor.write_read_attributes([("position", target)],
                                                      ["State", "position"])
        if state.value == DevState.ON and position.value == pytest.approx(target):
            return True
        # A step the loaded machine stretched past SETTLE makes the bridge answer the next
        # one once it has started; Tango reads State after position, so that answer may
        # show ON with the position before the end. Either way it ends.
        assert state.value in (DevState.ON, DevState.MOVING)
        assert wait_state(motor, DevState.ON) == DevState.ON
        assert motor.position == pytest.approx(target)
        return False

    # Short steps are answered as done (a stretched one costs itself and its next).
    assert sum(answered_as_done(index * step) for index in range(1, 6)) >= 3
    state, = motor.write_read_attributes([("position", 300.0)], ["State"])
    assert state.value == DevState.MOVING
    assert wait_state(motor, DevState.ON) == DevState.ON
    assert motor.position == pytest.approx(300.0)
    # After that long move the next step is answered once it started (the bridge waits
    # SETTLE only for operations whose last run ended within it); it ends quickly, so the
    # steps after it are answered as done again.
    motor.position = 300.0 + step
    assert wait_state(motor, DevState.ON) == DevState.ON
    assert sum(answered_as_done(300.0 + index * step) for index in range(2, 6)) >= 2


def test_emergency_stop(beamline) -> None:
    motor = proxy(f"{DOMAIN}/motor/estop")
    motor.position = 10.0
    assert motor.state() == DevState.MOVING
    time.sleep(0.2)
    motor.EmergencyStop()
    assert wait_state(motor, DevState.ON, DevState.FAULT, DevState.ALARM) == DevState.ON
    position = motor.position
    assert 0.0 < position < 10.0
    camera = proxy(CAMERA)
    camera.StartRecording()
    assert wait_state(camera, DevState.RUNNING) == DevState.RUNNING
    camera.EmergencyStop()
    assert wait_state(camera, DevState.ON, DevState.FAULT) == DevState.ON


# -- restart -----------------------------------------------------------------------------
def test_client_survives_server_restart(restartable) -> None:
    motor = proxy(RESTART_MOTOR)
    with Events(motor, "position") as positions:
        assert wait_for(lambda: positions.seen())
        motor.position = 2.0
        assert wait_for(lambda: 2.0 in positions.seen())
        restartable.restart()
        assert wait_for(lambda: _reads(motor), 10, 0.1)
        assert motor.position == 0.0  # a new process: the dummy starts again at 0
        positions.clear()

        def resumed() -> bool:  # events come back after Tango's reconnection (<= ~10 s)
            if 3.0 in positions.seen():
                return True
            if motor.state() == DevState.ON:
                motor.position = 3.0 if motor.position != 3.0 else 0.0
            return False

        assert wait_for(resumed, 25, 0.5), (positions.values, positions.errors)
    assert motor.state() == DevState.ON


def _reads(device: tango.DeviceProxy) -> bool:
    try:
        device.read_attribute("position")
    except tango.DevFailed:
        return False
    return True


# -- itango ------------------------------------------------------------------------------
def test_itango_reads_and_writes(beamline, tango_db) -> None:
    name = f"{DOMAIN}/motor/plain"
    script = (
        f"m = Device({name!r}); m.position = 1.5; import time; time.sleep(0.3); "
        "print('ITANGO', m.position, m.state())"
    )
    env = {"TANGO_HOST": tango_db.tango_host, "PATH": str(BIN), "HOME": str(ROOT / ".venv"),
           "IPYTHONDIR": str(Path(tango_db.sqlite_file).parent / "ipython")}
    result = subprocess.run([BIN / "itango", "--simple-prompt", "--no-banner",
                             "--colors=NoColor", "-c", script],
                            capture_output=True, text=True, timeout=60, env=env)
    assert "ITANGO 1.5 ON" in result.stdout, result.stdout + result.stderr
    assert proxy(name).position == 1.5
    proxy(name).position = 0.0
    wait_state(proxy(name), DevState.ON)

