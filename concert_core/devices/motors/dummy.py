"""Simulated motors that move in time like real ones.

A motion runs at the motor's ``speed`` (continuous motors: at ``velocity``); the position
is computed from the elapsed time, so every read while moving gives the current value,
and it is announced with ``notify`` every ``update_interval``. A motion ends at its
target, on :meth:`stop`, :meth:`emergency_stop` or cancellation of the task running it
(the position stays where the motor was), or at a hard limit: the motor stops there,
the state becomes ``hard-limit`` and :class:`~concert_core.errors.HardLimitError` is
raised. A move back inside the limits works from ``hard-limit``.

A :meth:`step_scan` drives each step like a move (same speed, faults and hard limits)
without leaving ``moving`` in between, pulses the trigger output on arrival and waits
the dwell time; :meth:`stop` or cancellation ends it within the step or dwell it is in.
Like a motion controller it keeps to its own timeline (step ``i`` arrives at the start
plus ``i`` times travel and dwell): a step the host has held up (a busy machine) is
shortened until the scan is back on it, so the delay does not add up over the steps, and
each pulse carries the time the timeline planned for it.
While it runs the position is announced at most every ``update_interval`` (and at its
end), not after every step.

Fault injection (:meth:`inject_fault`), each fault acts once:

``"stall"``
    the next motion (position write, :meth:`move`, :meth:`home`, continuous motion) stops
    midway (a continuous one after 0.1 s) and the state becomes ``error``
    (:class:`~concert_core.errors.StateError`); :meth:`reset` leaves ``error``.
``"home"``
    the next :meth:`home` fails at once, state ``error``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import pint

from concert_core.coroutines.base import TIMER_RESOLUTION, sleep, start
from concert_core.dataplane.trigger import TriggerOutput
from concert_core.devices.motors import base
from concert_core.devices.simulation import SimulatedDevice
from concert_core.errors import HardLimitError, StateError, TransitionNotAllowed, UnitError
from concert_core.quantities import q
from concert_core.state import transition

LOG = logging.getLogger(__name__)

#: Faults the dummies can simulate, see :meth:`SimulatedDevice.inject_fault`.
FAULTS = {
    "stall": "the next motion stops midway and the motor goes to 'error' (StateError)",
    "home": "the next home() fails and the motor goes to 'error' (StateError)",
}
#: A stalling continuous motion stops after this time (s).
CONTINUOUS_STALL_TIME = 0.1
DEFAULT_SPEED = 100.0  # family unit per second
DEFAULT_UPDATE_INTERVAL = 0.02 * q.s
MAX_UPDATE_INTERVAL = 0.05  # s: position notifications at 20 Hz or more


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Motion:
    """A motion at constant velocity from ``p0`` at ``t0`` to ``end``, reached at ``t_end``."""

    __slots__ = ("continuous", "end", "hits_limit", "p0", "stalls", "t0", "t_end", "velocity")

    def __init__(self, continuous: bool, stalls: bool) -> None:
        self.continuous = continuous
        self.stalls = stalls
        self.p0 = self.t0 = self.t_end = self.end = self.velocity = 0.0
        self.hits_limit = False

    def at(self, now: float) -> float:
        """The position at time ``now``."""
        position = self.p0 + self.velocity * (now - self.t0)
        return min(position, self.end) if self.velocity >= 0 else max(position, self.end)


class _SimulatedMotor(SimulatedDevice):
    """The simulation shared by the dummy motors (positions are floats in the family unit)."""

    FAULTS = FAULTS

    # -- set-up ------------------------------------------------------------------------
    async def __ainit__(
        self,
        position: pint.Quantity | None = None,
        lower_hard_limit: pint.Quantity | None = None,
        upper_hard_limit: pint.Quantity | None = None,
        speed: pint.Quantity | None = None,
        update_interval: pint.Quantity | None = None,
    ) -> None:
        """``position`` (0 mm or deg), hard limits (none), ``speed`` (100 mm/s or deg/s) and
        ``update_interval`` of position notifications while moving (20 ms, at most 50 ms)."""
        await super().__ainit__()
        self._setup_simulation(position, lower_hard_limit, upper_hard_limit, speed,
                               update_interval)

    def _setup_simulation(
        self,
        position: pint.Quantity | None,
        lower_hard_limit: pint.Quantity | None,
        upper_hard_limit: pint.Quantity | None,
        speed: pint.Quantity | None,
        update_interval: pint.Quantity | None,
    ) -> None:
        quantity = self["position"].parameter
        self._unit = quantity.unit
        self._speed_unit = self._unit / q.s

        def magnitude(value: Any, what: str) -> float | None:
            return None if value is None else float(quantity.convert(value, what).magnitude)

        self._lower_hard = magnitude(lower_hard_limit, "lower_hard_limit")
        self._upper_hard = magnitude(upper_hard_limit, "upper_hard_limit")
        self._position = magnitude(position, "position") or 0.0
        if (self._lower_hard is not None and self._upper_hard is not None
                and self._lower_hard >= self._upper_hard):
            raise ValueError("lower_hard_limit must lie below upper_hard_limit")
        if not self._inside_hard_limits(self._position):
            raise ValueError(f"position {self._position} {self._unit:~} lies outside the "
                             "hard limits")
        self._speed = DEFAULT_SPEED if speed is None else _to_float(speed, self._speed_unit,
                                                                     "speed")
        if not self._speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        interval = DEFAULT_UPDATE_INTERVAL if update_interval is None else update_interval
        self._interval = _to_float(interval, q.s, "update_interval")
        if not 0 < self._interval <= MAX_UPDATE_INTERVAL:
            raise ValueError(f"update_interval must lie in (0, {MAX_UPDATE_INTERVAL}] s, "
                             f"got {update_interval}")
        self._target = self._position
        self._motion: _Motion | None = None
        self._waiter: asyncio.Future | None = None
        self._stop_requested = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._continuous_task: asyncio.Task | None = None
        self._scan_done: asyncio.Event | None = None  # set while a step scan runs

    def _inside_hard_limits(self, position: float) -> bool:
        return ((self._lower_hard is None or position >= self._lower_hard)
                and (self._upper_hard is None or position <= self._upper_hard))

    def _quantity(self, magnitude: float) -> pint.Quantity:
        return q.Quantity(magnitude, self._unit)

    def _current(self) -> float:
        motion = self._motion
        return self._position if motion is None else motion.at(time.monotonic())

    # -- accessors ---------------------------------------------------------------------
    async def _get_position(self) -> pint.Quantity:
        return self._quantity(self._current())

    async def _get_target_position(self) -> pint.Quantity:
        return self._quantity(self._target)

    @transition(immediate="moving", target="standby")
    async def _set_position(self, position: pint.Quantity) -> None:
        target = float(position.magnitude)
        self._target = target
        velocity = math.copysign(self._speed, target - self._position)
        await self._drive(_Motion(False, self.take_fault("stall")), velocity, target)

    # -- motion ------------------------------------------------------------------------
    def _plan(self, motion: _Motion, p0: float, velocity: float, target: float | None,
              start: float | None = None) -> None:
        """Set ``motion`` to start at ``p0`` with ``velocity`` towards ``target``, at the
        monotonic time ``start`` (None: now)."""
        motion.p0, motion.velocity = p0, velocity
        motion.t0 = time.monotonic() if start is None else start
        limit = self._upper_hard if velocity >= 0 else self._lower_hard

        def beyond(position: float | None) -> bool:
            if limit is None:
                return False
            return position is None or (position > limit if velocity >= 0 else position < limit)

        end = target
        motion.hits_limit = False
        if beyond(end):
            end, motion.hits_limit = limit, True
        if motion.stalls:
            # midway, or for a continuous motion after CONTINUOUS_STALL_TIME
            stall_at = (p0 + velocity * CONTINUOUS_STALL_TIME if target is None
                        else (p0 + target) / 2)
            if beyond(stall_at):  # the hard limit comes first
                motion.stalls = False
            else:
                end, motion.hits_limit = stall_at, False
        if end is None:
            end = math.copysign(math.inf, velocity)
        motion.end = end
        if end == p0:
            motion.t_end = motion.t0
        else:
            motion.t_end = motion.t0 + (end - p0) / velocity

    async def _drive(self, motion: _Motion, velocity: float, target: float | None,
                     announce: bool = True, start: float | None = None) -> None:
        """Run ``motion`` with ``velocity`` to ``target`` (None: until stopped), from the
        monotonic time ``start`` (None: now; a time past shortens the wait for the end).

        ``announce=False`` (a step of a scan): neither the end position nor the velocity
        is notified; the caller announces them."""
        self._plan(motion, self._position, velocity, target, start)
        self._motion = motion
        self._stop_requested = False
        self._idle.clear()
        if announce:
            self._announce_velocity()
        notify = self["position"].notify
        interval = self._interval
        reached = False
        try:
            while not self._stop_requested:
                remaining = motion.t_end - time.monotonic()
                if remaining <= 0:
                    reached = True
                    break
                # The last tick ends exactly at the motion's end.
                await self._pause(min(interval, remaining), precise=remaining <= interval)
                if remaining > interval and not self._stop_requested:
                    notify(self._quantity(motion.at(time.monotonic())))
        finally:
            self._position = motion.end if reached else motion.at(time.monotonic())
            self._motion = None
            self._idle.set()
            if announce:
                notify(self._quantity(self._position))
                self._announce_velocity()
        # The state machine follows synchronously (@transition of the caller), so whoever
        # waits for _idle sees the final state.
        if not reached:
            return
        if motion.stalls:
            raise StateError("error", f"motor stalled at {self._position:g} {self._unit:~}")
        if motion.hits_limit:
            raise HardLimitError(f"hard limit reached at {self._position:g} {self._unit:~}")

    async def _pause(self, seconds: float, precise: bool = False) -> None:
        """Sleep ``seconds``; :meth:`_request_stop` ends the sleep early. A loop timer
        overshoots by up to a millisecond: ``precise`` (a scan's dwell, a motion's last
        tick) waits its last millisecond with :func:`~concert_core.coroutines.sleep` (a
        timerfd, then a few microseconds of yielding) instead."""
        deadline = time.monotonic() + seconds
        timed = seconds - TIMER_RESOLUTION if precise else seconds
        if timed >= TIMER_RESOLUTION:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            handle = loop.call_later(timed, _wake, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._waiter = None
        rest = deadline - time.monotonic()
        if rest > 0 and not self._stop_requested:  # a timer would take a whole millisecond
            await sleep(rest, stop=lambda: self._stop_requested, precise=precise)

    def _request_stop(self) -> None:
        self._stop_requested = True
        if self._waiter is not None:
            _wake(self._waiter)

    def _announce_velocity(self) -> None:
        """Continuous motors tell velocity observers when a motion starts or ends."""

    # -- operations ----------------------------------------------------------------------
    @transition(immediate="moving", target="standby")
    async def _home(self) -> None:
        if self.take_fault("home"):
            raise StateError("error", "homing failed (injected fault 'home')")
        self._target = 0.0
        velocity = math.copysign(self._speed, -self._position)
        await self._drive(_Motion(False, self.take_fault("stall")), velocity, 0.0)

    async def _stop(self) -> None:
        scan = self._scan_done
        if scan is not None:  # ends the scan in the step or dwell it is in
            self._request_stop()
            await scan.wait()
        elif self._motion is not None:
            self._request_stop()
            await self._idle.wait()

    async def _step_scan(self, start: pint.Quantity, step: pint.Quantity, num: int,
                         dwell: float, output: TriggerOutput) -> None:
        if self._motion is not None or self._scan_done is not None:
            raise TransitionNotAllowed("step_scan: the motor started another motion meanwhile")
        done = self._scan_done = asyncio.Event()
        try:
            await self._run_step_scan(float(start.magnitude), float(step.magnitude), num,
                                      dwell, output)
        finally:  # after the state has left 'moving': a waiting stop() sees it at rest
            self._scan_done = None
            done.set()

    @transition(immediate="moving", target="standby")
    async def _run_step_scan(self, p0: float, step: float, num: int, dwell: float,
                             output: TriggerOutput) -> None:
        self._stop_requested = False
        notify = self["position"].notify
        announced = clock = time.monotonic()  # clock: where the scan's timeline is
        to_wall = time.time() - clock  # pulses carry their planned time
        velocity = math.copysign(self._speed, step)
        try:
            for index in range(num):
                if index:
                    self._target = target = p0 + index * step
                    motion = _Motion(False, self.take_fault("stall"))
                    await self._drive(motion, velocity, target, announce=False, start=clock)
                    if self._stop_requested:
                        return
                    clock = motion.t_end
                    if time.monotonic() - announced >= self._interval:
                        announced = time.monotonic()
                        notify(self._quantity(self._position))
                output.pulse(index, clock + to_wall)
                clock += dwell
                rest = clock - time.monotonic()
                if rest > 0:
                    await self._pause(rest, precise=True)
                else:  # on time already (or a null dwell): let the loop, and stop(), in
                    await asyncio.sleep(0)
                if self._stop_requested:
                    return
        finally:
            notify(self._quantity(self._position))

    async def _emergency_stop(self) -> None:
        await self._stop()

    @transition(target="disabled")
    async def _disable(self) -> None:
        pass

    @transition(target="standby")
    async def _enable(self) -> None:
        pass

    @transition(target="standby")
    async def _reset(self) -> None:
        pass

class _SimulatedContinuousMotor(_SimulatedMotor):
    """Adds the constant-velocity motion of continuous motors."""

    async def __ainit__(
        self,
        position: pint.Quantity | None = None,
        lower_hard_limit: pint.Quantity | None = None,
        upper_hard_limit: pint.Quantity | None = None,
        speed: pint.Quantity | None = None,
        velocity: pint.Quantity | None = None,
        update_interval: pint.Quantity | None = None,
    ) -> None:
        """As the positional motors; a non-zero ``velocity`` starts a constant motion at once."""
        await super().__ainit__(position, lower_hard_limit, upper_hard_limit, speed,
                                update_interval)
        if velocity is not None:
            await self.set_velocity(velocity)

    async def _get_velocity(self) -> pint.Quantity:
        motion = self._motion
        return q.Quantity(0.0 if motion is None else motion.velocity, self._speed_unit)

    async def _set_velocity(self, velocity: pint.Quantity) -> None:
        if self._scan_done is not None:
            raise TransitionNotAllowed("setting the velocity is not allowed during a step "
                                       "scan; stop it first")
        value = float(velocity.magnitude)
        motion = self._motion
        if motion is not None:
            if not motion.continuous:
                raise TransitionNotAllowed(
                    "setting the velocity is not allowed during a positional motion; stop it first"
                )
            if value == 0:
                await self._stop()
            else:
                self._plan(motion, motion.at(time.monotonic()), value, None)
                if self._waiter is not None:
                    _wake(self._waiter)  # the motion loop picks up the new plan
                self._announce_velocity()
            return
        if value == 0:
            return
        task = self._continuous_task = start(self._continuous(value))
        await asyncio.sleep(0)  # the task enters 'moving' (or fails at a hard limit) now
        if task.done() and not task.cancelled():
            error = task.result()
            if error is not None:
                raise error

    async def _continuous(self, velocity: float) -> StateError | None:
        """Background task of a continuous motion; returns the error that ended it."""
        try:
            await self._run_continuous(velocity)
        except StateError as error:  # the state and its message show it
            LOG.info("%s: continuous motion ended: %s", type(self).__name__, error)
            return error
        finally:
            self._continuous_task = None
        return None

    @transition(immediate="moving", target="standby")
    async def _run_continuous(self, velocity: float) -> None:
        await self._drive(_Motion(True, self.take_fault("stall")), velocity, None)

    def _announce_velocity(self) -> None:
        motion = self._motion
        self["velocity"].notify(q.Quantity(0.0 if motion is None else motion.velocity,
                                           self._speed_unit))


def _to_float(value: Any, unit: Any, what: str) -> float:
    try:
        return float(value.to(unit).magnitude)
    except (AttributeError, pint.DimensionalityError):
        raise UnitError(f"{what}: {value!r} cannot be expressed in {unit:~}") from None


class LinearMotor(_SimulatedMotor, base.LinearMotor):
    """A simulated linear motor (see the module's documentation)."""


class ContinuousLinearMotor(_SimulatedContinuousMotor, base.ContinuousLinearMotor):
    """A simulated linear motor with a constant-velocity mode."""


class RotationMotor(_SimulatedMotor, base.RotationMotor):
    """A simulated rotation motor (see the module's documentation)."""


class ContinuousRotationMotor(_SimulatedContinuousMotor, base.ContinuousRotationMotor):
    """A simulated rotation motor with a constant-velocity mode."""


__all__ = [
    "FAULTS",
    "ContinuousLinearMotor",
    "ContinuousRotationMotor",
    "LinearMotor",
    "RotationMotor",
]
