"""Acquisitions and experiments.

An :class:`Acquisition` ties a producer of data (dark fields, flat fields, projections, ...)
to the consumers of that data (writers, viewers, reconstructions). Producer and consumers
are given as callables, so that the acquisition can be run again and again.

An :class:`Experiment` runs its acquisitions one after the other; every run can get a
directory (or HDF5 group) of its own through a walker, a log file there and JSON metadata
of every device and experiment parameter at its start and at its end.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import numpy as np
import pint

from concert_core.coroutines.base import background, broadcast
from concert_core.coroutines.sinks import null
from concert_core.devices.base import Device
from concert_core.errors import TransitionNotAllowed
from concert_core.helpers import ImageWithMetadata
from concert_core.parameter import Parameter, Selection
from concert_core.parameterizable import Parameterizable
from concert_core.quantities import unit_symbol
from concert_core.state import State, check

LOG = logging.getLogger(__name__)

#: States in which an experiment (or acquisition) may be started or re-configured.
IDLE_STATES = ("standby", "error", "cancelled")
#: Guards setters of experiment parameters: no change while running.
IDLE = check(source=list(IDLE_STATES))
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

Producer = Callable[[], AsyncIterator[Any]]
Consumer = Callable[[AsyncIterator[Any]], Awaitable[Any]]


def stored(name: str, convert: Callable[[Any], Any] | None = None) -> tuple[Callable, Callable]:
    """Accessors ``(fget, fset)`` of a parameter kept in the attribute ``_<name>``.

    ``convert`` checks and converts a written value (raise ``ValueError`` to refuse it).
    """
    attribute = "_" + name

    async def fget(self: Any) -> Any:
        return getattr(self, attribute)

    async def fset(self: Any, value: Any) -> None:
        setattr(self, attribute, convert(value) if convert is not None else value)

    fget.__name__, fset.__name__ = f"_get_{name}", f"_set_{name}"
    return fget, fset


def count(value: Any) -> int:
    """A number of frames: a non-negative integer (``ValueError`` otherwise)."""
    if isinstance(value, bool) or not float(value).is_integer() or value < 0:
        raise ValueError(f"expected a non-negative whole number, got {value!r}")
    return int(value)


def positive_count(value: Any) -> int:
    """A positive integer (``ValueError`` otherwise)."""
    number = count(value)
    if number < 1:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    return number


def boolean(value: Any) -> bool:
    """A bool (``ValueError`` for anything else)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"expected True or False, got {value!r}")
    return bool(value)


async def run_together(coroutines: Iterable[Awaitable[Any]]) -> list[Any]:
    """Run ``coroutines`` concurrently; if one fails (or this is cancelled) cancel the rest,
    wait for their cleanup and raise the first error."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class FrameToken(ImageWithMetadata):
    """Stands for a frame that a camera sent to the direct writer itself: an empty array
    carrying the frame's metadata. ``last`` marks the final frame of its acquisition, so
    that a consumer knows the metadata are complete while the producer still cleans up."""

    last: bool = False

    @classmethod
    def new(cls, last: bool = False) -> FrameToken:
        """An empty token; ``last`` if it stands for the acquisition's final frame."""
        token = cls(np.empty(0, dtype=np.uint16))
        token.last = last
        return token


async def bound_endpoint(get: Callable[[], Awaitable[str]],
                         set_: Callable[[str], Awaitable[Any]], default: str) -> str:
    """The endpoint a device's ``get()`` gives, after binding it at ``default`` with
    ``set_`` if it has none (a camera's data endpoint, a motor's trigger output)."""
    endpoint = await get()
    if not endpoint:
        await set_(default)
        endpoint = await get()
    return endpoint


def jsonable(value: Any) -> Any:
    """``value`` in a form JSON can store (quantities as ``"10 mm"``, big arrays summarised)."""
    if isinstance(value, pint.Quantity):
        magnitude = value.magnitude
        if np.ndim(magnitude):
            return {"value": jsonable(np.asarray(magnitude)), "unit": unit_symbol(value.units)}
        return f"{magnitude:g} {unit_symbol(value.units)}".strip()
    if isinstance(value, np.ndarray):
        if value.size > 64:
            return f"<array {value.dtype} {list(value.shape)}>"
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return str(value)


async def read_parameters(obj: Parameterizable) -> dict[str, Any]:
    """Read every readable parameter of ``obj`` through its public API (errors as text)."""
    values = {}
    for name, value in (await obj.read_values()).items():
        # metadata must show what failed, not stop the run
        values[name] = f"<{type(value).__name__}: {value}>" if isinstance(value, Exception) \
            else jsonable(value)
    return values


