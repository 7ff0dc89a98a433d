"""Parameters: named, typed, observable values of a :class:`Parameterizable`.

A :class:`Parameter` is declared on a class; each instance gets a :class:`ParameterValue`
(reached with ``obj['name']``) that reads and writes through the instance's accessors
(``fget``/``fset``/``fget_target`` or the implicit ``_get_<name>``, ``_set_<name>``,
``_get_target_<name>``). :class:`Quantity` adds a unit and soft limits,
:class:`Selection` a list of allowed values.

Observers subscribed with :meth:`ParameterValue.subscribe` are called on every change:
after each set, when a read returns a new value, and when the device announces a value
itself with :meth:`ParameterValue.notify`. Nothing polls.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import numbers
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import numpy as np
import pint

from concert_core.errors import (
    AccessorNotImplementedError,
    LockError,
    ReadAccessError,
    SelectionError,
    SoftLimitError,
    UnitError,
    WaitError,
    WriteAccessError,
)
from concert_core.quantities import q, unit_symbol

LOG = logging.getLogger(__name__)

Observer = Callable[["ParameterValue", Any], None]


def blocking(coroutine: Awaitable, what: str) -> Any:
    """Run ``coroutine`` to completion from synchronous code (``obj.param`` access)."""
    from concert_core.coroutines.base import run_in_loop

    return run_in_loop(
        coroutine,
        error_msg_if_running=f"{what} blocks and cannot be used inside a running event loop; "
        "use the coroutine API instead (await obj.get_<name>() / obj.set_<name>(value))",
    )


def values_differ(old: Any, new: Any) -> bool:
    """Return True if ``new`` is a different value than ``old`` (arrays compared elementwise)."""
    if old is new:
        return False
    try:
        if isinstance(old, np.ndarray) or isinstance(new, np.ndarray):
            return not np.array_equal(np.asarray(old), np.asarray(new))
        if (isinstance(new, pint.Quantity) and isinstance(old, pint.Quantity)
                and (np.ndim(new.magnitude) or np.ndim(old.magnitude))):
            return not (
                old.dimensionality == new.dimensionality
                and np.array_equal(old.magnitude, new.to(old.units).magnitude)
            )
        return bool(old != new)
    except (ValueError, TypeError, pint.DimensionalityError):
        return True


def _as_seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, pint.Quantity):
        return float(value.to(q.s).magnitude)
    return float(value)



class WriteLock:
    """A lock flag that, once locked ``permanent``, refuses to be unlocked."""

    __slots__ = ("locked", "permanent", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.locked = False
        self.permanent = False

    def lock(self, permanent: bool = False) -> None:
        self.locked = True
        self.permanent = self.permanent or permanent

    def unlock(self) -> None:
        if self.permanent:
            raise LockError(f"{self.what} is locked permanently")
        self.locked = False


class Observers(list):
    """Callbacks of one kind of change; a failing callback is logged, never propagated."""

    def add(self, observer: Callable[..., None]) -> Callable[[], None]:
        """Subscribe ``observer``; return the function that unsubscribes it."""
        self.append(observer)

        def unsubscribe() -> None:
            if observer in self:
                self.remove(observer)

        return unsubscribe

    def call(self, *args: Any) -> None:
        for observer in tuple(self):
            try:
                observer(*args)
            except Exception:
                LOG.exception("observer of %r failed", args[0])

class Parameter:
    """A named value of a :class:`Parameterizable` with a getter, a setter and a help text.

    ``fget``, ``fset`` and ``fget_target`` are functions of the owning class (sync or
    ``async``); where one is not given the implicit ``_get_<name>``/``_set_<name>``/
    ``_get_target_<name>`` of the instance's class is used, and a missing one makes the
    parameter unreadable or read-only. ``check`` is a :class:`~concert_core.state.check`
    applied to the setter. ``data`` is kept for the accessors' use.
    """

    def __init__(
        self,
        fget: Callable | None = None,
        fset: Callable | None = None,
        fget_target: Callable | None = None,
        data: Any = None,
        check: Callable | None = None,
        help: str | None = None,
    ) -> None:
        self.name: str = ""
        self.fget = fget
        self.fset = fset
        self.fget_target = fget_target
        self.data = data
        self.check = check
        self.help = help or ""
        self._accessors: dict[type, tuple] = {}

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return blocking(instance[self.name].get(), f"reading '{self.name}'")

    def __set__(self, instance: Any, value: Any) -> None:
        blocking(instance[self.name].set(value), f"writing '{self.name}'")

    def accessors(self, cls: type) -> tuple:
        """Return ``(getter, setter, target_getter)`` as used for instances of ``cls``."""
        try:
            return self._accessors[cls]
        except KeyError:
            pass
        getter = self.fget or getattr(cls, f"_get_{self.name}", None)
        setter = self.fset or getattr(cls, f"_set_{self.name}", None)
        target = self.fget_target or getattr(cls, f"_get_target_{self.name}", None)
        if setter is not None and self.check is not None:
            setter = self.check(setter)
        found = (getter, setter, target)
        self._accessors[cls] = found
        return found

    def make_value(self, instance: Any) -> ParameterValue:
        """Create the per-instance value object."""
        return ParameterValue(instance, self)


async def _call(accessor: Callable, instance: Any, *args: Any) -> Any:
    result = accessor(instance, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


class ParameterValue:
    """The value of a :class:`Parameter` on one instance: get, set, lock, stash, observe."""

    def __init__(self, instance: Any, parameter: Parameter) -> None:
        self._instance = instance
        self._parameter = parameter
        self._fget, self._fset, self._fget_target = parameter.accessors(type(instance))
        self._fget_is_async = inspect.iscoroutinefunction(self._fget)
        self._write_lock = WriteLock(f"parameter {parameter.name!r}")
        self._stash: list[Any] = []
        self._observers = Observers()
        self._lock: asyncio.Lock | None = None
        self.last_value: Any = None

    # -- description -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._parameter.name

    @property
    def parameter(self) -> Parameter:
        return self._parameter

    @property
    def help(self) -> str:
        return self._parameter.help

    @property
    def data(self) -> Any:
        return self._parameter.data

    @property
    def readable(self) -> bool:
        """True if the parameter can be read."""
        return self._fget is not None

    @property
    def writable(self) -> bool:
        """True if the parameter can be written."""
        return self._fset is not None

    @property
    def target_readable(self) -> bool:
        """True if the parameter has a target (set point) getter."""
        return self._fget_target is not None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} of {type(self._instance).__name__}>"

    # -- reading -----------------------------------------------------------------------
    async def get(self, wait_on: Awaitable | None = None) -> Any:
        """Read the current value; first await ``wait_on`` if given."""
        if wait_on is not None:
            await wait_on
        # The hot path: inlined rather than delegated to _read() to save a coroutine frame.
        fget = self._fget
        if fget is None:
            raise ReadAccessError(self.name)
        try:
            if self._fget_is_async:
                value = await fget(self._instance)
            else:
                value = fget(self._instance)
                if inspect.isawaitable(value):
                    value = await value
        except AccessorNotImplementedError:
            raise ReadAccessError(self.name) from None
        value = self._from_device(value)
        if self._observers and values_differ(self.last_value, value):
            self.notify(value)
        else:
            self.last_value = value
        return value

    async def _read(self) -> Any:
        fget = self._fget
        if fget is None:
            raise ReadAccessError(self.name)
        try:
            value = fget(self._instance)
            if inspect.isawaitable(value):
                value = await value
        except AccessorNotImplementedError:
            raise ReadAccessError(self.name) from None
        return self._from_device(value)

    async def get_target(self, wait_on: Awaitable | None = None) -> Any:
        """Read the target (set point) value; first await ``wait_on`` if given."""
        if wait_on is not None:
            await wait_on
        if self._fget_target is None:
            raise ReadAccessError(f"{self.name} (target)")
        try:
            value = await _call(self._fget_target, self._instance)
        except AccessorNotImplementedError:
            raise ReadAccessError(f"{self.name} (target)") from None
        return self._from_device(value)

    def _from_device(self, value: Any) -> Any:
        return value

    # -- writing -----------------------------------------------------------------------
    async def validate(self, value: Any) -> Any:
        """Check that ``value`` may be written now and return it as the setter gets it.

        Raises the error a :meth:`set` would raise (``LockError``, ``WriteAccessError``,
        ``UnitError``, ``SoftLimitError``, ``SelectionError``, ``TransitionNotAllowed``)
        without touching the device.
        """
        if self._write_lock.locked:
            raise LockError(f"parameter {self.name!r} is locked")
        if self._fset is None:
            raise WriteAccessError(self.name)
        value = await self._to_device(value)
        check = self._parameter.check
        if check is not None:
            await check.verify_source(self._instance, f"setting {self.name!r}")
        return value

    async def _to_device(self, value: Any) -> Any:
        return value

    async def set(self, value: Any, wait_on: Awaitable | None = None) -> None:
        """Write ``value``; first await ``wait_on`` if given.

        Refusals raise before the device is touched and leave the value unchanged.
        """
        if wait_on is not None:
            await wait_on
        value = await self.validate(value)
        try:
            await _call(self._fset, self._instance, value)
        except AccessorNotImplementedError:
            raise WriteAccessError(self.name) from None
        if self._observers:
            await self._announce_after_set(value)

    async def _announce_after_set(self, written: Any) -> None:
        if self.readable:
            try:
                actual = await self._read()
            except Exception:  # the write succeeded; report what was written
                actual = written
        else:
            actual = written
        self.notify(actual)

    # -- observers ---------------------------------------------------------------------
    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(parameter_value, value)`` on every change; return an unsubscriber."""
        return self._observers.add(observer)

    @property
    def has_observers(self) -> bool:
        """True while someone is subscribed (devices may announce changes only then)."""
        return bool(self._observers)

    def notify(self, value: Any) -> None:
        """Announce a new ``value`` to the observers (devices call this for their own updates)."""
        self.last_value = value
        self._observers.call(self, value)

    # -- locking -----------------------------------------------------------------------
    def lock(self, permanent: bool = False) -> None:
        """Refuse writes from now on; a ``permanent`` lock cannot be undone."""
        self._write_lock.lock(permanent)

    def unlock(self) -> None:
        """Allow writes again (``LockError`` if the lock is permanent)."""
        self._write_lock.unlock()

    @property
    def locked(self) -> bool:
        """True if the parameter is locked for writing."""
        return self._write_lock.locked

    async def __aenter__(self) -> ParameterValue:
        if self._lock is None:
            self._lock = asyncio.Lock()
        await self._lock.acquire()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._lock is not None
        self._lock.release()

    # -- stash / restore ---------------------------------------------------------------
    async def stash(self) -> None:
        """Push the current value (the target where readable) for :meth:`restore`.

        Parameters that cannot be both read and written are not stashed.
        """
        if not self.writable or not (self.readable or self.target_readable):
            return
        value = await (self.get_target() if self.target_readable else self.get())
        self._stash.append(value)

    async def restore(self) -> None:
        """Set the value last saved with :meth:`stash`; nothing happens if none was saved."""
        if not self.writable or not self._stash:
            return
        value = self._stash.pop()
        try:
            await self.set(value)
        except BaseException:
            self._stash.append(value)
            raise

    # -- waiting -----------------------------------------------------------------------
    async def wait(
        self, value: Any, sleep_time: Any = 0.1 * q.s, timeout: Any = None
    ) -> None:
        """Wait until the parameter reads ``value`` (``WaitError`` after ``timeout``)."""
        await self._wait_for(lambda current: not values_differ(value, current), value,
                             sleep_time, timeout)

    async def _wait_for(
        self, matches: Callable[[Any], bool], value: Any, sleep_time: Any, timeout: Any
    ) -> None:
        period = _as_seconds(sleep_time) or 0.0
        limit = _as_seconds(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            current = await self.get()
            if matches(current):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitError(
                    f"{self.name!r} did not reach {value} within {limit} s (last read {current})"
                )
            await asyncio.sleep(period)


class Quantity(Parameter):
    """A :class:`Parameter` with a unit and soft limits.

    Values are converted into ``unit`` before the setter sees them and after the getter
    returns them. ``lower``/``upper`` are the initial user limits. ``user_*_getter``/
    ``user_*_setter`` store the user limits elsewhere (e.g. a controller); the
    ``external_*_getter`` limits (e.g. of the hardware) are intersected with them.
    Every hook is a function of the owning class taking the instance (sync or async).
    """

    def __init__(
        self,
        unit: Any,
        fget: Callable | None = None,
        fset: Callable | None = None,
        fget_target: Callable | None = None,
        lower: Any = None,
        upper: Any = None,
        data: Any = None,
        check: Callable | None = None,
        external_lower_getter: Callable | None = None,
        external_upper_getter: Callable | None = None,
        user_lower_getter: Callable | None = None,
        user_lower_setter: Callable | None = None,
        user_upper_getter: Callable | None = None,
        user_upper_setter: Callable | None = None,
        help: str | None = None,
    ) -> None:
        super().__init__(fget=fget, fset=fset, fget_target=fget_target, data=data,
                         check=check, help=help)
        self.unit: pint.Unit = unit.units if isinstance(unit, pint.Quantity) else q.Unit(unit)
        self.lower = None if lower is None else self.convert(lower, "lower limit")
        self.upper = None if upper is None else self.convert(upper, "upper limit")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower limit {self.lower} lies above upper limit {self.upper}")
        self.external_lower_getter = external_lower_getter
        self.external_upper_getter = external_upper_getter
        self.user_lower_getter = user_lower_getter
        self.user_lower_setter = user_lower_setter
        self.user_upper_getter = user_upper_getter
        self.user_upper_setter = user_upper_setter

    @property
    def symbol(self) -> str:
        """The unit's short symbol (``mm``, ``deg``; ``""`` when dimensionless)."""
        return unit_symbol(self.unit)

    def convert(self, value: Any, what: str | None = None) -> pint.Quantity:
        """Return ``value`` in this quantity's unit; ``UnitError`` if it cannot be."""
        unit = self.unit
        if isinstance(value, pint.Quantity):
            if value._units == unit._units:
                return value
            try:
                return value.to(unit)
            except pint.DimensionalityError:
                pass
        elif isinstance(value, (numbers.Real, np.ndarray, list, tuple)) and (
            unit.dimensionless
        ):
            return q.Quantity(np.asarray(value) if isinstance(value, (list, tuple)) else value,
                              unit)
        raise UnitError(
            f"{what or self.name!r}: {value!r} cannot be expressed in {unit_symbol(unit) or unit}"
        )

    def make_value(self, instance: Any) -> QuantityValue:
        return QuantityValue(instance, self)


class QuantityValue(ParameterValue):
    """The value of a :class:`Quantity` on one instance, with its soft limits."""

    _parameter: Quantity

    def __init__(self, instance: Any, quantity: Quantity) -> None:
        super().__init__(instance, quantity)
        self._accepted_units: Any = object()
        self._lower = quantity.lower
        self._upper = quantity.upper
        self._limits_lock = WriteLock(f"limits of {quantity.name!r}")
        self._limit_observers = Observers()
        hooks = (quantity.external_lower_getter, quantity.external_upper_getter,
                 quantity.user_lower_getter, quantity.user_upper_getter)
        self._plain_limits = all(hook is None for hook in hooks)

    @property
    def unit(self) -> pint.Unit:
        return self._parameter.unit

    @property
    def symbol(self) -> str:
        return self._parameter.symbol

    def _from_device(self, value: Any) -> pint.Quantity:
        # Getters mostly return quantities whose unit container was seen before: accept
        # those by identity instead of comparing units on every read.
        if getattr(value, "_units", None) is self._accepted_units:
            return value
        converted = self._parameter.convert(value)
        if converted is value:
            self._accepted_units = value._units
        return converted

    async def _to_device(self, value: Any) -> pint.Quantity:
        value = self._parameter.convert(value)
        if self._plain_limits:
            lower, upper = self._lower, self._upper
        else:
            lower, upper = await self.get_limits()
        if lower is not None or upper is not None:
            magnitude = value.magnitude
            if isinstance(magnitude, np.ndarray):
                below = lower is not None and bool(np.any(magnitude < lower.magnitude))
                above = upper is not None and bool(np.any(magnitude > upper.magnitude))
            else:  # scalars: numpy reductions would cost microseconds per call
                below = lower is not None and magnitude < lower.magnitude
                above = upper is not None and magnitude > upper.magnitude
            if below or above:
                raise SoftLimitError(
                    f"{self.name} = {value:~} is outside the soft limits "
                    f"[{_fmt(lower)}, {_fmt(upper)}]"
                )
        return value

    async def wait(
        self, value: Any, eps: Any = None, sleep_time: Any = 0.1 * q.s, timeout: Any = None
    ) -> None:
        """Wait until the value is within ``eps`` of ``value`` (``WaitError`` after ``timeout``)."""
        target = self._parameter.convert(value)
        tolerance = 0 if eps is None else self._parameter.convert(eps, "eps").magnitude

        def matches(current: pint.Quantity) -> bool:
            return bool(np.all(np.abs(current.magnitude - target.magnitude) <= tolerance))

        await self._wait_for(matches, target, sleep_time, timeout)

    # -- limits ------------------------------------------------------------------------
    async def _hook(self, hook: Callable | None) -> pint.Quantity | None:
        if hook is None:
            return None
        value = await _call(hook, self._instance)
        return None if value is None else self._parameter.convert(value, "limit")

    async def _user_lower(self) -> pint.Quantity | None:
        if self._parameter.user_lower_getter is not None:
            return await self._hook(self._parameter.user_lower_getter)
        return self._lower

    async def _user_upper(self) -> pint.Quantity | None:
        if self._parameter.user_upper_getter is not None:
            return await self._hook(self._parameter.user_upper_getter)
        return self._upper

    async def get_limits(self) -> tuple[pint.Quantity | None, pint.Quantity | None]:
        """Return the effective ``(lower, upper)``: user limits intersected with external ones."""
        if self._plain_limits:
            return self._lower, self._upper
        lower = _tighter(max, await self._user_lower(),
                         await self._hook(self._parameter.external_lower_getter))
        upper = _tighter(min, await self._user_upper(),
                         await self._hook(self._parameter.external_upper_getter))
        return lower, upper

    async def get_lower(self) -> pint.Quantity | None:
        """The effective lower soft limit (``None`` when unlimited)."""
        return (await self.get_limits())[0]

    async def get_upper(self) -> pint.Quantity | None:
        """The effective upper soft limit (``None`` when unlimited)."""
        return (await self.get_limits())[1]

    async def set_lower(self, value: Any) -> None:
        """Set the user lower limit (``None`` removes it)."""
        await self._set_limit(value, lower=True)

    async def set_upper(self, value: Any) -> None:
        """Set the user upper limit (``None`` removes it)."""
        await self._set_limit(value, lower=False)

    async def _set_limit(self, value: Any, lower: bool) -> None:
        which = "lower" if lower else "upper"
        if self._limits_lock.locked:
            raise LockError(f"limits of {self.name!r} are locked")
        if value is not None:
            value = self._parameter.convert(value, f"{which} limit of {self.name}")
            other = await (self.get_upper() if lower else self.get_lower())
            if other is not None and (value > other if lower else value < other):
                raise ValueError(
                    f"{which} limit {value:~} of {self.name!r} would cross the "
                    f"{'upper' if lower else 'lower'} limit {other:~}"
                )
        setter = self._parameter.user_lower_setter if lower else self._parameter.user_upper_setter
        if setter is not None:
            await _call(setter, self._instance, value)
        elif lower:
            self._lower = value
        else:
            self._upper = value
        self.notify_limits()

    lower = property(
        lambda self: blocking(self.get_lower(), "reading a lower limit"),
        lambda self, value: blocking(self.set_lower(value), "writing a lower limit"),
        doc="Blocking access to the lower limit (use get_lower/set_lower in coroutines).",
    )
    upper = property(
        lambda self: blocking(self.get_upper(), "reading an upper limit"),
        lambda self, value: blocking(self.set_upper(value), "writing an upper limit"),
        doc="Blocking access to the upper limit (use get_upper/set_upper in coroutines).",
    )

    def lock_limits(self, permanent: bool = False) -> None:
        """Refuse limit changes; a ``permanent`` lock cannot be undone."""
        self._limits_lock.lock(permanent)

    def unlock_limits(self) -> None:
        """Allow limit changes again (``LockError`` if locked permanently)."""
        self._limits_lock.unlock()

    @property
    def limits_locked(self) -> bool:
        return self._limits_lock.locked

    def subscribe_limits(self, observer: Callable[[QuantityValue], None]) -> Callable[[], None]:
        """Call ``observer(quantity_value)`` whenever the limits change; return an unsubscriber."""
        return self._limit_observers.add(observer)

    def notify_limits(self) -> None:
        """Tell limit observers the limits changed (call after changing external limits)."""
        self._limit_observers.call(self)


def _tighter(pick: Callable, first: Any, second: Any) -> Any:
    if first is None:
        return second
    if second is None:
        return first
    return pick(first, second)


def _fmt(limit: pint.Quantity | None) -> str:
    return "unlimited" if limit is None else f"{limit:~}"


class Selection(Parameter):
    """A :class:`Parameter` whose value must be one of ``choices``."""

    def __init__(
        self,
        choices: Iterable[Any],
        fget: Callable | None = None,
        fset: Callable | None = None,
        fget_target: Callable | None = None,
        data: Any = None,
        check: Callable | None = None,
        help: str | None = None,
    ) -> None:
        super().__init__(fget=fget, fset=fset, fget_target=fget_target, data=data,
                         check=check, help=help)
        self.values = list(choices)
        if not self.values:
            raise ValueError("a Selection needs at least one choice")

    def make_value(self, instance: Any) -> SelectionValue:
        return SelectionValue(instance, self)


class SelectionValue(ParameterValue):
    """The value of a :class:`Selection` on one instance."""

    _parameter: Selection

    @property
    def values(self) -> list[Any]:
        """The allowed values."""
        return list(self._parameter.values)

    async def _to_device(self, value: Any) -> Any:
        for choice in self._parameter.values:
            if not values_differ(choice, value):
                return choice
        raise SelectionError(f"{self.name}: {value!r} is not one of {self._parameter.values}")


__all__ = [
    "Parameter",
    "ParameterValue",
    "Quantity",
    "QuantityValue",
    "Selection",
    "SelectionValue",
    "values_differ",
]
