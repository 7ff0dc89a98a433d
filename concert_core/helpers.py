"""Small helpers shared by the whole suite: containers, unit-aware ranges, argument
checks, timing and caching."""

from __future__ import annotations

import copy
import enum
import functools
import inspect
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pint

from concert_core.quantities import q

LOG = logging.getLogger(__name__)


class Bunch:
    """Attribute access to the entries of a mapping or the items of a list.

    ``Bunch({"foo": 1}).foo == 1``; ``Bunch(["foo", "bar"]).foo == "foo"``.
    """

    def __init__(self, values: Mapping[str, Any] | Iterable[str]) -> None:
        if isinstance(values, Mapping):
            self.__dict__.update(values)
        else:
            self.__dict__.update((str(value), value) for value in values)

    def __iter__(self):
        return iter(self.__dict__)

    def __contains__(self, name: object) -> bool:
        return name in self.__dict__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bunch) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        entries = ", ".join(f"{key}={value!r}" for key, value in self.__dict__.items())
        return f"Bunch({entries})"


@dataclass(order=True)
class PrioItem:
    """An item of a :class:`queue.PriorityQueue`, ordered by ``priority`` only.

    ``data`` never takes part in comparisons, so it may be anything (an image, None).
    """

    priority: int
    data: Any = field(compare=False)


def _copy_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if not metadata:
        return {}
    try:
        return copy.deepcopy(dict(metadata))
    except Exception:  # an entry that cannot be deep-copied: copy the top level only
        return dict(metadata)


class ImageWithMetadata(np.ndarray):
    """A numpy array with a ``metadata`` dictionary.

    The constructor, every view and every derived array get their own (deep) copy of
    the metadata, so changing one never changes another, nor the caller's dictionary.
    Reductions to a single value (``image.mean()``) give plain numpy scalars. Pickling
    keeps the metadata.
    """

    metadata: dict[str, Any]

    def __new__(
        cls, input_array: Any, metadata: Mapping[str, Any] | None = None
    ) -> ImageWithMetadata:
        obj = np.asarray(input_array).view(cls)
        if metadata is None:
            metadata = getattr(input_array, "metadata", None)
        obj.metadata = _copy_metadata(metadata)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        if obj is None:
            return
        self.metadata = _copy_metadata(getattr(obj, "metadata", None))

    def __array_wrap__(self, array, context=None, return_scalar=False):
        if array.ndim == 0:
            return array[()]
        return super().__array_wrap__(array, context, return_scalar)

    def __reduce__(self):
        reconstruct, args, state = super().__reduce__()
        return reconstruct, args, (state, self.metadata)

    def __setstate__(self, state) -> None:
        array_state, metadata = state
        super().__setstate__(array_state)
        self.metadata = metadata


class SocketType(enum.IntEnum):
    """ZMQ socket types of the data plane; the values equal libzmq's constants, so
    ``context.socket(SocketType.PUSH)`` works with pyzmq."""

    PUB = 1
    SUB = 2
    PULL = 7
    PUSH = 8


_LOOPBACK = "127.0.0.1"


@dataclass
class CommData:
    """Where and how a ZMQ stream is served.

    ``host`` is the address clients connect to and the interface the server binds to;
    ``None``, ``""`` or ``"localhost"`` mean loopback, ``"*"`` binds to every interface
    (clients then need a real host name). For ``ipc`` and ``inproc`` ``host`` is the
    endpoint's name (a path for ``ipc``) and ``port`` is ignored. A tcp server without
    a port binds to a random free one (``tcp://127.0.0.1:*``).
    """

    host: str | None
    port: int | None = None
    protocol: str = "tcp"
    socket_type: SocketType = SocketType.PUSH
    sndhwm: int = 1000

    def _named(self) -> str:
        if not self.host:
            raise ValueError(f"{self.protocol} endpoint needs a name in `host`")
        return f"{self.protocol}://{self.host}"

    @property
    def server_endpoint(self) -> str:
        """The endpoint the serving side binds to."""
        if self.protocol != "tcp":
            return self._named()
        host = self.host
        if not host or host == "localhost":
            host = _LOOPBACK
        port = "*" if self.port is None else self.port
        return f"tcp://{host}:{port}"

    @property
    def client_endpoint(self) -> str:
        """The endpoint the other side connects to."""
        if self.protocol != "tcp":
            return self._named()
        if self.port is None:
            raise ValueError("a tcp client needs a port")
        if self.host == "*":
            raise ValueError("cannot connect to '*': give the server's host name")
        return f"tcp://{self.host or _LOOPBACK}:{self.port}"


