"""Annotations that describe device-method arguments to the outside (e.g. the Tango bridge).

A method argument that is a quantity declares its unit in its annotation::

    async def move(self, delta: InUnitOf("position")) -> None: ...
    async def trigger(self, duration: InUnitOf(q.s)) -> None: ...

``InUnitOf("position")`` means "in the unit of the parameter ``position``"; a unit means
that unit. Inside Python the argument is an ordinary pint quantity; a Tango command
built from the method takes a DevDouble in that unit and says so in its doc_in.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

import pint


@dataclass(frozen=True)
class UnitOf:
    """Marker: the annotated argument is a quantity in ``reference``'s unit."""

    reference: str | pint.Unit

    def unit(self, owner: Any) -> pint.Unit:
        """The unit meant, resolving a parameter name against ``owner`` (class or instance)."""
        if isinstance(self.reference, str):
            cls = owner if isinstance(owner, type) else type(owner)
            for klass in cls.__mro__:  # also classes using a mixin that declares the method
                parameter = getattr(klass, "_class_parameters", {}).get(self.reference)
                if parameter is not None:
                    return parameter.unit
            raise KeyError(f"{cls.__name__} has no parameter {self.reference!r}")
        return self.reference


def InUnitOf(reference: str | pint.Unit) -> Any:  # noqa: N802 - reads like a type
    """Annotation of a quantity argument in ``reference``'s unit (a parameter name or unit)."""
    if isinstance(reference, pint.Quantity):
        reference = reference.units
    return Annotated[pint.Quantity, UnitOf(reference)]


def argument_units(func: Any) -> dict[str, UnitOf]:
    """Map each argument of ``func`` annotated with :func:`InUnitOf` to its marker."""
    hints = typing.get_type_hints(func, include_extras=True)
    found = {}
    for name, hint in hints.items():
        marker = unit_marker(hint)
        if marker is not None:
            found[name] = marker
    return found


def unit_marker(hint: Any) -> UnitOf | None:
    """The :class:`UnitOf` of an annotation, also inside ``Optional``/``X | None``."""
    for extra in getattr(hint, "__metadata__", ()):
        if isinstance(extra, UnitOf):
            return extra
    for member in typing.get_args(hint) if typing.get_origin(hint) in _UNIONS else ():
        marker = unit_marker(member)
        if marker is not None:
            return marker
    return None


_UNIONS = (typing.Union, types.UnionType)


__all__ = ["InUnitOf", "UnitOf", "argument_units", "unit_marker"]
