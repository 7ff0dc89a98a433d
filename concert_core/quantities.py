"""The one shared unit registry of the suite and the unit <-> symbol helpers.

Every quantity in the suite comes from ``q``: mixing registries makes pint refuse
arithmetic between them, so nothing else may create a ``pint.UnitRegistry``.
"""

from __future__ import annotations

import functools

import pint

q = pint.UnitRegistry()
# Counts of events and dimensionless fractions, as used by cameras and attenuators.
q.define("fraction = [] = frac")
pint.set_application_registry(q)

Quantity = q.Quantity
Unit = q.Unit


def unit_symbol(unit: pint.Unit | pint.Quantity | str) -> str:
    """Return pint's short symbol of ``unit`` (``mm``, ``deg``, ``keV``; ``""`` if dimensionless).

    The symbol parses back to the same unit with :func:`parse_unit`, so Tango clients
    such as Taurus and ophyd-async can rely on it.
    """
    if isinstance(unit, str):
        unit = parse_unit(unit)
    elif isinstance(unit, pint.Quantity):
        unit = unit.units
    return _symbol(unit)


@functools.lru_cache(maxsize=1024)
def _symbol(unit: pint.Unit) -> str:
    """The symbol of ``unit``, formatted once (pint's formatting costs tens of
    microseconds, and metadata snapshots format every quantity of every device)."""
    if unit == q.dimensionless:
        return ""
    return f"{unit:~}"


def parse_unit(symbol: str) -> pint.Unit:
    """Return the unit named by ``symbol`` (``"mm"``, ``"mm / s"``; ``""`` is dimensionless)."""
    return _parsed(symbol)


@functools.lru_cache(maxsize=1024)
def _parsed(symbol: str) -> pint.Unit:
    if not symbol or not symbol.strip():
        return q.dimensionless
    return q.Unit(symbol)


def parse_quantity(text: str | float | int) -> pint.Quantity:
    """Parse ``"10 mm"`` (or a bare number, dimensionless) into a quantity of ``q``."""
    if isinstance(text, (int, float)):
        return q.Quantity(text)
    value = q.Quantity(text)
    if not isinstance(value, pint.Quantity):
        value = q.Quantity(value)
    return value


__all__ = ["q", "Quantity", "Unit", "unit_symbol", "parse_unit", "parse_quantity"]