class PerformanceTracker:
    """A stopwatch for data throughput.

    Call :meth:`start`, then :meth:`lap` once per item (with its size in bytes) and
    :meth:`stop` at the end; or use it as a context manager. Every lap is logged at
    ``loglevel`` unless ``summary`` is true, in which case only :meth:`stop` logs a
    summary line.
    """

    def __init__(self, summary: bool = False, loglevel: int = logging.DEBUG) -> None:
        self.summary = summary
        self.loglevel = loglevel
        self.laps: list[tuple[float, int]] = []
        self._start: float | None = None
        self._last: float | None = None
        self._end: float | None = None

    def start(self) -> None:
        """Forget previous laps and start measuring."""
        self.laps = []
        self._start = self._last = time.perf_counter()
        self._end = None

    def lap(self, size_bytes: int = 0) -> float:
        """Record one item of ``size_bytes``; return the seconds since the previous lap."""
        if self._last is None:
            raise RuntimeError("PerformanceTracker.lap() called before start()")
        now = time.perf_counter()
        duration = now - self._last
        self._last = now
        self.laps.append((duration, size_bytes))
        if not self.summary and LOG.isEnabledFor(self.loglevel):
            rate = size_bytes / duration / 1e6 if duration > 0 else float("inf")
            LOG.log(
                self.loglevel,
                "lap %d: %.6f s, %d B, %.2f MB/s",
                len(self.laps),
                duration,
                size_bytes,
                rate,
            )
        return duration

    def stop(self) -> None:
        """Stop measuring (and log the summary if ``summary`` is true)."""
        if self._start is None:
            raise RuntimeError("PerformanceTracker.stop() called before start()")
        self._end = time.perf_counter()
        if self.summary:
            LOG.log(
                self.loglevel,
                "%d laps, %d B in %.6f s: %.2f MB/s, %.2f laps/s",
                self.num_laps,
                self.total_bytes,
                self.duration.magnitude,
                self.throughput.magnitude,
                self.lap_rate.magnitude,
            )

    @property
    def num_laps(self) -> int:
        """Number of recorded laps."""
        return len(self.laps)

    @property
    def total_bytes(self) -> int:
        """Sum of the sizes given to :meth:`lap`."""
        return sum(size for _, size in self.laps)

    @property
    def duration(self) -> pint.Quantity:
        """Time from :meth:`start` to :meth:`stop` (or to now while running)."""
        if self._start is None:
            return 0 * q.s
        end = self._end if self._end is not None else time.perf_counter()
        return (end - self._start) * q.s

    @property
    def throughput(self) -> pint.Quantity:
        """Mean data rate in MB/s (zero before any time has passed)."""
        seconds = self.duration.magnitude
        rate = self.total_bytes / seconds / 1e6 if seconds > 0 else 0.0
        return rate * q.MB / q.s

    @property
    def lap_rate(self) -> pint.Quantity:
        """Mean number of laps per second."""
        seconds = self.duration.magnitude
        return (self.num_laps / seconds if seconds > 0 else 0.0) * q.Hz

    def __enter__(self) -> PerformanceTracker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _unit_of(*values: Any) -> pint.Unit | None:
    for value in values:
        if isinstance(value, pint.Quantity):
            return value.units
    return None


def _magnitudes(unit: pint.Unit | None, *values: Any) -> list[Any]:
    if unit is None:
        return list(values)
    return [q.Quantity(value).to(unit).magnitude for value in values]