class Acquisition(Parameterizable):
    """One reproducible part of an experiment: ``await acquisition()`` runs it.

    ``producer`` is a callable without arguments returning an async iterator of data (a new
    one on every run). ``consumers`` are callables taking that iterator (each gets its own
    copy of the stream) and returning an awaitable. ``acquire`` is an optional coroutine
    function awaited before the data flow from producer to consumers. Frames that carry
    ``metadata`` get ``metadata['acquisition'] = name``. State: ``standby``, ``running``,
    ``cancelled``, ``error`` (the message in ``acquisition['state'].message``).
    """

    state = State(default="standby", help="standby, running, cancelled or error")

    async def __ainit__(
        self,
        name: str,
        producer: Producer,
        consumers: Iterable[Consumer] | None = None,
        acquire: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        await super().__ainit__()
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"acquisition name must be a Python identifier, got {name!r}")
        self.name = name
        self.producer = producer
        self.consumers: list[Consumer] = list(consumers or [])
        self.acquire = acquire
        #: Items produced in the current (or last) run.
        self.num_items = 0

    def __repr__(self) -> str:
        return f"<Acquisition {self.name!r}>"

    def add_consumer(self, consumer: Consumer) -> None:
        """Feed the data of every following run also to ``consumer``."""
        self.consumers.append(consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        """Stop feeding ``consumer`` (``ValueError`` if it is not a consumer)."""
        self.consumers.remove(consumer)

    async def _stamped(self) -> AsyncIterator[Any]:
        self.num_items = 0
        items = self.producer()
        try:
            async for item in items:
                metadata = getattr(item, "metadata", None)
                if isinstance(metadata, dict):
                    metadata.setdefault("acquisition", self.name)
                self.num_items += 1
                yield item
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                await close()

    async def __call__(self) -> None:
        """Run the acquisition: ``acquire``, then the producer into all consumers."""
        state = self["state"]
        if state.last_value not in IDLE_STATES:
            raise TransitionNotAllowed(
                f"acquisition {self.name!r} is {state.last_value}; it cannot be started again"
            )
        state.set_software("running")
        try:
            if self.acquire is not None:
                await self.acquire()
            consumers = self.consumers or [null]
            await run_together(broadcast(self._stamped(), *consumers))
        except asyncio.CancelledError:
            state.set_software("cancelled")
            raise
        except Exception as error:
            state.set_software("error", f"{type(error).__name__}: {error}")
            raise
        state.set_software("standby")


class Experiment(Parameterizable):
    """Runs its acquisitions in order, as often as wanted.

    ``walker`` (optional) stores the data: with ``separate_scans`` every run descends to a
    new entry named by ``name_fmt`` and the iteration number (``scan_0001``, ...); a
    director that names the entries itself runs experiments with ``separate_scans=False``.
    Every run logs to ``experiment.log`` and stores the metadata of all devices and
    experiment parameters with ``walker.log_to_json`` as ``experiment_start.json`` and
    ``experiment_finish.json``.

    :meth:`run` starts a background task. Cancelling it lets the producers clean up, then
    calls :meth:`cleanup` (stop motors, close the beam, stop the camera) and leaves state
    ``cancelled``; an error leaves state ``error`` with the message in
    ``experiment['state'].message``. :meth:`finish` runs in every case.
    """

    state = State(default="standby", help="standby, running, cancelled or error")
    separate_scans = Parameter(*stored("separate_scans", boolean), check=IDLE,
                               help="Every run descends to an entry of its own (name_fmt)")
    name_fmt = Parameter(*stored("name_fmt", str), check=IDLE,
                         help="Name of a run's entry, formatted with the iteration number")
    iteration = Parameter(*stored("iteration", positive_count), check=IDLE,
                          help="Number of the next run (an existing entry is skipped)")
    current_name = Parameter(fget=stored("current_name")[0],
                             help="Name of the current (or last) run's entry")
    current_acquisition = Parameter(fget=stored("current_acquisition")[0],
                                    help="Name of the acquisition running now ('' if none)")
    frames_done = Parameter(help="Items produced by the current (or last) run")
    log_level = Selection(LOG_LEVELS, *stored("log_level"), help="Level of the per-run log file")

    async def __ainit__(
        self,
        acquisitions: Iterable[Acquisition],
        walker: Any = None,
        separate_scans: bool = True,
        name_fmt: str = "scan_{:>04}",
    ) -> None:
        await super().__ainit__()
        self._acquisitions: list[Acquisition] = []
        self.walker = walker
        self._separate_scans = boolean(separate_scans)
        self._name_fmt = str(name_fmt)
        self._iteration = 1
        self._current_name = ""
        self._current_acquisition = ""
        self._log_level = "info"
        self._finished: list[Acquisition] = []
        #: Set when the next sample may be prepared (cleared at the start of a run, always
        #: set at its end); a director waits for it.
        self.ready_to_prepare_next_sample = asyncio.Event()
        #: The logger whose records go to the per-run log file.
        self.log = self.logger
        #: Awaited with the name of each acquisition before it starts (a director pauses
        #: there); ``None``: nothing.
        self.before_acquisition: Callable[[str], Awaitable[Any]] | None = None
        for acquisition in acquisitions:
            self.add(acquisition)

    # -- acquisitions ----------------------------------------------------------------------
    @property
    def acquisitions(self) -> tuple[Acquisition, ...]:
        """The acquisitions in the order they run (change with add/remove/swap)."""
        return tuple(self._acquisitions)

    def add(self, acquisition: Acquisition) -> None:
        """Append ``acquisition`` and make it an attribute (``experiment.<name>``)."""
        name = acquisition.name
        taken = name in self.__dict__ or hasattr(type(self), name) or name in self
        if taken and self.__dict__.get(name) not in self._acquisitions:
            raise ValueError(f"acquisition name {name!r} clashes with an attribute of "
                             f"{type(self).__name__}")
        self._acquisitions.append(acquisition)
        if name not in self.__dict__:
            object.__setattr__(self, name, acquisition)

    def remove(self, acquisition: Acquisition) -> None:
        """Remove ``acquisition`` (``ValueError`` if it is not part of the experiment)."""
        self._acquisitions.remove(acquisition)
        if self.__dict__.get(acquisition.name) is acquisition:
            del self.__dict__[acquisition.name]
            for other in self._acquisitions:
                if other.name == acquisition.name:
                    object.__setattr__(self, other.name, other)
                    break

    def swap(self, first: Acquisition, second: Acquisition) -> None:
        """Swap the places of ``first`` and ``second`` (their first occurrences)."""
        i, j = self._acquisitions.index(first), self._acquisitions.index(second)
        self._acquisitions[i], self._acquisitions[j] = second, first

    def get_acquisition(self, name: str) -> Acquisition:
        """The first acquisition called ``name`` (``ValueError`` if there is none)."""
        for acquisition in self._acquisitions:
            if acquisition.name == name:
                return acquisition
        raise ValueError(f"{type(self).__name__} has no acquisition {name!r}")

    async def _get_frames_done(self) -> int:
        return sum(acquisition.num_items for acquisition in self._finished) + (
            self.get_acquisition(self._current_acquisition).num_items
            if self._current_acquisition else 0
        )

    # -- hooks -----------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Called before every run (nothing by default)."""

    async def finish(self) -> None:
        """Called after every run, also a failed or cancelled one (nothing by default)."""

    async def cleanup(self) -> None:
        """Called after a cancelled or failed run to leave the devices safe (nothing here)."""

    async def settle(self) -> None:
        """Wait for what the acquisitions' consumers still do after the acquisitions
        ended (a remote writer storing their metadata) and raise its first error; called
        at the end of every run, before the walker leaves the run's entry (nothing here)."""

    async def acquire(self) -> None:
        """Run the acquisitions in order (override for more elaborate schemes)."""
        for acquisition in list(self._acquisitions):
            if self.before_acquisition is not None:
                await self.before_acquisition(acquisition.name)
            self._current_acquisition = acquisition.name
            self.log.info("acquisition %s started", acquisition.name)
            await acquisition()
            self._finished.append(acquisition)
            self._current_acquisition = ""
            self.log.info("acquisition %s done: %d items", acquisition.name,
                          acquisition.num_items)

    # -- metadata --------------------------------------------------------------------------
    def devices(self) -> dict[str, Device]:
        """The devices this experiment uses, by attribute name (leading ``_`` dropped)."""
        return {
            name.lstrip("_"): value
            for name, value in vars(self).items()
            if isinstance(value, Device)
        }

    async def get_metadata(self) -> dict[str, Any]:
        """Every experiment and device parameter, read through the public API."""
        named = self.devices()
        # Devices are read concurrently: remote ones each in one round trip.
        *readings, own = await asyncio.gather(
            *(read_parameters(device) for device in named.values()), read_parameters(self))
        devices = {name: {"class": type(device).__name__, **reading}
                   for (name, device), reading in zip(named.items(), readings, strict=True)}
        return {
            "experiment": {"class": type(self).__name__, **own},
            "acquisitions": [acquisition.name for acquisition in self._acquisitions],
            "devices": devices,
            "time": datetime.datetime.now(datetime.UTC).isoformat(),
        }

    async def _write_metadata(self, filename: str, metadata: Awaitable[dict[str, Any]] | None
                              = None, **extra: Any) -> None:
        """Store ``metadata`` (awaited; default: :meth:`get_metadata`) updated by ``extra`` as
        ``filename`` in the walker's current entry, holding the walker's lock (writers
        descend and come back under it); a failure is logged, not raised (metadata must not
        stop a run)."""
        walker = self.walker
        try:
            values = await (self.get_metadata() if metadata is None else metadata)
            values.update(extra)
            async with walker:
                await walker.log_to_json(values, filename)
        except Exception:
            self.log.exception("could not write %s", filename)

    # -- running ---------------------------------------------------------------------------
    async def _next_name(self) -> str:
        while await self.walker.exists(self._name_fmt.format(self._iteration)):
            self._iteration += 1
        return self._name_fmt.format(self._iteration)

    @background
    async def run(self) -> None:
        """Run all acquisitions once (a background task; cancel it to abort the run)."""
        state = self["state"]
        if state.last_value not in IDLE_STATES:
            raise TransitionNotAllowed(f"the experiment is {state.last_value}; wait for it "
                                       "to end or cancel it")
        self.ready_to_prepare_next_sample.clear()
        state.set_software("running")
        self._finished = []
        self._current_acquisition = ""
        walker = self.walker
        descended = False
        closer = None
        storing: asyncio.Future | None = None
        began = asyncio.get_running_loop().time()

        async def enter() -> None:
            nonlocal descended, closer, storing
            if self._separate_scans:
                await walker.descend(self._current_name)
                descended = True
            # The snapshot is from the run's start; it is stored in the run's entry while
            # the logger is registered and the run goes on.
            storing = asyncio.ensure_future(
                self._write_metadata("experiment_start.json", reading))
            level = getattr(logging, self._log_level.upper())
            closer = await walker.register_logger(self.log.name, level, "experiment.log")

        try:
            if walker is not None:
                if self._separate_scans:
                    self._current_name = await self._next_name()
                else:
                    self._current_name = str(getattr(walker, "current", ""))
                # The devices are read while the walker enters the run's entry.
                reading = asyncio.ensure_future(self.get_metadata())
                try:
                    await enter()
                except BaseException:
                    unfinished = [task for task in (reading, storing) if task is not None]
                    for task in unfinished:
                        task.cancel()
                    await asyncio.gather(*unfinished, return_exceptions=True)
                    storing = None
                    raise
            self.log.info("run %s started", self._current_name or self._iteration)
            try:
                await self.prepare()
                await self.acquire()
                await self.settle()
            finally:
                await self.finish()
        except asyncio.CancelledError:
            self.log.warning("run cancelled; cleaning up")
            await self._safe_cleanup()
            state.set_software("cancelled", "cancelled by the user")
            raise
        except Exception as error:
            self.log.error("run failed: %s: %s", type(error).__name__, error)
            await self._safe_cleanup()
            state.set_software("error", f"{type(error).__name__}: {error}")
            raise
        else:
            state.set_software("standby")
            self.log.info("run done in %.3f s", asyncio.get_running_loop().time() - began)
        finally:
            self._current_acquisition = ""
            if storing is not None:
                await storing  # logs its own failure
            try:  # after a failure or a cancel (a successful run has settled)
                await self.settle()
            except Exception:
                self.log.exception("run %s: storing what the acquisitions left",
                                   self._current_name or self._iteration)
            if walker is not None:
                await self._write_metadata(
                    "experiment_finish.json", state=state.last_value, message=state.message,
                    duration=asyncio.get_running_loop().time() - began,
                )
                # The log file is closed by its id: the walker may leave the entry meanwhile.
                ending = [closer.close()] if closer is not None else []
                if descended:
                    ending.append(walker.ascend())
                await run_together(ending)
            self._iteration += 1
            self.ready_to_prepare_next_sample.set()

    async def _safe_cleanup(self) -> None:
        try:
            await self.cleanup()
        except Exception:
            self.log.exception("cleanup failed")


__all__ = [
    "IDLE_STATES",
    "Acquisition",
    "Experiment",
    "FrameToken",
    "bound_endpoint",
    "jsonable",
    "read_parameters",
    "run_together",
    "stored",
]
