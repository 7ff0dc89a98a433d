"""Element selectors (discrete choices)."""

from concert_core.devices.elementselectors.base import ElementSelector, SelectorDevice

__all__ = ["ElementSelector", "SelectorDevice"]
