"""The :class:`ExperimentDirector`: an imaging experiment on remote devices, as a concert
device. The ``ConcertDirector`` server publishes it through the generic bridge as the Tango
class ``ExperimentDirector`` (e.g. ``concert/director/1``).

Its Tango device properties (``tango_properties``) name the experiment and its devices:
``experiment_type`` (``Radiography``, ``SteppedTomography``, ``ContinuousTomography``,
``SteppedSpiralTomography``, ``ContinuousSpiralTomography``,
``GratingInterferometryStepping``), the Tango names of ``camera``, ``walker`` (a
``ConcertWalker`` device), ``flat_motor``, ``tomography_motor``, ``vertical_motor``,
``stepping_motor``, ``shutter`` and ``storage_ring`` (synchrotron variant) or ``xray_tube``
(X-ray-tube variant), and ``parameters``, a JSON object of the experiment's constructor
arguments (quantities as strings, ``{"num_projections": 360, "angular_range": "180 deg"}``)
plus ``num_iterations``.

The experiment's parameters become attributes of the device (``num_darks``, ``num_flats``,
``num_projections``, ``angular_range``, ...; writable while idle) next to the progress
(``iteration``, ``num_iterations``, ``iterations_done``, ``current_acquisition``,
``current_name``, ``frames_done``, ``frames_total``, ``progress``, ``paused``). The remote
devices are connected at the first ``Start``, so the director comes up before the servers
it drives. Frames go from the camera server straight to the walker server
(:class:`~experiments.addons.RemoteImageWriter`); the director only sends commands.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from typing import Any, ClassVar

import pint

from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.errors import TransitionNotAllowed
from concert_core.parameter import Parameter, Quantity
from concert_core.quantities import q
from concert_core.state import State
from experiments import synchrotron, xraytube
from experiments.addons import RemoteImageWriter
from experiments.base import count, positive_count

#: Experiment types a director can run (class names of :mod:`experiments.imaging`).
EXPERIMENT_TYPES = ("Radiography", "SteppedTomography", "ContinuousTomography",
                    "SteppedSpiralTomography", "ContinuousSpiralTomography",
                    "GratingInterferometryStepping")
#: Constructor arguments that are devices, given as Tango names (device properties).
DEVICE_ARGUMENTS = ("camera", "flat_motor", "tomography_motor", "vertical_motor",
                    "stepping_motor", "shutter", "storage_ring", "xray_tube")
#: How often the progress attributes are refreshed while running (s).
_PROGRESS_PERIOD = 0.1
_COUNTS = {"num_darks", "num_flats", "num_projections"}
_POSITIVE = {"num_periods", "num_steps_per_period"}


def experiment_class(experiment_type: str, source: str) -> type:
    """The experiment class of ``experiment_type`` for ``source`` (``shutter`` or
    ``xray_tube``)."""
    if experiment_type not in EXPERIMENT_TYPES:
        raise ValueError(f"experiment_type {experiment_type!r} is not one of "
                         f"{', '.join(EXPERIMENT_TYPES)}")
    module = xraytube if source == "xray_tube" else synchrotron
    return getattr(module, experiment_type)


def _own_arguments(cls: type) -> dict[str, inspect.Parameter]:
    """The constructor arguments of ``cls`` that are experiment parameters (not devices)."""
    signature = inspect.signature(cls.__ainit__)
    return {name: parameter for name, parameter in signature.parameters.items()
            if name not in ("self", "walker", "separate_scans", *DEVICE_ARGUMENTS)}


class ExperimentDirector(Device):
    """Runs an imaging experiment built from its device properties on remote devices
    (``Start``, ``Pause``, ``Resume``, ``Abort``); frames go camera server -> walker
    server directly."""

    tango_properties: ClassVar[dict[str, type]] = {
        "experiment_type": str, "walker": str, "parameters": str,
        **dict.fromkeys(DEVICE_ARGUMENTS, str)}

    state = State(default="standby", help="standby: idle (ON); running: an experiment runs, "
                  "also while paused (RUNNING); error: the last run failed, reason in Status "
                  "(FAULT)")
    experiment_type = Parameter(help="Class of the experiment (device property)")
    iteration = Parameter(help="Index of the current (or last) iteration, from 0")
    num_iterations = Parameter(help="Runs of the experiment per Start (written while idle)")
    iterations_done = Parameter(help="Iterations completed by the current (or last) Start")
    current_acquisition = Parameter(help="Acquisition running now ('' if none)")
    current_name = Parameter(help="Walker entry of the current (or last) run, e.g. scan_0001")
    frames_done = Parameter(help="Frames acquired since Start")
    frames_total = Parameter(help="Frames a Start acquires")
    progress = Parameter(help="frames_done / frames_total (0..1)")
    paused = Parameter(help="True after Pause until Resume; the run waits before the next "
                       "acquisition or iteration")

    async def __ainit__(
        self,
        experiment_type: str = "SteppedTomography",
        walker: str = "",
        camera: str = "",
        flat_motor: str = "",
        tomography_motor: str = "",
        vertical_motor: str = "",
        stepping_motor: str = "",
        shutter: str = "",
        storage_ring: str = "",
        xray_tube: str = "",
        parameters: str = "{}",
    ) -> None:
        await super().__ainit__()
        if not walker or not camera:
            raise ValueError("a director needs the Tango names of a camera and a walker "
                             "(device properties 'camera' and 'walker')")
        if bool(shutter) == bool(xray_tube):
            raise ValueError("a director needs exactly one source: 'shutter' or 'xray_tube'")
        self._type = experiment_type
        self._class = experiment_class(experiment_type, "shutter" if shutter else "xray_tube")
        self._names = {"walker": walker, "camera": camera, "flat_motor": flat_motor,
                       "tomography_motor": tomography_motor, "vertical_motor": vertical_motor,
                       "stepping_motor": stepping_motor, "shutter": shutter,
                       "storage_ring": storage_ring, "xray_tube": xray_tube}
        arguments = _own_arguments(self._class)
        signature = inspect.signature(self._class.__ainit__).parameters
        missing = [name for name in (*DEVICE_ARGUMENTS, "walker") if name in signature
                   and not self._names.get(name)
                   and signature[name].default is inspect.Parameter.empty]
        if missing:
            raise ValueError(f"{experiment_type} needs the device properties "
                             f"{', '.join(missing)}")
        given = json.loads(parameters or "{}")
        if not isinstance(given, dict):
            raise ValueError(f"parameters must be a JSON object, not {parameters!r}")
        self._num_iterations = positive_count(given.pop("num_iterations", 1))
        unknown = set(given) - set(arguments)
        if unknown:
            raise ValueError(f"{experiment_type} has no parameters {sorted(unknown)}; "
                             f"known: {sorted(arguments)}")
        self._values: dict[str, Any] = {}
        installed: dict[str, Parameter] = {}
        for name, argument in arguments.items():
            declared = self._class._class_parameters.get(name)
            if name in given:
                value = given[name]
            elif argument.default is not inspect.Parameter.empty:
                value = argument.default
            else:
                raise ValueError(f"{experiment_type} needs the parameter {name!r} "
                                 "(device property 'parameters')")
            self._values[name] = self._convert(name, declared, value)
            installed[name] = self._mirror(name, declared)
        self.install_parameters(installed)
        self._devices: dict[str, Any] = {}
        self._walker: Any = None
        self.experiment: Any = None
        self.writer: RemoteImageWriter | None = None
        self._task: asyncio.Task | None = None
        self._iteration = self._iterations_done = self._frames_before = 0
        self._frames_done = 0
        self._current_acquisition = self._current_name = ""
        self._resumed = asyncio.Event()
        self._resumed.set()

    # -- experiment parameters as attributes ---------------------------------------------
    @staticmethod
    def _convert(name: str, declared: Any, value: Any) -> Any:
        if isinstance(declared, Quantity):
            quantity = q.Quantity(value) if isinstance(value, str) else value
            if not isinstance(quantity, pint.Quantity):
                quantity = quantity * declared.unit
            return quantity.to(declared.unit)
        if name in _POSITIVE:
            return positive_count(value)
        if name in _COUNTS:
            return count(value)
        return value

    def _mirror(self, name: str, declared: Any) -> Parameter:
        async def fget(device: ExperimentDirector) -> Any:
            return device._values[name]

        async def fset(device: ExperimentDirector, value: Any) -> None:
            device._idle(f"{name} cannot change")
            device._values[name] = device._convert(name, declared, value)
            device["frames_total"].notify(device._get_total())

        help_text = getattr(declared, "help", None) or f"{name} of the experiment"
        if isinstance(declared, Quantity):
            return Quantity(declared.unit, fget=fget, fset=fset, help=help_text)
        return Parameter(fget=fget, fset=fset, help=help_text)

    def _idle(self, what: str) -> None:
        if self._task is not None and not self._task.done():
            raise TransitionNotAllowed(f"{what} while the director runs")

    async def _get_experiment_type(self) -> str:
        return self._type

    async def _get_iteration(self) -> int:
        return self._iteration

    async def _get_num_iterations(self) -> int:
        return self._num_iterations

    async def _set_num_iterations(self, value: int) -> None:
        self._idle("num_iterations cannot change")
        self._num_iterations = positive_count(value)
        self["frames_total"].notify(self._get_total())

    async def _get_iterations_done(self) -> int:
        return self._iterations_done

    async def _get_current_acquisition(self) -> str:
        return self._current_acquisition

    async def _get_current_name(self) -> str:
        return self._current_name

    async def _get_frames_done(self) -> int:
        return self._frames_done

    def _get_total(self) -> int:
        values = self._values
        if "num_periods" in values:
            per_run = values["num_darks"] + 2 * values["num_periods"] * \
                values["num_steps_per_period"]
        else:
            projections = values["num_projections"]
            if "vertical_shift_per_tomogram" in values:
                ratio = abs(float((values["sample_height"] / values["vertical_shift_per_tomogram"])
                                  .to(q.dimensionless).magnitude))
                projections *= max(1, math.ceil(ratio - 1e-9))
            per_run = values["num_darks"] + values["num_flats"] + projections
        return int(per_run * self._num_iterations)

    async def _get_frames_total(self) -> int:
        return self._get_total()

    async def _get_progress(self) -> float:
        total = self._get_total()
        return self._frames_done / total if total else 1.0

    async def _get_paused(self) -> bool:
        return not self._resumed.is_set()

    # -- building ---------------------------------------------------------------------------
    async def _connect(self) -> None:
        """Connect the remote devices and the walker (once; proxies reconnect by themselves)."""
        from concert_core.remote import TangoDevice
        from walkers.remote import RemoteDirectoryWalker

        for name, tango_name in self._names.items():
            if not tango_name or name in self._devices or name == "walker":
                continue
            try:
                self._devices[name] = await TangoDevice(tango_name)
            except Exception as error:
                raise type(error)(f"cannot connect {name} {tango_name}: {error}") from error
        if self._walker is None:
            try:
                self._walker = await RemoteDirectoryWalker(self._names["walker"])
            except Exception as error:
                raise type(error)(f"cannot connect walker {self._names['walker']}: "
                                  f"{error}") from error

    async def _build(self) -> Any:
        """A new experiment with the current parameter values and a RemoteImageWriter."""
        signature = inspect.signature(self._class.__ainit__)
        arguments: dict[str, Any] = {"walker": self._walker, "separate_scans": True}
        for name in signature.parameters:
            if name in self._devices:
                arguments[name] = self._devices[name]
        arguments.update(self._values)
        experiment = await self._class(**arguments)
        self.writer = RemoteImageWriter(experiment, self._walker)
        return experiment

    # -- commands --------------------------------------------------------------------------
    @background
    async def start(self) -> None:
        """Run the experiment ``num_iterations`` times; returns once running. State ON when
        done, FAULT with the reason in Status when it fails."""
        self._idle("Start is refused")
        self._task = asyncio.current_task()
        self._resumed.set()
        self["paused"].notify(False)
        self._frames_done = self._frames_before = self._iterations_done = 0
        self["state"].set_software("running")
        reporter = asyncio.ensure_future(self._report())
        try:
            await self._connect()
            for index in range(self._num_iterations):
                self._iteration = index
                await self._gate(f"before iteration {index}")
                self.experiment = experiment = await self._build()
                experiment.before_acquisition = self._before_acquisition
                try:
                    await experiment.run()
                finally:
                    self._refresh_progress()
                    self._frames_before = self._frames_done
                self._iterations_done += 1
                self._current_acquisition = ""
        except asyncio.CancelledError:
            self["state"].set_software("standby", "aborted by the user")
            raise
        except Exception as error:
            where = f" ({self._current_acquisition})" if self._current_acquisition else ""
            self["state"].set_software("error", f"{type(error).__name__}{where}: {error}")
        else:
            self["state"].set_software("standby")
        finally:
            reporter.cancel()
            self._task = None
            self._refresh_progress()

    async def _before_acquisition(self, name: str) -> None:
        await self._gate(f"before {name}")
        self._current_acquisition = name

    async def _gate(self, where: str) -> None:
        if not self._resumed.is_set():
            self["state"].set_software("running", f"paused {where}; Resume continues")
            await self._resumed.wait()
            self["state"].set_software("running")

    async def pause(self) -> None:
        """Wait before the next acquisition or iteration until ``Resume`` (the current
        acquisition runs to its end)."""
        self._resumed.clear()
        self["paused"].notify(True)

    async def resume(self) -> None:
        """Continue a paused run."""
        self._resumed.set()
        self["paused"].notify(False)

    async def abort(self) -> None:
        """Cancel the run: the experiment cleans up (motors stopped, beam off, camera
        stopped, the partial data set removed by the walker); state ON, Status says
        aborted."""
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            self._resumed.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _emergency_stop(self) -> None:
        await self.abort()

    # -- progress -----------------------------------------------------------------------------
    def _refresh_progress(self) -> None:
        experiment = self.experiment
        if experiment is not None:
            if experiment["state"].last_value == "running":
                self._current_acquisition = experiment._current_acquisition
            self._current_name = experiment._current_name
            # a new experiment per iteration: its acquisitions count this iteration only
            self._frames_done = self._frames_before + sum(
                acquisition.num_items for acquisition in experiment.acquisitions)
        self._frames_done = min(self._frames_done, self._get_total())
        for name, value in (("frames_done", self._frames_done),
                            ("progress", self._frames_done / max(self._get_total(), 1)),
                            ("current_acquisition", self._current_acquisition),
                            ("current_name", self._current_name),
                            ("iteration", self._iteration),
                            ("iterations_done", self._iterations_done)):
            if self[name].last_value != value:
                self[name].notify(value)

    async def _report(self) -> None:
        while True:
            self._refresh_progress()
            await asyncio.sleep(_PROGRESS_PERIOD)


__all__ = ["DEVICE_ARGUMENTS", "EXPERIMENT_TYPES", "ExperimentDirector", "experiment_class"]
