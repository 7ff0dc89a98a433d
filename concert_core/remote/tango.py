"""Concert devices whose parameters and methods live in a Tango device.

``motor = await TangoDevice("concert/motor/flat")`` returns an instance of the concert
family the Tango class names (``LinearMotor`` ...), built for this proxy: parameters read
and write the attributes (units from the attribute configuration, soft limits from
``min_value``/``max_value``), public methods call the commands, and long operations
(writes of moving parameters, ``move``, ``home``, ...) return when the device has left
MOVING/RUNNING, raising ``HardLimitError``/``StateError`` if it ended in ALARM/FAULT.
Long methods start at once and return their task, as local ``@background`` methods do;
the task's ``started`` future tells the concert state the device answered in (a camera's
``grab_send``: ``recording``), so that a caller need not poll for it.
Refusals come back as the concert error whose class name the server gave as reason.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import pkgutil
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pint
import tango

import concert_core.devices
from concert_core import errors
from concert_core.arguments import argument_units
from concert_core.devices.base import Device
from concert_core.naming import snake_case
from concert_core.parameter import Parameter, Quantity, QuantityValue, Selection
from concert_core.quantities import parse_unit, q
from concert_core.remote.calls import RemoteError, call, concert_error
from concert_core.state import ANY, State

LOG = logging.getLogger(__name__)

BUSY = (tango.DevState.MOVING, tango.DevState.RUNNING)
#: The attributes a long operation reads back to know where it stands.
STATE_ATTRIBUTES = ["State", "Status"]
NOT_SPECIFIED = "Not specified"


def find_family(tango_class: str) -> type:
    """The concert family class named ``tango_class`` (``Device`` if there is none)."""
    for module_info in pkgutil.iter_modules(concert_core.devices.__path__):
        if not module_info.ispkg:
            continue
        try:
            module = importlib.import_module(f"concert_core.devices.{module_info.name}.base")
        except ImportError:
            continue
        family = getattr(module, tango_class, None)
        if inspect.isclass(family) and issubclass(family, Device):
            return family
    return Device


def concert_state_of(status: str) -> str:
    """The concert state name a bridged device's Status starts with."""
    head = status.strip().splitlines()[0] if status.strip() else ""
    return head.split(":", 1)[0].strip()


