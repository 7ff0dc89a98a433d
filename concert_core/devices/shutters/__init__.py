"""Shutters."""

from concert_core.devices.shutters.base import Shutter

__all__ = ["Shutter"]
