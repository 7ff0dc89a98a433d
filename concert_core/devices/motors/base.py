"""Motors: linear and rotational, positioned or continuously moving.

Every motor has a ``position`` (``mm`` or ``deg``) that can be written in states
``standby`` and ``hard-limit`` only, a relative :meth:`move`, :meth:`home`,
:meth:`stop`, :meth:`enable`/:meth:`disable` and :meth:`reset` (leave ``error``).
Continuous motors add a ``velocity``: writing a non-zero value starts a constant
motion in its direction, writing zero stops it.

States: ``standby``, ``moving``, ``hard-limit``, ``disabled``, ``error``.
Implementations provide ``_get_position``/``_set_position`` (and ``_get_velocity``/
``_set_velocity``), ``_home``, ``_stop``, ``_enable``, ``_disable`` and ``_reset``; the
state machine moves through ``@transition`` on those.
"""

from __future__ import annotations

from typing import Any

from concert_core.arguments import InUnitOf
from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.errors import AccessorNotImplementedError
from concert_core.parameter import Quantity
from concert_core.quantities import q
from concert_core.state import State, check

#: States in which a motor may start a motion.
MOTION_SOURCES = ["standby", "hard-limit"]
#: States a finished (not failed) motion leaves the motor in.
MOTION_TARGETS = ["standby", "hard-limit"]
#: States of a motor that does not move.
AT_REST = ["standby", "hard-limit", "disabled", "error"]


class _PositionMixin(Device):
    """What every motor has: state, position, move, home, stop, enable/disable, reset."""

    state = State(
        default="standby",
        help="standby, moving, hard-limit (a hard limit was reached), disabled or error",
    )

    async def _get_position(self) -> Any:
        raise AccessorNotImplementedError("position")

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