def arange(start: Any, stop: Any, step: Any) -> Any:
    """:func:`numpy.arange` for quantities: the result has the unit of the first
    quantity among the arguments (plain numbers give a plain array)."""
    unit = _unit_of(start, stop, step)
    values = np.arange(*_magnitudes(unit, start, stop, step))
    return values if unit is None else values * unit


def linspace(start: Any, stop: Any, num: int, endpoint: bool = True) -> Any:
    """:func:`numpy.linspace` for quantities: ``num`` values from ``start`` to ``stop``
    in the unit of ``start`` (or of ``stop`` if only it has one)."""
    unit = _unit_of(start, stop)
    values = np.linspace(*_magnitudes(unit, start, stop), num, endpoint=endpoint)
    return values if unit is None else values * unit


class Numeric:
    """Expectation of :class:`expects` for numbers: ``dimension`` values (1 means a
    single number) with units compatible with ``units`` (``None``: no unit)."""

    def __init__(self, dimension: int, units: pint.Unit | pint.Quantity | None = None) -> None:
        if dimension < 1:
            raise ValueError("dimension must be at least 1")
        self.dimension = dimension
        self.units = units.units if isinstance(units, pint.Quantity) else units

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not meet the expectation, or ``None`` if it does."""
        if isinstance(value, pint.Quantity):
            if self.units is None:
                if not value.dimensionless:
                    return f"expected a number without unit, got {value}"
            elif not value.is_compatible_with(self.units):
                return f"expected units compatible with {self.units}, got {value.units}"
            magnitude = value.magnitude
        else:
            if self.units is not None and self.units != q.dimensionless:
                return f"expected a quantity in {self.units}, got {value!r}"
            magnitude = value
        try:
            array = np.asarray(magnitude)
        except Exception:
            return f"expected a number, got {value!r}"
        if array.dtype.kind not in "iufb" or array.ndim > 1:
            return f"expected numbers, got {value!r}"
        size = 1 if array.ndim == 0 else len(array)
        if size != self.dimension:
            return f"expected {self.dimension} value(s), got {size}"
        return None

    def __repr__(self) -> str:
        return f"Numeric({self.dimension}, {self.units})"


Expectation = type | tuple[type, ...] | Numeric | None


class expects:
    """Decorator checking the types of a function's arguments; raises :class:`TypeError`.

    Positional expectations match the parameters in order, keyword ones by name. An
    expectation is a type or tuple of types (``isinstance``), a :class:`Numeric`, or
    ``None`` for anything (handy for ``self``). ``None`` passes for a parameter whose
    default is ``None``::

        @expects(Camera, LinearMotor, pixel_size=Numeric(2, q.mm))
        def foo(camera, motor, pixel_size=None): ...
    """

    def __init__(self, *args: Expectation, **kwargs: Expectation) -> None:
        self.args = args
        self.kwargs = kwargs

    def __call__(self, func: Callable) -> Callable:
        signature = inspect.signature(func)
        names = list(signature.parameters)
        if len(self.args) > len(names):
            raise TypeError(f"more expectations than parameters of {func.__qualname__}")
        expected = dict(zip(names, self.args, strict=False))
        unknown = set(self.kwargs) - set(names)
        if unknown:
            raise TypeError(f"{func.__qualname__} has no parameter(s) {sorted(unknown)}")
        expected.update(self.kwargs)

        def check(args: tuple, kwargs: dict) -> None:
            bound = signature.bind(*args, **kwargs)
            for name, value in bound.arguments.items():
                expectation = expected.get(name)
                if expectation is None:
                    continue
                if value is None and signature.parameters[name].default is None:
                    continue
                if isinstance(expectation, Numeric):
                    problem = expectation.problem(value)
                elif not isinstance(value, expectation):
                    problem = f"expected {expectation}, got {type(value).__name__}"
                else:
                    problem = None
                if problem:
                    raise TypeError(f"{func.__qualname__}(): argument {name!r}: {problem}")

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args, **kwargs):
                check(args, kwargs)
                return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            check(args, kwargs)
            return func(*args, **kwargs)

        return wrapper


def is_iterable(item: Any) -> bool:
    """Whether ``iter(item)`` works (false for scalar quantities and 0-d arrays)."""
    try:
        iter(item)
    except TypeError:
        return False
    return True


def measure(func: Callable | None = None, return_result: bool = False) -> Callable:
    """Decorator logging (at INFO) how long each call of ``func`` takes.

    Works for plain and ``async`` functions, bare (``@measure``) or with arguments
    (``@measure(return_result=True)``). With ``return_result`` the decorated function
    returns ``(result, duration)`` with the duration as a quantity in seconds.
    """
    if func is None:
        return functools.partial(measure, return_result=return_result)

    def finish(result: Any, began: float) -> Any:
        duration = (time.perf_counter() - began) * q.s
        LOG.info("%s took %s", func.__qualname__, duration)
        return (result, duration) if return_result else result

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args, **kwargs):
            began = time.perf_counter()
            return finish(await func(*args, **kwargs), began)

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        return finish(func(*args, **kwargs), began)

    return wrapper


_MISSING = object()
_FALLBACK_CACHE_SIZE = 256


def memoize(func: Callable) -> Callable:
    """Remember the result of ``func`` per arguments (``func`` must be free of side effects).

    Unlike a plain dictionary cache this never keeps objects alive: results are kept
    per first argument (``self`` of a method) through a weak reference and dropped when
    that object dies. Calls whose first argument cannot be weakly referenced (numbers,
    strings) use a bounded LRU cache instead. Calls with unhashable arguments are not
    cached. A cached result that itself refers to its first argument still keeps it
    alive. The first argument is matched by identity, the others by equality.
    ``async`` functions cache the awaited result. ``wrapper.cache_clear()``
    forgets everything.
    """
    owners: dict[int, tuple[weakref.ref, dict]] = {}
    recent: OrderedDict[tuple, Any] = OrderedDict()  # bounded cache of the other calls
    lock = threading.RLock()

    def table_for(owner: Any) -> dict | None:
        key = id(owner)
        with lock:
            entry = owners.get(key)
            if entry is not None and entry[0]() is owner:
                return entry[1]

            def forget(ref: weakref.ref, key: int = key) -> None:
                with lock:
                    current = owners.get(key)
                    if current is not None and current[0] is ref:
                        del owners[key]

            try:
                ref = weakref.ref(owner, forget)
            except TypeError:  # not weakly referenceable
                return None
            table: dict = {}
            owners[key] = (ref, table)
            return table

    def lookup(args: tuple, kwargs: dict) -> tuple[dict | None, Any, Any]:
        """Return (table, key, cached value or _MISSING); table None means uncached."""
        try:
            if args:
                table = table_for(args[0])
                if table is not None:
                    key = (args[1:], tuple(sorted(kwargs.items())))
                    return table, key, table.get(key, _MISSING)
            key = (args, tuple(sorted(kwargs.items())))
            with lock:
                value = recent.get(key, _MISSING)
                if value is not _MISSING:
                    recent.move_to_end(key)
        except TypeError:  # unhashable arguments
            return None, None, _MISSING
        return recent, key, value

    def store(table: dict, key: Any, value: Any) -> None:
        with lock:
            table[key] = value
            if table is recent:
                recent.move_to_end(key)
                while len(recent) > _FALLBACK_CACHE_SIZE:
                    recent.popitem(last=False)

    def clear() -> None:
        with lock:
            owners.clear()
            recent.clear()

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args, **kwargs):
            table, key, value = lookup(args, kwargs)
            if value is _MISSING:
                value = await func(*args, **kwargs)
                if table is not None:
                    store(table, key, value)
            return value

        async_wrapper.cache_clear = clear  # type: ignore[attr-defined]
        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        table, key, value = lookup(args, kwargs)
        if value is _MISSING:
            value = func(*args, **kwargs)
            if table is not None:
                store(table, key, value)
        return value

    wrapper.cache_clear = clear  # type: ignore[attr-defined]
    return wrapper
