"""Scales."""

from concert_core.devices.scales.base import Scales, TarableScales

__all__ = ["Scales", "TarableScales"]
