"""Positioners: several motors combined into 3D translation and rotation.

An :class:`Axis` binds a motor to a Euclidean coordinate ``'x'``, ``'y'`` or ``'z'``;
linear motors translate along it, rotation motors rotate around it. A
:class:`Positioner` combines axes into ``position`` (mm) and ``orientation`` (deg),
both 3-vectors ``(x, y, z)``; a coordinate without an axis reads ``nan`` and must be
given as ``0`` or ``nan`` when written. Directions: ``right``/``left`` along +x/-x,
``up``/``down`` along +y/-y, ``forward``/``back`` along +z/-z.

Vector arguments (:meth:`Positioner.move`, :meth:`Positioner.rotate`) are Python-only;
the scalar ones (:meth:`Positioner.up` etc., in the unit of ``position``) are
published as Tango commands.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np
import pint

from concert_core.arguments import InUnitOf
from concert_core.asyncobject import AsyncObject
from concert_core.coroutines.base import background
from concert_core.devices.base import Device
from concert_core.errors import UnitError
from concert_core.parameter import Quantity, values_differ
from concert_core.quantities import q
from concert_core.state import State, check

COORDINATES = ("x", "y", "z")
_LENGTH = q.mm.dimensionality
_ANGLE = q.deg.dimensionality
_MOTION_SOURCES = ["standby", "hard-limit"]


class Axis(AsyncObject):
    """A Euclidean axis ``coordinate`` (``'x'``, ``'y'`` or ``'z'``) realised by ``motor``.

    ``direction`` (+1 or -1) says whether the motor's positive direction is the axis'
    one. ``position`` is the axis' local position within its positioner (kept for
    motions that need it, e.g. rotation around a point).
    """

    async def __ainit__(
        self,
        coordinate: str,
        motor: Any,
        direction: int = 1,
        position: pint.Quantity | None = None,
    ) -> None:
        if coordinate not in COORDINATES:
            raise ValueError(f"coordinate must be one of {COORDINATES}, got {coordinate!r}")
        if direction not in (1, -1):
            raise ValueError(f"direction must be 1 or -1, got {direction!r}")
        self.coordinate = coordinate
        self.motor = motor
        self.direction = direction
        self.position = position
        await super().__ainit__()

    @property
    def kind(self) -> str:
        """``'translation'`` (length motor) or ``'rotation'`` (angle motor)."""
        dimensionality = self.motor["position"].unit.dimensionality
        if dimensionality == _LENGTH:
            return "translation"
        if dimensionality == _ANGLE:
            return "rotation"
        raise ValueError(f"motor of axis {self.coordinate!r} moves in {dimensionality}, "
                         "neither a length nor an angle")

    async def get_position(self) -> pint.Quantity:
        """The motor's position, signed by the axis direction."""
        return self.direction * await self.motor.get_position()

    async def validate(self, position: pint.Quantity) -> pint.Quantity:
        """Check that the motor may move to ``position`` (axis frame) now; return its target."""
        return await self.motor["position"].validate(self.direction * position)

    async def set_position(self, position: pint.Quantity) -> None:
        """Move the motor to ``position``, signed by the axis direction."""
        await self.motor.set_position(self.direction * position)

    def __repr__(self) -> str:
        return f"<Axis {self.coordinate} {'+' if self.direction > 0 else '-'} {self.motor!r}>"


def _combined_state(states: Iterable[str]) -> str:
    states = set(states)
    for state in ("error", "moving", "hard-limit", "disabled"):
        if state in states:
            return state
    if "aborted" in states:
        return "error"
    return "standby"


def _vector(value: Any, unit: pint.Unit, what: str) -> pint.Quantity:
    """``value`` as a 3-vector quantity in ``unit`` (lists of quantities are accepted)."""
    if isinstance(value, (list, tuple)) and any(isinstance(v, pint.Quantity) for v in value):
        value = q.Quantity.from_list([v if isinstance(v, pint.Quantity) else v * unit
                                      for v in value])
    if not isinstance(value, pint.Quantity):
        raise UnitError(f"{what}: {value!r} is not a quantity in {unit:~}")
    try:
        value = value.to(unit)
    except pint.DimensionalityError:
        raise UnitError(f"{what}: {value:~} cannot be expressed in {unit:~}") from None
    if np.shape(value.magnitude) != (3,):
        raise ValueError(f"{what} must be a vector of 3 values (x, y, z), got {value:~}")
    return q.Quantity(np.asarray(value.magnitude, dtype=float), unit)


