"""Directors run an experiment many times: samples in a row, positions of a scan, ...

A :class:`Director` runs ``num_iterations`` iterations of its experiment. Before iteration
``i`` it calls ``_prepare_run(i)`` (change the sample, move motors, adjust parameters); the
preparation of the next iteration starts as soon as the running experiment sets its
``ready_to_prepare_next_sample`` event (at the latest when it ends), so it overlaps with the
end of the current run. Every iteration gets its own entry (``_get_iteration_name``) in the
experiment's walker, which is why the experiment should use ``separate_scans=False``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pint

from concert_core.coroutines.base import background, cancel_and_wait
from concert_core.devices.motors.base import LinearMotor
from concert_core.errors import TransitionNotAllowed
from concert_core.parameter import Parameter, Quantity
from concert_core.parameterizable import Parameterizable
from concert_core.quantities import q
from concert_core.state import State
from experiments.base import (
    IDLE,
    IDLE_STATES,
    Experiment,
    jsonable,
    positive_count,
    run_together,
    stored,
)


class Director(Parameterizable):
    """Runs ``experiment`` ``num_iterations`` times (subclasses usually compute the number in
    ``_get_number_of_iterations`` and prepare each run in ``_prepare_run``).

    :meth:`run` starts a background task; :meth:`pause` makes it wait before the next
    iteration (state ``paused``) until :meth:`resume`. Cancelling the task cancels the
    running experiment (which cleans up) and leaves state ``cancelled``; a failing
    experiment or preparation leaves ``error`` with the message.
    """

    state = State(default="standby", help="standby, running, paused, cancelled or error")
    iteration = Parameter(fget=stored("iteration")[0],
                          help="Index of the current (or last) iteration, from 0")
    iterations_done = Parameter(fget=stored("iterations_done")[0],
                                help="Iterations completed in the current (or last) run")
    num_iterations = Parameter(help="Number of iterations of a run")
    pause_requested = Parameter(fget=stored("pause_requested")[0],
                                help="True after pause() until resume()")

    async def __ainit__(self, experiment: Experiment, num_iterations: int = 1) -> None:
        await super().__ainit__()
        self.experiment = experiment
        self._num_iterations = positive_count(num_iterations)
        self._iteration = 0
        self._iterations_done = 0
        self._pause_requested = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        if experiment.walker is not None and await experiment.get_separate_scans():
            self.logger.warning("the experiment has separate_scans=True: every iteration gets "
                                "a scan entry inside the director's entry")

    # -- to override --------------------------------------------------------------------
    async def _get_num_iterations(self) -> int:
        return await self._get_number_of_iterations()

    async def _get_number_of_iterations(self) -> int:
        """Number of iterations (``num_iterations`` of the constructor by default)."""
        return self._num_iterations

    async def _prepare_run(self, iteration: int) -> None:
        """Prepare iteration ``iteration`` (nothing by default)."""

    def _get_iteration_name(self, iteration: int) -> str:
        """Name of the walker entry of ``iteration``."""
        return f"iteration_{iteration:>04}"

    async def _get_iteration_metadata(self, iteration: int) -> dict[str, Any]:
        """Metadata written as ``director.json`` into the iteration's entry."""
        return {"director": type(self).__name__, "iteration": iteration}

    # -- pause / resume ---------------------------------------------------------------------
    async def pause(self) -> None:
        """Wait before the next iteration (the current one, and the preparation of the next,
        run to their end) until :meth:`resume`."""
        self._pause_requested = True
        self._resumed.clear()

    async def resume(self) -> None:
        """Continue a paused run."""
        self._pause_requested = False
        self._resumed.set()

    # -- running ----------------------------------------------------------------------------
    @background
    async def run(self) -> None:
        """Run all iterations (a background task)."""
        state = self["state"]
        if state.last_value not in IDLE_STATES:
            raise TransitionNotAllowed(f"the director is {state.last_value}")
        state.set_software("running")
        self._iterations_done = 0
        experiment = self.experiment
        walker = experiment.walker
        preparation: asyncio.Future | None = None
        try:
            total = await self._get_number_of_iterations()
            await self._prepare_run(0)
            for index in range(total):
                self._iteration = index
                if index and not self._resumed.is_set():
                    state.set_software("paused")
                    await self._resumed.wait()
                    state.set_software("running")
                descended = False
                if walker is not None:
                    await walker.descend(self._get_iteration_name(index))
                    descended = True
                try:
                    if walker is not None:
                        await walker.log_to_json(
                            jsonable(await self._get_iteration_metadata(index)), "director.json")
                    experiment.ready_to_prepare_next_sample.clear()
                    run = experiment.run()
                    ready = asyncio.ensure_future(experiment.ready_to_prepare_next_sample.wait())
                    try:
                        await asyncio.wait({run, ready}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        await cancel_and_wait(ready)
                        if not run.done() and asyncio.current_task().cancelling():
                            await cancel_and_wait(run)
                    if index + 1 < total and not (run.done() and run.exception() is not None):
                        preparation = asyncio.ensure_future(self._prepare_run(index + 1))
                    try:
                        await run
                    finally:
                        await cancel_and_wait(run)
                    self._iterations_done += 1
                    if preparation is not None:
                        await preparation
                        preparation = None
                finally:
                    if descended:
                        await walker.ascend()
        except asyncio.CancelledError:
            await cancel_and_wait(preparation)
            state.set_software("cancelled", "cancelled by the user")
            raise
        except Exception as error:
            await cancel_and_wait(preparation)
            state.set_software("error", f"{type(error).__name__}: {error}")
            raise
        state.set_software("standby")


class XYScan(Director):
    """Runs the experiment at every point of a grid in the x-y plane: x from ``x_min`` to
    ``x_max`` (inclusive) in steps of ``x_step`` along each row, rows from ``y_min`` to
    ``y_max`` in steps of ``y_step``. Every position gets its own walker entry
    (``x_000_y_000``, ...) with the positions in ``director.json``."""

    x_min = Quantity(q.mm, *stored("x_min"), check=IDLE, help="First x position")
    x_max = Quantity(q.mm, *stored("x_max"), check=IDLE, help="Last x position")
    x_step = Quantity(q.mm, *stored("x_step"), check=IDLE, help="Step in x")
    y_min = Quantity(q.mm, *stored("y_min"), check=IDLE, help="First y position")
    y_max = Quantity(q.mm, *stored("y_max"), check=IDLE, help="Last y position")
    y_step = Quantity(q.mm, *stored("y_step"), check=IDLE, help="Step in y")

    async def __ainit__(
        self,
        experiment: Experiment,
        x_motor: LinearMotor,
        y_motor: LinearMotor,
        x_min: pint.Quantity,
        x_max: pint.Quantity,
        x_step: pint.Quantity,
        y_min: pint.Quantity,
        y_max: pint.Quantity,
        y_step: pint.Quantity,
    ) -> None:
        self._x_motor = x_motor
        self._y_motor = y_motor
        for name, value in (("x_min", x_min), ("x_max", x_max), ("x_step", x_step),
                            ("y_min", y_min), ("y_max", y_max), ("y_step", y_step)):
            setattr(self, "_" + name, self[name].parameter.convert(value))
        self.positions()  # refuses a bad grid now
        await super().__ainit__(experiment)

    @staticmethod
    def _axis(first: pint.Quantity, last: pint.Quantity, step: pint.Quantity
              ) -> list[pint.Quantity]:
        if step.magnitude <= 0:
            raise ValueError(f"step must be positive, got {step:~}")
        span = float(((last - first) / step).to(q.dimensionless).magnitude)
        if span < 0:
            raise ValueError(f"the last position {last:~} lies before the first {first:~}")
        return [first + i * step for i in range(math.floor(span + 1e-9) + 1)]

    def positions(self) -> list[tuple[pint.Quantity, pint.Quantity]]:
        """The (x, y) positions in the order they are visited."""
        xs = self._axis(self._x_min, self._x_max, self._x_step)
        ys = self._axis(self._y_min, self._y_max, self._y_step)
        return [(x, y) for y in ys for x in xs]

    def _indices(self, iteration: int) -> tuple[int, int]:
        columns = len(self._axis(self._x_min, self._x_max, self._x_step))
        return iteration % columns, iteration // columns

    async def _get_number_of_iterations(self) -> int:
        return len(self.positions())

    async def _prepare_run(self, iteration: int) -> None:
        x, y = self.positions()[iteration]
        await run_together([self._x_motor.set_position(x), self._y_motor.set_position(y)])

    def _get_iteration_name(self, iteration: int) -> str:
        ix, iy = self._indices(iteration)
        return f"x_{ix:>03}_y_{iy:>03}"

    async def _get_iteration_metadata(self, iteration: int) -> dict[str, Any]:
        x, y = self.positions()[iteration]
        metadata = await super()._get_iteration_metadata(iteration)
        metadata.update(x=x, y=y)
        return metadata


__all__ = ["Director", "XYScan"]