class RemoteDevice(Device):
    """Base of remote concert devices; see :func:`TangoDevice`."""

    async def __ainit__(self, proxy: Any, config: dict[str, Any]) -> None:
        await super().__ainit__()
        self.proxy = proxy
        self.tango_name: str = proxy.dev_name()
        self.attribute_config = config  # the attribute configurations read at connection
        self._state_changed = asyncio.Event()
        self._waiters = 0  # coroutines in wait_idle: only they need State events
        self._event_ids: list[int] = []
        loop = asyncio.get_running_loop()

        def on_state(event: Any) -> None:
            if self._waiters and not loop.is_closed():  # else no loop wake-up at all
                loop.call_soon_threadsafe(self._state_changed.set)

        try:
            self._event_ids.append(await call(
                proxy.subscribe_event, "State", tango.EventType.CHANGE_EVENT, on_state))
        except errors.ConcertError as error:  # the device works without events, by polling
            LOG.info("%s: no State events (%s); polling", self.tango_name, error)

    # -- state -------------------------------------------------------------------------
    async def _remote_state(self) -> tuple[tango.DevState, str]:
        return _state_of(await call(self.proxy.read_attributes, STATE_ATTRIBUTES))

    async def wait_idle(self, timeout: float | None = None,
                        targets: frozenset[str] | None = None,
                        known: tuple[tango.DevState, str] | None = None,
                        first: asyncio.Future | None = None) -> None:
        """Wait until the device leaves MOVING/RUNNING (or reaches one of the concert states
        ``targets``, e.g. ``recording`` after ``start_recording``); raise if it ended in
        ALARM/FAULT. ``known`` is a (State, Status) just read by the caller, who cleared
        the state-change flag before reading it. ``first`` gets the concert state of the
        first (State, Status) seen."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._waiters += 1
        try:
            while True:
                if known is None:
                    self._state_changed.clear()
                    state, status = await self._remote_state()
                else:
                    (state, status), known = known, None
                if first is not None and not first.done():
                    first.set_result(concert_state_of(status))
                if state not in BUSY or (targets and concert_state_of(status) in targets):
                    break
                wait = 0.5 if deadline is None else min(0.5, deadline - loop.time())
                if wait <= 0:
                    raise errors.WaitError(f"{self.tango_name} still {state} after {timeout} s")
                try:
                    await asyncio.wait_for(self._state_changed.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            self._waiters -= 1
        if state == tango.DevState.ALARM:
            raise errors.HardLimitError(status)
        if state == tango.DevState.FAULT:
            raise errors.StateError("error", status)

    async def _run_long(self, start: Callable[[], tuple[Any, tuple[tango.DevState, str]]],
                        targets: frozenset[str] | None = None,
                        started: asyncio.Future | None = None) -> Any:
        """Issue the blocking call ``start()`` that starts an operation and reads (State,
        Status) back, returning both, and wait for the operation's end (Stop if
        cancelled); return the call's result. The State events of the operation are
        awaited from before the call, so none is lost. ``started`` gets the concert state
        read back (the operation has begun then, or ended)."""
        self._waiters += 1
        try:
            self._state_changed.clear()
            result, known = await call(start)
            await self._until_idle(targets, known, started)
        finally:
            self._waiters -= 1
        return result

    def _with_state(self, result: Any) -> tuple[Any, tuple[tango.DevState, str]]:
        """``result`` and the (State, Status) read now (blocking: a call thread's part)."""
        return result, _state_of(self.proxy.read_attributes(STATE_ATTRIBUTES))

    async def _write_long(self, items: list[tuple[str, Any]]) -> None:
        """Write the attributes of ``items`` (name, Tango value), in order, and wait for the
        operations they started: one round trip writes and reads State and Status back
        (Tango's write_read_attributes)."""
        def start() -> tuple[None, tuple[tango.DevState, str]]:
            return None, _state_of(self.proxy.write_read_attributes(items, STATE_ATTRIBUTES))

        await self._run_long(start)

    async def _until_idle(self, targets: frozenset[str] | None,
                          known: tuple[tango.DevState, str] | None = None,
                          started: asyncio.Future | None = None) -> None:
        try:
            await self.wait_idle(targets=targets, known=known, first=started)
        except asyncio.CancelledError:
            await asyncio.shield(call(self.proxy.command_inout, "Stop"))
            raise

    async def read_values(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """Read the parameters ``names`` (default: every readable one): those published as
        attributes, and ``state`` (from Status), in one ``read_attributes`` round trip, the
        others one by one."""
        wanted = sorted(self._readable_names() if names is None else names)
        parameters = self._concert_parameters()
        attributes = {name: parameters[name] for name in wanted
                      if getattr(parameters.get(name), "tango_attribute", None)}
        with_state = "state" in wanted and isinstance(parameters.get("state"), State)
        values: dict[str, Any] = {}
        if attributes or with_state:
            read = [parameter.tango_attribute for parameter in attributes.values()]
            try:
                replies = await call(self.proxy.read_attributes,
                                     [*read, "Status"] if with_state else read)
            except Exception as error:
                replies = [error] * (len(read) + with_state)
            for (name, parameter), reply in zip(attributes.items(), replies, strict=False):
                values[name] = _decoded(reply, parameter.tango_decode)  # type: ignore[attr-defined]
            if with_state:
                values["state"] = _decoded(replies[-1], concert_state_of)  # from Status
        rest = [name for name in wanted if name not in values]
        values.update(await super().read_values(rest) if rest else {})
        return {name: values[name] for name in wanted}

    async def write_values(self, values: Mapping[str, Any]) -> None:
        """Write several parameters in one ``write_read_attributes`` round trip (in the
        order given), after checking each here as :meth:`ParameterValue.set` does; the
        server checks the limits and stops at the first value it refuses."""
        parameters = self._concert_parameters()
        if not all(hasattr(parameters.get(name), "tango_encode") for name in values):
            await super().write_values(values)  # some are not attributes
            return
        items = []
        for name, value in values.items():
            checked = await self[name].validate(value)
            items.append((parameters[name].tango_attribute, parameters[name].tango_encode(checked)))
        await self._write_long(items)
        for name, value in values.items():
            if self[name].has_observers:
                await self[name]._announce_after_set(value)

    async def _emergency_stop(self) -> None:
        await call(self.proxy.command_inout, "EmergencyStop")

    async def disconnect(self) -> None:
        """Unsubscribe the events of this proxy (``close`` may be a device command)."""
        for event_id in self._event_ids:
            try:
                await call(self.proxy.unsubscribe_event, event_id)
            except errors.ConcertError:
                pass
        self._event_ids.clear()


class _ServerLimitedValue(QuantityValue):
    """A remote quantity: the server checks the soft limits of every write (Tango's
    min/max, then concert's), so a write here converts units only and spends no round
    trips on reading the limits first."""

    async def _to_device(self, value: Any) -> pint.Quantity:
        return self._parameter.convert(value)


class RemoteQuantity(Quantity):
    """A :class:`Quantity` whose limits the server enforces (see :class:`_ServerLimitedValue`)."""

    def make_value(self, instance: Any) -> QuantityValue:
        return _ServerLimitedValue(instance, self)


def _state_of(replies: Any) -> tuple[tango.DevState, str]:
    """(State, Status) from the replies of a read of :data:`STATE_ATTRIBUTES`."""
    state, status = replies
    return state.value, status.value


def _decoded(reply: Any, decode: Callable[[Any], Any]) -> Any:
    """The value ``decode`` makes of one ``read_attributes`` reply (or its error)."""
    if isinstance(reply, Exception):
        return reply
    if reply.has_failed:
        return concert_error(tango.DevFailed(*reply.get_err_stack()))
    try:
        return decode(reply.value)
    except Exception as error:
        return error


def _attribute_parameter(name: str, config: Any, family_parameter: Parameter | None) -> Parameter:
    """A Parameter reading/writing attribute ``name`` of the proxy."""
    writable = config.writable != tango.AttrWriteType.READ

    async def fget(device: RemoteDevice) -> Any:
        reply = await call(device.proxy.read_attribute, name)
        return decode(reply.value)

    async def fget_target(device: RemoteDevice) -> Any:
        reply = await call(device.proxy.read_attribute, name)
        return decode(reply.w_value)

    async def fset(device: RemoteDevice, value: Any) -> None:
        try:
            await device._write_long([(name, encode(value))])
        except errors.SoftLimitError as error:  # Tango's text does not name the value
            shown = f"{value:~}" if isinstance(value, pint.Quantity) else repr(value)
            raise errors.SoftLimitError(
                f"{name} = {shown} refused by {device.tango_name}: {error}") from None

    unit = parse_unit(config.unit) if config.data_type in _NUMERIC and (
        config.unit and config.unit not in ("No unit", "")) else None
    if family_parameter is not None and isinstance(family_parameter, Quantity):
        unit = family_parameter.unit if unit is None else unit
    labels = list(config.enum_labels) if config.data_type == tango.DevEnum else None

    if labels is not None:
        choices = list(family_parameter.values) if isinstance(family_parameter, Selection) \
            else labels

        def decode(value: Any) -> Any:
            return choices[int(value)]

        def encode(value: Any) -> Any:
            return [str(choice) for choice in choices].index(str(value))

        return _reads_attribute(Selection(choices, fget=fget, fset=fset if writable else None,
                                          help=config.description), name, decode,
                                encode if writable else None)

    if unit is not None:
        def decode(value: Any) -> Any:  # the constructor: 4 us, where value * unit takes 15
            return q.Quantity(np.asarray(value) if isinstance(value, (list, tuple)) else value,
                              unit)

        def encode(value: Any) -> Any:
            magnitude = value.to(unit).magnitude
            return magnitude.tolist() if isinstance(magnitude, np.ndarray) else magnitude

        async def user_lower(device: RemoteDevice) -> Any:
            return await _limit(device, name, "min_value", unit)

        async def user_upper(device: RemoteDevice) -> Any:
            return await _limit(device, name, "max_value", unit)

        async def set_user_lower(device: RemoteDevice, value: Any) -> None:
            await _set_limit(device, name, "min_value", value, unit)

        async def set_user_upper(device: RemoteDevice, value: Any) -> None:
            await _set_limit(device, name, "max_value", value, unit)

        return _reads_attribute(RemoteQuantity(
            unit, fget=fget, fset=fset if writable else None,
            fget_target=fget_target if writable else None,
            user_lower_getter=user_lower, user_upper_getter=user_upper,
            user_lower_setter=set_user_lower, user_upper_setter=set_user_upper,
            help=config.description), name, decode, encode if writable else None)

    def decode(value: Any) -> Any:
        return value

    def encode(value: Any) -> Any:
        return value

    return _reads_attribute(Parameter(fget=fget, fset=fset if writable else None,
                                      help=config.description), name, decode,
                            encode if writable else None)


def _reads_attribute(parameter: Parameter, attribute: str, decode: Any,
                     encode: Any = None) -> Parameter:
    """Mark ``parameter`` as reading ``attribute`` (``decode`` turns its value into the
    parameter's, ``encode`` a value to write into the attribute's), so that
    :meth:`RemoteDevice.read_values` and :meth:`RemoteDevice.write_values` can read and
    write many in one call."""
    parameter.tango_attribute = attribute  # type: ignore[attr-defined]
    parameter.tango_decode = decode  # type: ignore[attr-defined]
    if encode is not None:
        parameter.tango_encode = encode  # type: ignore[attr-defined]
    return parameter


_NUMERIC = {tango.DevDouble, tango.DevFloat, tango.DevLong64, tango.DevLong, tango.DevShort,
            tango.DevUShort, tango.DevULong, tango.DevULong64, tango.DevUChar}


async def _limit(device: RemoteDevice, name: str, which: str, unit: pint.Unit) -> Any:
    config = await call(device.proxy.get_attribute_config, name)
    text = getattr(config, which)
    if not text or text == NOT_SPECIFIED:
        return None
    return float(text) * unit


async def _set_limit(device: RemoteDevice, name: str, which: str, value: Any,
                     unit: pint.Unit) -> None:
    config = await call(device.proxy.get_attribute_config, name)
    setattr(config, which, NOT_SPECIFIED if value is None else repr(float(value.to(unit)
                                                                         .magnitude)))
    await call(device.proxy.set_attribute_config, config)


def _remote_method(command: str, method: Any, family: type, long: bool) -> Any:
    units = argument_units(method) if method is not None else {}
    # The concert states the method ends in (its @check): an operation that ends in a busy
    # state (start_recording -> recording) is complete once that state is reached.
    checked = getattr(method, "__concert_check__", None)
    targets = frozenset(checked.targets) if checked is not None \
        and ANY not in checked.targets else None
    names = [name for name in inspect.signature(method).parameters][1:] if method else []

    async def operate(device: RemoteDevice, args: tuple, kwargs: dict[str, Any],
                      started: asyncio.Future | None = None) -> Any:
        if method is None:
            values = list(args)
        else:
            bound = dict(zip(names, args, strict=False)) | kwargs
            values = []
            for name in names:
                if name not in bound:
                    continue
                value = bound[name]
                if name in units:
                    unit = units[name].unit(device)
                    try:
                        value = float(value.to(unit).magnitude)
                    except (AttributeError, pint.DimensionalityError):  # as a local device
                        raise errors.UnitError(
                            f"{name}: {value!r} cannot be expressed in {unit:~}") from None
                values.append(value)
        argin = values[0] if len(values) == 1 else (values or None)
        def start() -> Any:
            return device.proxy.command_inout(command, argin) if argin is not None \
                else device.proxy.command_inout(command)

        if started is not None:  # the State read follows the answer in the same thread
            return await device._run_long(lambda: device._with_state(start()), targets,
                                          started)
        return await call(start)

    if long:
        def invoke(device: RemoteDevice, *args: Any, **kwargs: Any) -> asyncio.Task:
            # As a local @background method: the call starts the operation and returns
            # its task. The task's ``started`` future gives the concert state read once
            # the device has answered the command (the operation has begun, or ended).
            started = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(operate(device, args, kwargs, started))
            task.started = started  # type: ignore[attr-defined]
            return task
    else:
        async def invoke(device: RemoteDevice, *args: Any, **kwargs: Any) -> Any:
            return await operate(device, args, kwargs)

    invoke.__name__ = method.__name__ if method is not None else command
    invoke.__doc__ = inspect.getdoc(method) if method is not None else f"Tango command {command}"
    return invoke


def _class_for(family: type, attributes: dict[str, Any], commands: list[str]) -> type:
    namespace: dict[str, Any] = {"__module__": __name__}
    for name, parameter in family._class_parameters.items():
        if isinstance(parameter, State):
            continue
        if name in attributes:
            namespace[name] = _attribute_parameter(name, attributes[name], parameter)
    for command in commands:
        method_name = snake_case(command)
        if command in ("State", "Status", "Init", "Lock", "Unlock", "Stash", "Restore",
                       "EmergencyStop"):
            continue
        method = getattr(family, method_name, None)
        long = bool(getattr(method, "__concert_background__", False))
        namespace[method_name] = _remote_method(command, method, family, long)

    async def _get_state(device: RemoteDevice) -> str:
        _, status = await device._remote_state()
        return concert_state_of(status)

    namespace["_get_state"] = _get_state
    if "state" not in family._class_parameters:
        namespace["state"] = State(help="state of the remote device")
    return types.new_class(f"Remote{family.__name__}", (RemoteDevice, family),
                           exec_body=lambda ns: ns.update(namespace))


async def TangoDevice(name: str, timeout: float = 3.0) -> RemoteDevice:  # noqa: N802
    """Connect to the Tango device ``name`` and return it as a concert device."""
    proxy = await call(tango.DeviceProxy, name)  # synchronous: see concert_core.remote.calls
    proxy.set_timeout_millis(int(timeout * 1000))

    def describe() -> tuple:
        names = [attr for attr in proxy.get_attribute_list() if attr not in ("State", "Status")]
        return (proxy.info(), proxy.get_attribute_config_ex(names) if names else [],
                [cmd.cmd_name for cmd in proxy.command_list_query()])

    info, configs, commands = await call(describe)
    attributes = {config.name: config for config in configs}
    family = find_family(info.dev_class)
    cls = _class_for(family, attributes, commands)
    device = await cls(proxy, attributes)
    extra = {name: _attribute_parameter(name, config, None)
             for name, config in attributes.items() if name not in cls._class_parameters}
    if extra:
        device.install_parameters(extra)
    return device


__all__ = ["STATE_ATTRIBUTES", "RemoteDevice", "RemoteError", "TangoDevice", "concert_error",
           "concert_state_of", "find_family"]
