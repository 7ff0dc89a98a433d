"""The generic bridge: any concert ``Device`` class published as a Tango device class.

:func:`tango_class` builds, from a concert family class, a ``tango.server.Device``
subclass named like it. Its commands are the family's public coroutine methods (static,
so Jive and Astor list them per class). Its attributes are made per device in
``init_device`` from the implementation the ``concert_class`` property names, because a
plain Parameter's value type is only known by reading it. The concert device lives on the
process's asyncio loop (:mod:`servers.runtime`); Tango calls hand coroutines to it.

Reads are served from a mirror of each value. Every change the core announces updates the
mirror and is pushed as change and archive events; a value older than ``read_cache_ms``
is read again from the device first. Writes and long commands validate, start the
operation as a task and return once it has started (its state changed) or finished. An
operation that ends within ``SETTLE`` seconds of its start (a short step of a fast motor) is
answered as finished: its client reads the final State in the same reply and needs no event.
The bridge waits those ``SETTLE`` seconds only for an operation whose last run (per command
or attribute of the device) ended within them: one that outlives them (a ``WriteSequence``,
a long ``grab_send``) is answered as soon as it has started. A long command without a
result of a device without State is answered after ``SETTLE`` and goes on in the
background (its failure drives the device to FAULT).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pint
import tango
from tango.server import Device, command, device_property

from concert_core.parameter import ParameterValue, QuantityValue, SelectionValue
from concert_core.state import StateValue
from servers.configuration import check_device_config, parse_args
from servers.families import Published
from servers.introspect import CommandSpec, Kind, commands_of
from servers.mapping import (
    BUSY,
    COMMAND_TYPES,
    attribute_type,
    encode_result,
    limit_texts,
    parse_limit_text,
    tango_state,
    throw,
    to_tango,
)
from servers.runtime import Pusher, loop_thread

LOG = logging.getLogger(__name__)

#: How long a call may wait for an operation to start or end (Tango clients give up at 3 s).
GUARD = 2.5
#: Seconds a started long operation may take and still be answered as finished (see above).
SETTLE = 0.005
MAX_SPECTRUM = 1 << 20
MAX_IMAGE = 16384


@dataclass(eq=False)
class Mirror:
    """One published parameter: how it travels and its last known value."""

    name: str
    value: ParameterValue
    dtype: Any
    form: tango.AttrDataFormat
    unit: pint.Unit | None = None
    labels: list[str] | None = None
    announced: bool = False  # kept exact by notifications alone (software state machines)
    current: Any = None
    target: Any = None
    shown_target: Any = None  # the target last set as the attribute's w_value
    stamp: float = 0.0
    limits: tuple[float | None, float | None] = (None, None)
    #: min/max of the attribute's configuration as the bridge last set or took them over
    shown: tuple[float | None, float | None] = (None, None)
    attribute: Any = None  # the Tango attribute of a quantity (its min/max are the limits)
    pending_limits: tuple | None = None  # (sequence, min text, max text) not yet applied
    applied_limits: int = 0  # sequence number of the limits last applied to Tango
    unsubscribers: list = field(default_factory=list)

    def to_tango(self, value: Any) -> Any:
        if self.labels is not None:
            labels = [str(choice) for choice in self.value.values]
            return labels.index(str(value)) if str(value) in labels else 0
        return to_tango(value, self.unit, self.dtype)

    def from_tango(self, raw: Any) -> Any:
        if self.labels is not None:
            return self.value.values[int(raw)]
        if self.unit is not None:
            return np.asarray(raw) * self.unit if isinstance(raw, (list, np.ndarray)) \
                else float(raw) * self.unit
        return raw


class ConcertDevice(Device):
    """Base of every bridged Tango class; :func:`tango_class` derives one per family."""

    green_mode = tango.GreenMode.Synchronous

    concert_class = device_property(
        dtype=str, default_value="",
        doc="module:Class of the concert device to publish (default: the family's dummy)")
    concert_args = device_property(
        dtype=str, default_value="{}",
        doc='JSON object of constructor arguments; quantities as strings, e.g. "10 mm"')
    read_cache_ms = device_property(
        dtype=float, default_value=100.0,
        doc="A read older than this is taken from the device again (0: always)")

    published: ClassVar[Published]
    family: ClassVar[type]
    command_specs: ClassVar[dict[str, CommandSpec]]

    # -- life cycle --------------------------------------------------------------------
    def init_device(self) -> None:
        super().init_device()
        self._loop = loop_thread()
        self._pusher = Pusher(f"push-{self.get_name()}")
        self.concert: Any = None
        self._mirrors: dict[str, Mirror] = {}
        self._prefetched: set[str] = set()  # fetched for the read request being served
        self._state_value: StateValue | None = None
        self._concert_state: str | None = None
        self._operations: set[asyncio.Task] = set()
        self._background: set[asyncio.Task] = set()
        self._helpers: set[asyncio.Task] = set()
        self._event_attributes: dict[str, tango.Attribute] = {}
        self._limits_sequence = 0
        #: writable quantities: a client's min/max become their user limits
        self._limited: list[Mirror] = []
        #: Operations waiting for their start: a future, and whether the device was busy
        #: (MOVING, RUNNING) when the operation began.
        self._started: list[tuple[asyncio.Future, bool]] = []
        #: Per operation: did its last run end within SETTLE? (unknown: wait and see)
        self._settles: dict[str, bool] = {}
        self._fault = ""
        self._init_error = ""
        self._note = ""
        self._state = tango.DevState.INIT
        self._status = "initialising"
        self._conf_proxy: tango.DeviceProxy | None = None
        self._conf_events: list[int] = []
        self._alive = True
        self.set_change_event("State", True, False)
        self.set_change_event("Status", True, False)
        try:
            initial = self._loop.run(self._create(), timeout=60)
        except BaseException as error:
            self._init_error = f"{type(error).__name__}: {error}"
            LOG.error("%s: %s", self.get_name(), self._init_error)
            self._refresh_state()
            return
        for value in self.concert:
            self._publish(value, initial.get(value.name))
        self._loop.run(self._subscribe(), timeout=10)
        self._refresh_state()
        if self._limited:
            threading.Thread(target=self._watch_attribute_config, daemon=True,
                             name=f"conf-{self.get_name()}").start()

    def delete_device(self) -> None:
        self._alive = False
        if self.concert is not None:
            try:
                self._loop.run(self._shutdown(), timeout=GUARD)
            except Exception:
                LOG.exception("%s: shutdown", self.get_name())
        if self._conf_proxy is not None:
            for event_id in self._conf_events:
                try:
                    self._conf_proxy.unsubscribe_event(event_id)
                except tango.DevFailed:
                    pass
        self._pusher.close()
        self.concert = None
        self._mirrors.clear()

    async def _create(self) -> dict[str, tuple[Any, Any, tuple]]:
        implementation = self.concert_class or self.published.default
        cls = check_device_config(self.get_name(), self.family, implementation,
                                  self.concert_args)
        arguments = parse_args(cls, self.concert_args)
        for name in getattr(self.family, "tango_properties", {}):
            value = getattr(self, name, None)  # a family-declared device property
            if value is not None:
                arguments[name] = value
        self.concert = await cls(**arguments)
        initial = {}
        for value in self.concert:
            current = target = None
            limits: tuple = (None, None)
            if value.readable:
                try:
                    current = await value.get()
                    if value.target_readable:
                        target = await value.get_target()
                except Exception as error:
                    LOG.warning("%s: reading %s at start: %s", self.get_name(), value.name,
                                error)
            if isinstance(value, QuantityValue):
                limits = await value.get_limits()
            initial[value.name] = (current, target, limits)
        return initial

    async def _subscribe(self) -> None:
        for mirror in self._mirrors.values():
            mirror.unsubscribers.append(mirror.value.subscribe(self._on_value))
            if isinstance(mirror.value, QuantityValue):
                mirror.unsubscribers.append(mirror.value.subscribe_limits(self._on_limits))
        if self._state_value is not None:
            self._state_value.subscribe(self._on_state)
            self._concert_state = await self._state_value.get()

    async def _shutdown(self) -> None:
        await self._cancel(self._operations | self._helpers)
        for mirror in self._mirrors.values():
            for unsubscribe in mirror.unsubscribers:
                unsubscribe()

    # -- attributes --------------------------------------------------------------------
    def _publish(self, value: ParameterValue, initial: tuple | None) -> None:
        current, target, limits = initial or (None, None, (None, None))
        if value.name == "state" and isinstance(value, StateValue):
            self._state_value = value
            return
        if value.name.lower() in ("state", "status"):
            return
        unit = labels = None
        if isinstance(value, QuantityValue):
            unit = value.unit
            dtype, form, shape = attribute_type(current if current is not None else 0.0)
            dtype = tango.DevDouble if form == tango.AttrDataFormat.SCALAR else dtype
        elif isinstance(value, SelectionValue):
            labels = [str(choice) for choice in value.values]
            dtype, form, shape = tango.DevEnum, tango.AttrDataFormat.SCALAR, ()
        else:
            dtype, form, shape = attribute_type(current)
        mirror = Mirror(value.name, value, dtype, form, unit, labels,
                        announced=isinstance(value, StateValue) and not value.hardware)
        if value.readable and value.writable:
            access = tango.AttrWriteType.READ_WRITE
        elif value.writable:
            access = tango.AttrWriteType.WRITE
        else:
            access = tango.AttrWriteType.READ
        if form == tango.AttrDataFormat.SPECTRUM:
            attr = tango.SpectrumAttr(value.name, dtype, access, max(MAX_SPECTRUM, *shape))
        elif form == tango.AttrDataFormat.IMAGE:
            attr = tango.ImageAttr(value.name, dtype, access, max(MAX_IMAGE, shape[1]),
                                   max(MAX_IMAGE, shape[0]))
        else:
            attr = tango.Attr(value.name, dtype, access)
        properties = tango.UserDefaultAttrProp()
        properties.set_description(value.help or value.name)
        if unit is not None:
            properties.set_unit(value.symbol)
            properties.set_standard_unit(value.symbol)
            properties.set_display_unit(value.symbol)
            low, high = limit_texts(*limits)
            if limits[0] is not None:
                properties.set_min_value(low)
            if limits[1] is not None:
                properties.set_max_value(high)
            mirror.limits = (parse_limit_text(low), parse_limit_text(high))
        if labels is not None:
            properties.set_enum_labels(labels)
        attr.set_default_properties(properties)
        self.add_attribute(attr, self._read_attribute if value.readable else None,
                           self._write_attribute if value.writable else None)
        if unit is not None:
            mirror.attribute = self.get_device_attr().get_attr_by_name(value.name)
            self._own_limits(mirror, limits)
            mirror.shown = mirror.limits  # limits kept from the database differ: taken over
            if value.writable:
                self._limited.append(mirror)
        self.set_change_event(value.name, True, False)
        self.set_archive_event(value.name, True, False)
        if current is not None:
            mirror.current = mirror.to_tango(current)
            mirror.stamp = time.monotonic()
        if target is not None:
            mirror.target = mirror.to_tango(target)
        self._mirrors[value.name] = mirror

    def _own_limits(self, mirror: Mirror, limits: tuple) -> None:
        """Devices of one class share the attribute's default properties (those of the
        first device that added it): set this device's own limits on its attribute, unless
        its database configuration has min/max (those become the user limits, see
        :meth:`_notice_client_limits`)."""
        try:
            database = tango.Util.instance().get_database()
            stored = database.get_device_attribute_property(self.get_name(), [mirror.name])
            stored = {key for key, values in stored.get(mirror.name, {}).items()
                      if list(values)}
        except tango.DevFailed:
            stored = set()
        properties = mirror.attribute.get_properties()
        low, high = limit_texts(*limits)
        if "min_value" not in stored:
            properties.min_value = low
        if "max_value" not in stored:
            properties.max_value = high
        try:
            mirror.attribute.set_properties(properties)
        except tango.DevFailed as error:
            LOG.warning("%s: limits of %s: %s", self.get_name(), mirror.name,
                        error.args[0].desc)

    def _stale(self, mirror: Mirror, now: float) -> bool:
        """Whether a read of ``mirror`` must ask the device first."""
        return mirror.current is None or (
            not mirror.announced and (now - mirror.stamp) * 1000 > self.read_cache_ms)

    def read_attr_hardware(self, attr_list: list[int]) -> None:
        """Tango calls this once per read request, before reading its attributes one by
        one: the stale ones are fetched here, in turn, in one hand-over to the loop (one
        each would cost a thread switch apiece: 16 for a camera's metadata). A failed
        fetch is left to that attribute's own read, which reports it. A request for one
        attribute returns at once: that read fetches for itself (Tango's index list is
        walked by position: its iterator ends with a C++ exception, about 10 us)."""
        if self._prefetched:
            self._prefetched = set()
        if len(attr_list) < 2:
            return
        now = time.monotonic()
        attributes = self.get_device_attr()
        stale = []
        for position in range(len(attr_list)):  # indexed: no iterator, no exception
            mirror = self._mirrors.get(
                attributes.get_attr_by_ind(attr_list[position]).get_name())
            if mirror is not None and mirror.value.readable and self._stale(mirror, now):
                stale.append(mirror)
        if len(stale) > 1:
            try:
                self._prefetched = self._loop.run(self._fetch_each(stale), timeout=GUARD)
            except Exception as error:  # each attribute's own read reports it
                LOG.debug("%s: fetching %d attributes: %s", self.get_name(), len(stale), error)

    async def _fetch_each(self, mirrors: list[Mirror]) -> set[str]:
        """Fetch ``mirrors`` in turn; return the names of those fetched."""
        fetched = set()
        for mirror in mirrors:
            with contextlib.suppress(Exception):
                await self._fetch(mirror)
                fetched.add(mirror.name)
        return fetched

    def _read_attribute(self, attr: tango.Attribute) -> None:
        mirror = self._mirrors[attr.get_name()]
        if mirror.name in self._prefetched:  # fetched for this very request
            self._prefetched.discard(mirror.name)
        elif self._stale(mirror, time.monotonic()):
            try:
                self._loop.run(self._fetch(mirror), timeout=GUARD)
            except BaseException as error:
                throw(error, f"{self.get_name()}/{mirror.name}")
        attr.set_value(mirror.current)
        target = mirror.target
        if target is not None and target is not mirror.shown_target and mirror.value.writable:
            try:  # Tango keeps w_value: only a new target needs to be set
                self.get_device_attr().get_w_attr_by_name(mirror.name).set_write_value(target)
                mirror.shown_target = target
            except (tango.DevFailed, TypeError, ValueError):
                pass

    async def _fetch(self, mirror: Mirror) -> None:
        value = await mirror.value.get()
        mirror.current = mirror.to_tango(value)
        mirror.stamp = time.monotonic()
        if mirror.value.target_readable:
            mirror.target = mirror.to_tango(await mirror.value.get_target())

    def _write_attribute(self, attr: tango.WAttribute) -> None:
        mirror = self._mirrors[attr.get_name()]
        try:
            value = mirror.from_tango(attr.get_write_value())
            self._notice_client_limits()
            self._loop.run(self._write(mirror, value), timeout=GUARD + 0.5)
        except BaseException as error:
            throw(error, f"{self.get_name()}/{mirror.name}")
        finally:
            # Limits this write changed (e.g. a camera's ROI) are in place before the
            # client gets its answer, so its next write is checked against them.
            for other in self._mirrors.values():
                pending = other.pending_limits
                if pending is not None and pending[0] > other.applied_limits:
                    self._apply_limits(other)

    async def _write(self, mirror: Mirror, value: Any) -> None:
        await self._limits_settled()
        value = await mirror.value.validate(value)
        if mirror.value.target_readable or mirror.value.readable:
            mirror.target = mirror.to_tango(value)
        await self._start(asyncio.ensure_future(mirror.value.set(value)), f"write {mirror.name}",
                          wait_for_state=True)
        if self._helpers:  # limit updates the write caused
            await asyncio.wait(set(self._helpers), timeout=0.5)

    # -- notifications (loop thread) -----------------------------------------------------
    def _on_value(self, value: ParameterValue, new: Any) -> None:
        mirror = self._mirrors.get(value.name)
        if mirror is None or not self._alive:
            return
        data = mirror.to_tango(new)
        mirror.current = data
        mirror.stamp = time.monotonic()
        change, archive = self._subscribed(mirror.name)
        if change or archive:  # pushing to nobody would still cost the pusher and the GIL
            changed = time.time()  # the event's stamp: when the value changed, not pushed
            self._pusher.put(lambda: self._push(mirror.name, data, change, archive, changed))

    def _subscribed(self, name: str) -> tuple[bool, bool]:
        """Whether a client subscribed to change / archive events of attribute ``name``
        (a new subscriber reads the current value first, so it misses nothing)."""
        attribute = self._event_attributes.get(name)
        if attribute is None:
            try:
                attribute = self.get_device_attr().get_attr_by_name(name)
            except tango.DevFailed:
                return False, False
            self._event_attributes[name] = attribute
        return attribute.change_event_subscribed(), attribute.archive_event_subscribed()

    def _push(self, name: str, data: Any, change: bool = True, archive: bool = True,
              stamp: float | None = None) -> None:
        """Push ``data`` of attribute ``name``, stamped ``stamp`` (seconds since the epoch;
        None: now; Tango stamps State and Status events itself)."""
        if self._alive:
            extra = () if stamp is None else (stamp, tango.AttrQuality.ATTR_VALID)
            if change:
                self.push_change_event(name, data, *extra)
            if archive:
                self.push_archive_event(name, data, *extra)

    def _on_state(self, value: ParameterValue, new: str) -> None:
        self._concert_state = new
        # A change answers a waiting operation early as its start if it enters MOVING or
        # RUNNING, or if the device was at rest when the operation began (a signal's pulse
        # turns it ON). Leaving a busy state is not a start: an earlier motion ended.
        busy = tango_state(new) in BUSY
        for waiter, was_busy in self._started:
            if not waiter.done() and (busy or not was_busy):
                waiter.set_result(new)
        self._refresh_state()

    def _refresh_state(self) -> None:
        """Recompute Tango State/Status from the concert state and push them if changed."""
        if self._init_error:
            state, status = tango.DevState.FAULT, f"init failed: {self._init_error}"
        else:
            state = tango_state(self._concert_state)
            status = self._state_value.describe() if self._state_value is not None else "on"
            if self._fault:
                if state not in (tango.DevState.FAULT, tango.DevState.ALARM):
                    state = tango.DevState.FAULT
                status = f"{status}\n{self._fault}"
            if self._note:
                status = f"{status}\n{self._note}"
        if (state, status) == (self._state, self._status):
            return
        self._state, self._status = state, status
        self._pusher.put(lambda: self._push_state(state, status))

    def _push_state(self, state: tango.DevState, status: str) -> None:
        if not self._alive:
            return
        self.set_state(state)
        self.set_status(status)
        for name, value in (("State", state), ("Status", status)):
            change, archive = self._subscribed(name)
            self._push(name, value, change, archive)

    def dev_state(self) -> tango.DevState:
        if self._state_value is not None and self._state_value.hardware and self.concert:
            try:
                self._loop.run(self._state_value.get(), timeout=GUARD)
            except Exception as error:
                LOG.warning("%s: reading the state: %s", self.get_name(), error)
        return self._state

    def dev_status(self) -> str:
        self.dev_state()
        return self._status

    def _on_limits(self, value: QuantityValue) -> None:
        self._helper(self._limits_changed(value))

    def _helper(self, coroutine: Any) -> None:
        """Run ``coroutine`` as a helper task: operations wait for it first (its limits
        are in place), shutdown cancels it."""
        task = asyncio.ensure_future(coroutine)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _limits_settled(self) -> None:
        """Wait for the limit updates in progress: an operation is checked against
        limits a client set before it (see :meth:`_notice_client_limits`)."""
        if self._helpers:
            await asyncio.wait(set(self._helpers), timeout=GUARD / 2)

    async def _limits_changed(self, value: QuantityValue) -> None:
        mirror = self._mirrors.get(value.name)
        if mirror is None:
            return
        low, high = limit_texts(*await value.get_limits())
        mirror.limits = (parse_limit_text(low), parse_limit_text(high))
        if mirror.limits == mirror.shown:
            return  # the configuration shows them already (e.g. a client set them)
        self._limits_sequence += 1
        mirror.pending_limits = (self._limits_sequence, low, high)  # one atomic store
        self._pusher.put(lambda: self._holding_monitor(self._apply_limits, mirror))

    def _holding_monitor(self, job: Any, *args: Any) -> None:
        """Run ``job`` on the pusher with the device monitor, like the omniORB thread
        of a call (``set_attribute_config`` takes it too, so the configuration holds
        still meanwhile)."""
        if self._alive:
            with tango.AutoTangoMonitor(self):
                if self._alive:
                    job(*args)

    def _apply_limits(self, mirror: Mirror) -> None:
        """Set the newest pending limits of ``mirror`` as its attribute's min/max, unless a
        client changed them since we looked: that change is taken over first, and its
        outcome pushed. Called with the device monitor held: on the pusher, or on the
        omniORB thread of a write that changed limits."""
        pending = mirror.pending_limits
        if pending is None or pending[0] <= mirror.applied_limits or not self._alive:
            return
        mirror.applied_limits, low, high = pending
        if mirror in self._notice_client_limits():
            return
        properties = mirror.attribute.get_properties()
        properties.min_value = low
        properties.max_value = high
        mirror.attribute.set_properties(properties)
        mirror.shown = (parse_limit_text(low), parse_limit_text(high))

    # -- limits written by clients (Jive's attribute configuration) ---------------------
    def _notice_client_limits(self) -> list[Mirror]:
        """Take over the min/max clients set in the configuration of writable quantities
        since the bridge last looked, as the concert user limits (reverted, with the
        reason in Status, when the limits are locked); return their mirrors.

        Tango has no hook for ``set_attribute_config``. So the bridge looks here at the
        start of every command and write, and when its own configuration events come
        (from a client, e.g. Jive, that does nothing more). The caller holds the device
        monitor. The take-overs run on the loop before the operation (see
        :meth:`_limits_settled`). A look costs about 0.6 us per quantity (measured).
        """
        changed = []
        for mirror in self._limited:
            attribute = mirror.attribute
            config = (_number(attribute.get_min_value()) if attribute.is_min_value() else None,
                      _number(attribute.get_max_value()) if attribute.is_max_value() else None)
            if config != mirror.shown:
                mirror.shown = config
                changed.append(mirror)
                self._loop.call_soon(self._helper, self._take_client_limits(mirror, *config))
        return changed

    def _watch_attribute_config(self) -> None:
        """Subscribe to our own ATTR_CONF_EVENTs: a client that only changes min/max (as
        Jive does) has it taken over without waiting for its next call."""
        with tango.EnsureOmniThread():
            deadline = time.monotonic() + 60
            util = tango.Util.instance()
            while self._alive and time.monotonic() < deadline:
                # A subscription made while the server is still starting leaves its ZMQ
                # event endpoint empty, and every later subscription fails (API_ZmqFailed).
                if util.is_svr_starting():
                    time.sleep(0.05)
                    continue
                try:
                    proxy = tango.DeviceProxy(self.get_name())
                    proxy.ping()
                    break
                except tango.DevFailed:
                    time.sleep(0.2)
            else:
                return
            self._conf_proxy = proxy
            for mirror in self._limited:
                try:
                    self._conf_events.append(proxy.subscribe_event(
                        mirror.name, tango.EventType.ATTR_CONF_EVENT, self._on_conf_event))
                except tango.DevFailed as error:
                    LOG.warning("%s: no configuration events for %s: %s", self.get_name(),
                                mirror.name, error)

    def _on_conf_event(self, event: tango.AttrConfEventData) -> None:
        if not event.err and self._alive:
            self._pusher.put(lambda: self._holding_monitor(self._notice_client_limits))

    async def _take_client_limits(self, mirror: Mirror, lower: float | None,
                                  upper: float | None) -> None:
        value = mirror.value
        assert isinstance(value, QuantityValue)
        new_lower = None if lower is None else lower * mirror.unit
        new_upper = None if upper is None else upper * mirror.unit
        try:
            current_upper = await value.get_upper()
            if new_lower is not None and current_upper is not None and new_lower > current_upper:
                await value.set_upper(new_upper)
                await value.set_lower(new_lower)
            else:
                await value.set_lower(new_lower)
                await value.set_upper(new_upper)
            self._note = ""
        except Exception as error:
            self._note = (f"{type(error).__name__}: client limits [{lower}, {upper}] for "
                          f"{mirror.name} refused: {error}")
            await self._limits_changed(value)  # put the device's limits back
        self._refresh_state()

    # -- operations --------------------------------------------------------------------
    async def _start(self, task: asyncio.Future, what: str, wait_for_state: bool,
                     at_most: float = GUARD) -> Any:
        """Wait until ``task`` is done, or (long operations) has changed the state and
        ran ``SETTLE`` seconds more, for ``at_most`` seconds.

        Errors raised before we return reach the caller; errors after that drive the
        device to FAULT with the message in Status.
        """
        self._operations.add(task)
        task.add_done_callback(self._operation_done)
        if self._fault:
            self._fault = ""
            self._refresh_state()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if wait_for_state:
            entry = (waiter, tango_state(self._concert_state) in BUSY)
            self._started.append(entry)
            task.add_done_callback(self._settle_learner(what, loop.time()))
        try:
            await asyncio.wait({task, waiter}, timeout=at_most,
                               return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and wait_for_state and SETTLE > 0 \
                    and self._settles.get(what, True):
                await asyncio.wait({task}, timeout=SETTLE)
        finally:
            if wait_for_state:
                self._started.remove(entry)
            waiter.cancel()
        if task.done():
            return task.result()
        task.concert_what = what  # type: ignore[attr-defined]
        self._background.add(task)
        return None

    def _settle_learner(self, what: str, began: float) -> Any:
        """A done-callback noting whether operation ``what`` ended within SETTLE."""
        def learn(task: asyncio.Future) -> None:
            self._settles[what] = asyncio.get_running_loop().time() - began <= SETTLE
        return learn

    def _operation_done(self, task: asyncio.Future) -> None:
        self._operations.discard(task)
        background = task in self._background
        self._background.discard(task)
        if not background or task.cancelled():
            return
        error = task.exception()
        if error is not None:
            what = getattr(task, "concert_what", "operation")
            self._fault = f"{what} failed: {type(error).__name__}: {error}"
            LOG.error("%s: %s", self.get_name(), self._fault)
            self._refresh_state()

    async def _cancel(self, tasks: set) -> None:
        tasks = {task for task in tasks if not task.done()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=GUARD)

    def _execute(self, spec: CommandSpec, argin: Any) -> Any:
        if self.concert is None:
            tango.Except.throw_exception(
                "StateError", f"device not initialised: {self._init_error}", spec.name)
        try:
            self._notice_client_limits()
            return self._loop.run(self._command(spec, argin), timeout=GUARD + 0.4)
        except BaseException as error:
            throw(error, f"{self.get_name()}/{spec.name}")

    async def _command(self, spec: CommandSpec, argin: Any) -> Any:
        arguments = decode_arguments(spec, argin, self.family)
        device = self.concert
        if spec.method == "stop":
            await self._cancel(self._operations)
            stop = getattr(device, "stop", None)
            if stop is not None and self._concert_state is not None \
                    and tango_state(self._concert_state) in BUSY:
                await self._start(asyncio.ensure_future(stop()), "stop", wait_for_state=False)
            return None
        if spec.method == "emergency_stop":
            await self._cancel(self._operations)
            await device.emergency_stop()
            return None
        await self._limits_settled()  # not for a stop: it must not wait
        method = getattr(device, spec.method)
        if spec.method in ("lock", "unlock"):
            method(*arguments)
            return None
        outcome = method(*arguments)
        task = outcome if isinstance(outcome, asyncio.Future) else asyncio.ensure_future(outcome)
        # A long operation of a device without State cannot show that it started: unless
        # its result is wanted it is answered after SETTLE (a call holds the device's
        # monitor, and with it the device's events, while it waits).
        at_most = GUARD
        if spec.background and self._state_value is None and spec.result is Kind.VOID:
            at_most = SETTLE
        result = await self._start(task, spec.name, wait_for_state=spec.background,
                                   at_most=at_most)
        if not task.done() and spec.result is not Kind.VOID:
            raise TimeoutError(f"{spec.name} is still running after {at_most:g} s")
        unit = spec.result_unit.unit(self.family) if spec.result_unit is not None else None
        return encode_result(spec.result, result, unit)


def _number(value: Any) -> float | None:
    """A min/max read from Tango as a float (None for NaN, which means none)."""
    value = float(value)
    return None if math.isnan(value) else value


def decode_arguments(spec: CommandSpec, argin: Any, owner: type) -> tuple:
    """Turn a command's argin into the method's arguments (units attached)."""
    if not spec.arguments and spec.rest is None:
        return ()
    raw = list(argin) if spec.packed else [argin]
    required = sum(1 for argument in spec.arguments
                   if argument.default is inspect.Parameter.empty)
    if len(raw) < required or (spec.rest is None and len(raw) > len(spec.arguments)):
        names = ", ".join(argument.name for argument in spec.arguments)
        if spec.rest is not None:
            names += f", {spec.rest.name}..."
        raise ValueError(f"{spec.name} takes [{names}], got {len(raw)} value(s)")
    extra = max(0, len(raw) - len(spec.arguments))
    values = []
    for argument, item in zip([*spec.arguments, *[spec.rest] * extra], raw, strict=False):
        kind = argument.kind
        if kind is Kind.QUANTITY:
            values.append(float(item) * argument.unit.unit(owner))
        elif kind is Kind.BOOL:
            values.append(item if isinstance(item, bool) else str(item).lower() in ("1", "true"))
        elif kind is Kind.INT:
            values.append(int(float(item)))
        elif kind is Kind.FLOAT:
            values.append(float(item))
        elif kind is Kind.STR:
            values.append(str(item))
        else:
            values.append(list(item))
    return tuple(values)


def _argument_doc(spec: CommandSpec, owner: type) -> str:
    parts = []
    for argument in spec.arguments:
        if argument.unit is not None:
            parts.append(f"{argument.name} in {argument.unit.unit(owner):~}")
        else:
            parts.append(f"{argument.name} ({argument.kind.value})")
    if spec.rest is not None:
        parts.append(f"{spec.rest.name}... ({spec.rest.kind.value})")
    return ("[" + ", ".join(parts) + "]") if spec.packed else (parts[0] if parts else "")


def _argin_type(spec: CommandSpec) -> Any:
    if not spec.arguments and spec.rest is None:
        return None
    if not spec.packed:
        return COMMAND_TYPES[spec.arguments[0].kind]
    kinds = {argument.kind for argument in spec.arguments}
    if spec.rest is not None:
        kinds.add(spec.rest.kind)
    if Kind.STR not in kinds:
        return tango.DevVarDoubleArray
    return tango.DevVarStringArray


def _make_command(spec: CommandSpec, owner: type) -> Any:
    dtype_in = _argin_type(spec)
    # No annotations: PyTango 10 would read them as the command's types.
    if dtype_in is None:
        def handler(self):
            return self._execute(spec, None)
    else:
        def handler(self, argin):
            return self._execute(spec, argin)
    handler.__name__ = spec.name
    handler.__qualname__ = spec.name
    handler.__doc__ = spec.doc
    out = None if spec.result is Kind.VOID else COMMAND_TYPES[spec.result]
    doc_out = ""
    if spec.result_unit is not None:
        doc_out = f"in {spec.result_unit.unit(owner):~}"
    kwargs: dict[str, Any] = {"doc_in": _argument_doc(spec, owner) or "none",
                              "doc_out": doc_out or "none"}
    if dtype_in is not None:
        kwargs["dtype_in"] = dtype_in
    if out is not None:
        kwargs["dtype_out"] = out
    return command(f=handler, **kwargs)


GENERIC_STOP = CommandSpec(method="stop", name="Stop", arguments=(), result=Kind.VOID,
                           result_unit=None, background=False,
                           doc="Cancel the running operation (its cleanup runs).")


def tango_class(published: Published) -> type:
    """Build the Tango device class publishing ``published``'s concert family."""
    family = published.family_class()
    specs = {spec.name: spec for spec in commands_of(family)}
    specs.setdefault("Stop", GENERIC_STOP)
    namespace: dict[str, Any] = {
        "published": published,
        "family": family,
        "command_specs": specs,
        "__doc__": (family.__doc__ or published.tango_class).strip().splitlines()[0],
        "__module__": __name__,
    }
    for name, spec in specs.items():
        namespace[name] = _make_command(spec, family)
    # ``tango_properties = {"root": str}`` on the family: device properties, passed to the
    # constructor as keyword arguments (they override concert_args).
    for name, dtype in getattr(family, "tango_properties", {}).items():
        namespace[name] = device_property(
            dtype=dtype, doc=f"{name}: constructor argument of the concert device")
    return types.new_class(published.tango_class, (ConcertDevice,),
                           exec_body=lambda ns: ns.update(namespace))


__all__ = ["GUARD", "ConcertDevice", "decode_arguments", "tango_class"]
