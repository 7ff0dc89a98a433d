"""Motors: linear and rotational, positioned or continuously moving.

Every motor has a ``position`` (``mm`` or ``deg``) that can be written in states
``standby`` and ``hard-limit`` only, a relative :meth:`move`, :meth:`home`,
:meth:`stop`, :meth:`enable`/:meth:`disable` and :meth:`reset` (leave ``error``).
Continuous motors add a ``velocity``: writing a non-zero value starts a constant
motion in its direction, writing zero stops it.

Hardware-timed "step and shoot": :meth:`~_PositionMixin.step_scan` moves step by step
and pulses the motor's ``trigger_output`` (a simulated TTL line, see
:mod:`concert_core.dataplane.trigger`) at every position, with no software round trip
per step; a camera listening with ``trigger_input`` in trigger_source EXTERNAL exposes
one frame per pulse.

States: ``standby``, ``moving``, ``hard-limit``, ``disabled``, ``error``.
Implementations provide ``_get_position``/``_set_position`` (and ``_get_velocity``/
``_set_velocity``), ``_home``, ``_stop``, ``_enable``, ``_disable``, ``_reset`` and
``_step_scan``; the state machine moves through ``@transition`` on those.
"""

from __future__ import annotations

import operator
import weakref
from typing import Any

import pint

from concert_core.arguments import InUnitOf
from concert_core.coroutines.base import background
from concert_core.dataplane.sender import resolve_endpoint
from concert_core.dataplane.trigger import TriggerError, TriggerOutput
from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError, UnitError
from concert_core.parameter import Parameter, Quantity
from concert_core.quantities import q
from concert_core.state import State, check

#: States in which a motor may start a motion.
MOTION_SOURCES = ["standby", "hard-limit"]
#: States a finished (not failed) motion leaves the motor in.
MOTION_TARGETS = ["standby", "hard-limit"]
#: States of a motor that does not move.
AT_REST = ["standby", "hard-limit", "disabled", "error"]
#: Seconds step_scan waits for a listener on the trigger output before it refuses.
TRIGGER_LISTENER_TIMEOUT = 2.0


