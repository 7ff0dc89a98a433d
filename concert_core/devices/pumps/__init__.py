"""Pumps."""

from concert_core.devices.pumps.base import Pump

__all__ = ["Pump"]