def _unit_vector(value: Any, coordinate: str, unit: pint.Unit) -> pint.Quantity:
    """A 3-vector that is ``value`` at ``coordinate`` and 0 elsewhere (keeps ``value``'s unit)."""
    if not isinstance(value, pint.Quantity) or np.ndim(value.magnitude):
        raise UnitError(f"expected a scalar quantity in {unit:~}, got {value!r}")
    vector = np.zeros(3)
    vector[COORDINATES.index(coordinate)] = value.magnitude
    return q.Quantity(vector, value.units)


class Positioner(Device):
    """Motors on axes combined into a 3D ``position`` and ``orientation``.

    ``axes`` is a list of :class:`Axis`; at most one translation and one rotation per
    coordinate. ``position`` is the positioner's global position (kept as metadata).
    The state combines the motors' states: ``error`` if one is in error, else ``moving``
    if one moves, else ``hard-limit``, ``disabled`` or ``standby``.
    """

    state = State(help="Combined state of the motors: error, moving, hard-limit, disabled "
                  "or standby")
    position = Quantity(
        q.mm,
        check=check(source=_MOTION_SOURCES, target=_MOTION_SOURCES),
        help="Position (x, y, z) of the translation axes; nan where there is no axis",
    )
    orientation = Quantity(
        q.deg,
        check=check(source=_MOTION_SOURCES, target=_MOTION_SOURCES),
        help="Angles (x, y, z) of the rotation axes; nan where there is no axis",
    )

    async def __ainit__(self, axes: list[Axis], position: pint.Quantity | None = None) -> None:
        await super().__ainit__()
        self.translators: dict[str, Axis] = {}
        self.rotators: dict[str, Axis] = {}
        for axis in axes:
            group = self.translators if axis.kind == "translation" else self.rotators
            if axis.coordinate in group:
                raise ValueError(f"two {axis.kind} axes for coordinate {axis.coordinate!r}")
            group[axis.coordinate] = axis
        self.axes = list(axes)
        self.global_position = position
        self._unsubscribers: list[Any] = []
        self._observe_motors()
        for name in ("state", "position", "orientation"):
            await self[name].get()  # the starting values, so that only changes are announced

    # -- observing the motors ----------------------------------------------------------
    def _observe_motors(self) -> None:
        """Re-announce motor changes as changes of the positioner (weakly: the motors do
        not keep the positioner alive)."""
        me = weakref.ref(self)
        unsubscribers = self._unsubscribers

        def make(refresh: str) -> Any:
            def observer(_value: Any, _new: Any) -> None:
                positioner = me()
                if positioner is None:
                    for unsubscribe in unsubscribers:
                        unsubscribe()
                    unsubscribers.clear()
                    return
                getattr(positioner, refresh)()

            return observer

        for axis in self.axes:
            parameter = "position" if axis.kind == "translation" else "orientation"
            refresh = "_announce_position" if parameter == "position" else "_announce_orientation"
            motor = axis.motor
            unsubscribers.append(motor["position"].subscribe(make(refresh)))
            unsubscribers.append(motor["state"].subscribe(make("_announce_state")))

    def _last_vector(self, axes: dict[str, Axis], unit: pint.Unit) -> pint.Quantity:
        vector = np.full(3, np.nan)
        for index, coordinate in enumerate(COORDINATES):
            axis = axes.get(coordinate)
            if axis is not None:
                last = axis.motor["position"].last_value
                if last is not None:
                    vector[index] = axis.direction * last.to(unit).magnitude
        return q.Quantity(vector, unit)

    def _announce(self, name: str, value: Any) -> None:
        parameter = self[name]
        if values_differ(parameter.last_value, value):
            parameter.notify(value)

    def _announce_position(self) -> None:
        self._announce("position", self._last_vector(self.translators, q.mm))

    def _announce_orientation(self) -> None:
        self._announce("orientation", self._last_vector(self.rotators, q.deg))

    def _announce_state(self) -> None:
        states = [axis.motor["state"].last_value for axis in self.axes]
        self._announce("state", _combined_state(s for s in states if s is not None))

    # -- parameters --------------------------------------------------------------------
    async def _get_state(self) -> str:
        return _combined_state([await axis.motor.get_state() for axis in self.axes])

    async def _get_position(self) -> pint.Quantity:
        return await self._get_vector(self.translators, q.mm)

    async def _set_position(self, position: pint.Quantity) -> None:
        await self._set_vector(position, self.translators)

    async def _get_orientation(self) -> pint.Quantity:
        return await self._get_vector(self.rotators, q.deg)

    async def _set_orientation(self, orientation: pint.Quantity) -> None:
        await self._set_vector(orientation, self.rotators)

    async def _get_vector(self, axes: dict[str, Axis], unit: pint.Unit) -> pint.Quantity:
        vector = np.full(3, np.nan)
        for index, coordinate in enumerate(COORDINATES):
            if coordinate in axes:
                vector[index] = (await axes[coordinate].get_position()).to(unit).magnitude
        return q.Quantity(vector, unit)

    async def _set_vector(self, vector: pint.Quantity, axes: dict[str, Axis]) -> None:
        """Move every axis of ``axes`` to its component of ``vector`` at once; all targets
        are validated before any motor moves."""
        moves = []
        for index, coordinate in enumerate(COORDINATES):
            value = vector[index]
            if np.isnan(value.magnitude):
                continue
            axis = axes.get(coordinate)
            if axis is None:
                if value.magnitude != 0:
                    raise ValueError(f"{type(self).__name__} has no axis {coordinate!r}; "
                                     f"its component must be 0 or nan, got {value:~}")
                continue
            await axis.validate(value)
            moves.append((axis, value))
        results = await asyncio.gather(*(axis.set_position(value) for axis, value in moves),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- motion ------------------------------------------------------------------------
    async def _delta_target(self, delta: Any, name: str, axes: dict[str, Axis]) -> pint.Quantity:
        parameter = self[name]
        delta = _vector(delta, parameter.unit, "delta")
        for index, coordinate in enumerate(COORDINATES):
            value = delta.magnitude[index]
            if coordinate not in axes and not (np.isnan(value) or value == 0):
                raise ValueError(f"{type(self).__name__} has no {name} axis {coordinate!r}; "
                                 f"its component must be 0 or nan, got {delta:~}")
        current = await parameter.get()
        target = q.Quantity(np.where(np.isnan(delta.magnitude), np.nan,
                                     current.magnitude + np.nan_to_num(delta.magnitude)),
                            parameter.unit)
        return await parameter.validate(target)

    async def _translate(self, delta: Any) -> None:
        """Validate (before anything moves), then translate by the 3-vector ``delta``."""
        target = await self._delta_target(delta, "position", self.translators)
        await self["position"].set(target)

    @background
    async def move(self, position: pint.Quantity) -> None:
        """Translate by the 3-vector ``position`` (x, y, z) (starts a background task)."""
        await self._translate(position)

    @background
    async def rotate(self, angles: pint.Quantity) -> None:
        """Rotate by the 3-vector ``angles`` around (x, y, z) (starts a background task)."""
        target = await self._delta_target(angles, "orientation", self.rotators)
        await self["orientation"].set(target)

    async def _along(self, value: Any, coordinate: str, sign: int) -> None:
        await self._translate(sign * _unit_vector(value, coordinate, self["position"].unit))

    @background
    async def right(self, value: InUnitOf("position")) -> None:
        """Move right (+x) by ``value`` (starts a background task)."""
        await self._along(value, "x", 1)

    @background
    async def left(self, value: InUnitOf("position")) -> None:
        """Move left (-x) by ``value`` (starts a background task)."""
        await self._along(value, "x", -1)

    @background
    async def up(self, value: InUnitOf("position")) -> None:
        """Move up (+y) by ``value`` (starts a background task)."""
        await self._along(value, "y", 1)

    @background
    async def down(self, value: InUnitOf("position")) -> None:
        """Move down (-y) by ``value`` (starts a background task)."""
        await self._along(value, "y", -1)

    @background
    async def forward(self, value: InUnitOf("position")) -> None:
        """Move forward (+z) by ``value`` (starts a background task)."""
        await self._along(value, "z", 1)

    @background
    async def back(self, value: InUnitOf("position")) -> None:
        """Move back (-z) by ``value`` (starts a background task)."""
        await self._along(value, "z", -1)

    async def stop(self) -> None:
        """Stop every motor."""
        await asyncio.gather(*(axis.motor.stop() for axis in self.axes))

    async def _emergency_stop(self) -> None:
        await asyncio.gather(*(axis.motor.emergency_stop() for axis in self.axes),
                             return_exceptions=True)


__all__ = ["COORDINATES", "Axis", "Positioner"]