class _PositionMixin(Device):
    """What every motor has: state, position, move, home, stop, enable/disable, reset,
    a trigger output and step_scan."""

    state = State(
        default="standby",
        help="standby, moving, hard-limit (a hard limit was reached), disabled or error",
    )
    trigger_output = Parameter(
        check=check(source=AT_REST),
        help="ZMQ endpoint of the motor's trigger output ('' = none), a simulated TTL line "
        "that step_scan pulses at every position. Writing binds it (port 0 picks a free port; "
        "reading gives the actual endpoint); a camera's trigger_input connects to it. Not "
        "changed while the motor moves",
    )

    _trigger: TriggerOutput | None = None
    _trigger_finalizer: weakref.finalize | None = None

    async def _get_position(self) -> Any:
        raise AccessorNotImplementedError("position")

    async def _get_trigger_output(self) -> str:
        output = self._trigger
        return output.endpoint if output is not None else ""

    async def _set_trigger_output(self, endpoint: str) -> None:
        endpoint = str(endpoint).strip()
        old = self._trigger
        if old is not None and endpoint and resolve_endpoint(endpoint, True) == old.endpoint:
            return  # bound there already
        # A malformed endpoint raises ValueError here, before anything changes.
        output = TriggerOutput(endpoint) if endpoint else None
        if old is not None:
            self._trigger_finalizer.detach()
            old.close()
        self._trigger = output
        self._trigger_finalizer = weakref.finalize(self, output.close) if output else None

    @background
    @check(source=MOTION_SOURCES, target=MOTION_TARGETS)
    async def move(self, delta: InUnitOf("position")) -> None:
        """Move by ``delta`` relative to the current position (starts a background task)."""
        parameter = self["position"]
        delta = parameter.parameter.convert(delta, "delta")
        target = await parameter.get() + delta
        # Refuses (limits, lock, state) before anything moves.
        await parameter.validate(target)
        await parameter.set(target)

    @background
    @check(source=MOTION_SOURCES, target=MOTION_TARGETS)
    async def step_scan(self, step: InUnitOf("position"), num: int,
                        dwell: InUnitOf(q.s)) -> None:
        """Hardware-timed step scan: from the current position p0, for i in 0..num-1 move to
        p0 + i * step, pulse the trigger output with index i and wait ``dwell``.

        The motor is ``moving`` throughout; :meth:`stop` ends the scan. Refused before
        anything moves: num < 1, dwell < 0, a position outside the limits (or a locked
        position), no ``trigger_output`` or no listener on it within 2 s.
        """
        parameter = self["position"]
        step = parameter.parameter.convert(step, "step")
        try:
            seconds = float(dwell.to(q.s).magnitude)
        except (AttributeError, pint.DimensionalityError):
            raise UnitError(f"'dwell': {dwell!r} cannot be expressed in s") from None
        num = operator.index(num)
        if num < 1:
            raise ValueError(f"step_scan needs num >= 1, got {num}")
        if not seconds >= 0:
            raise ValueError(f"step_scan needs dwell >= 0 s, got {dwell:~}")
        start = await parameter.get()
        # The limits are an interval: the first and the last position stand for all.
        await parameter.validate(start)
        await parameter.validate(start + (num - 1) * step)
        output = self._trigger
        if output is None:
            raise TriggerError("step_scan needs a trigger_output (it is empty)")
        await output.wait_listeners(1, TRIGGER_LISTENER_TIMEOUT)
        await self._step_scan(start, step, num, seconds, output)

    @background
    @check(source=MOTION_SOURCES, target=MOTION_TARGETS)
    async def home(self) -> None:
        """Move to the home position (starts a background task)."""
        await self._home()

    @check(source="*", target=AT_REST)
    async def stop(self) -> None:
        """Stop any motion at once; the motor stays where it is."""
        await self._stop()

    @check(source=["standby", "hard-limit"], target="disabled")
    async def disable(self) -> None:
        """Switch the motor off (state ``disabled``); motion is refused until :meth:`enable`."""
        await self._disable()

    @check(source="disabled", target="standby")
    async def enable(self) -> None:
        """Switch a disabled motor on again (state ``standby``)."""
        await self._enable()

    @check(source=["error", "standby"], target="standby")
    async def reset(self) -> None:
        """Leave state ``error`` after a fault (back to ``standby``)."""
        await self._reset()

    async def _home(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot home")

    async def _stop(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot stop")

    async def _enable(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be enabled")

    async def _disable(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be disabled")

    async def _reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be reset")

    async def _step_scan(self, start: pint.Quantity, step: pint.Quantity, num: int,
                         dwell: float, output: TriggerOutput) -> None:
        """Run a validated step scan (``dwell`` in s): move to ``start + i * step``, then
        ``output.pulse(i, sent)`` (``sent``: when the scan's timeline has the arrival) and
        wait ``dwell``, for i in range(num)."""
        raise NotImplementedError(f"{type(self).__name__} cannot step-scan")


_POSITION_CHECK = check(source=MOTION_SOURCES, target=MOTION_TARGETS)
_VELOCITY_CHECK = check(
    source=["standby", "moving", "hard-limit"], target=["standby", "moving", "hard-limit"]
)


class LinearMotor(_PositionMixin):
    """A motor moving along a straight line."""

    position = Quantity(
        q.mm,
        check=_POSITION_CHECK,
        help="Position of the motor along its axis (writing it moves the motor)",
    )


class ContinuousLinearMotor(LinearMotor):
    """A linear motor that can also move at a constant ``velocity``."""

    velocity = Quantity(
        q.mm / q.s,
        check=_VELOCITY_CHECK,
        help="Current velocity; writing a non-zero value starts a constant motion "
        "in its direction, writing 0 stops it",
    )

    async def _get_velocity(self) -> Any:
        raise AccessorNotImplementedError("velocity")


class RotationMotor(_PositionMixin):
    """A motor rotating around an axis."""

    position = Quantity(
        q.deg,
        check=_POSITION_CHECK,
        help="Angular position of the motor (writing it rotates the motor)",
    )


class ContinuousRotationMotor(RotationMotor):
    """A rotation motor that can also rotate at a constant ``velocity``."""

    velocity = Quantity(
        q.deg / q.s,
        check=_VELOCITY_CHECK,
        help="Current angular velocity; writing a non-zero value starts a constant "
        "rotation in its direction, writing 0 stops it",
    )

    async def _get_velocity(self) -> Any:
        raise AccessorNotImplementedError("velocity")


__all__ = [
    "ContinuousLinearMotor",
    "ContinuousRotationMotor",
    "LinearMotor",
    "RotationMotor",
]
